// A connection in its relay phase (docs/connection.md, "The relay"): it relays both ways
// between the client and the machine until either side closes, then logs the connection.
//
// Ownership: the negotiation (net/negotiation.h) builds one at the hand-off from what it
// moves out of itself (both descriptors, the TLS session, the log record) and gives it to its
// thread's relay loop, which owns it from then on and calls it only on the relay thread (and,
// once that thread has ended, on the thread that stops the loop). Nothing of the Asio side is
// touched from here. Nothing of it is tied to one relay thread either: it reads into the
// calling thread's scratch buffers (net/scratch.h) and keeps no span of them between calls, and
// its TLS engine, log record and context pointer may be used from any one thread at a time. So
// between two calls a loop may hand it to another loop (net/relay_pool.h) when Movable() says
// it holds nothing that only a call would move on. The session finishes its connection exactly once: counted, keys
// unregistered, its machine's session count released, logged, and the server's registry of
// live connections left.
//
// pg_tls: the session also tells the health board (health/board.h) the machine's role, from the
// in_hot_standby the login reports and any later report in the live session (a promotion), and
// ends a login whose role is the wrong one for the service's target_session_attrs with FATAL
// 57P03 before the client sees ReadyForQuery (docs/connection.md, "Roles").
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "net/conn_log.h"
#include "net/relay_loop.h"
#include "health/board.h"
#include "net/server_context.h"
#include "pg/backend_watcher.h"
#include "pg/messages.h"
#include "pg/parameter_scanner.h"
#include "tls/tls_engine.h"

namespace drawbridge::net {

// What the negotiation hands over.
struct SessionParts {
  int client_fd = -1;  // non-blocking; the session closes it
  int server_fd = -1;  // non-blocking; the session closes it
  // The client's TLS session, its handshake done; null for a plaintext client.
  std::unique_ptr<tls::TlsEngine> tls;
  ConnRecord record;            // route set
  std::string machine_address;  // as dialled: where this session's cancel requests go
  health::SessionTicket ticket;  // counts the session on its machine until Finish()
};

class Session final : public RelayHandler {
 public:
  Session(ServerContext* ctx, SessionParts parts);
  ~Session() override;  // closes what is still open (a session is always finished first)
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int client_fd() const { return fds_[0]; }
  int server_fd() const { return fds_[1]; }

  Result OnReady(Side side, uint32_t events) override;
  // Logs `reason=relay_stopped`; when the edge stops, a pg_tls client between two of the
  // server's messages first gets FATAL 57P01, as from PostgreSQL at a fast shutdown.
  void OnStop(Stop why) override;
  // Ends the session if its app no longer holds the address it came to (ServerContext's
  // holders): a pg_tls client between two of the server's messages first gets FATAL 57P01
  // saying so; logged `reason=address_released` or `app_destroyed`.
  Result Recheck() override;
  // Idle between two calls: logged in (pg_tls: past the first ReadyForQuery), both directions
  // open, no hang-up noted, nothing waiting in either outbox, and the TLS engine holds no whole
  // record it has not handed out. Then its sockets say everything that is still to do.
  bool Movable() const override;

 private:
  // Bytes for a socket that would not take them all at once, sent when it is writable again.
  // While it holds any, the session reads nothing more from the other side.
  struct Outbox {
    base::Bytes spill;  // empty (and unallocated) unless the peer is slow
    size_t offset = 0;
    bool writable = true;                    // false after EAGAIN, until the next EPOLLOUT edge
    bool Send(int fd, base::ByteSpan data);  // call only when spill is empty; false: it failed
    bool Flush(int fd);                      // false: the socket failed
  };
  enum class Got { kData, kWait, kEnd };
  // One step of each direction: kProgress if it moved bytes or changed state.
  enum class Flow { kIdle, kProgress };
  Flow ClientToServer();
  Flow ServerToClient();
  Flow Fail(const char* reason);  // both directions end; the sockets close
  // pg_tls: sends the client FATAL `sqlstate` `message` and close_notify, if the server's
  // messages to it end at a boundary with nothing held back; nothing more goes to it after.
  void TellClientAndClose(std::string_view sqlstate, const std::string& message);
  // The client's byte stream, through TLS if there is a session. `engine_drained`: the engine
  // asked for ciphertext last time, so the socket is read first.
  Got ClientRead(std::span<uint8_t> buf, size_t* n);
  pg::CancelKey IssueKey(const pg::CancelKey& real);
  // Tells the board what the machine reported (in_hot_standby: a standby).
  void LearnRole(bool in_hot_standby);
  void CloseFds();
  void Finish();

  ServerContext* ctx_;
  int fds_[2];  // client, machine
  std::unique_ptr<tls::TlsEngine> tls_;
  ConnRecord record_;
  std::string machine_address_;
  health::SessionTicket ticket_;
  bool finished_ = false;

  Outbox to_client_, to_server_;
  bool client_readable_ = true, server_readable_ = true;  // see RecvSome in session.cc
  bool client_hung_up_ = false, server_hung_up_ = false;  // EPOLLRDHUP, HUP or ERR seen
  bool engine_drained_ = false;                           // the TLS engine has no whole record left
  bool up_done_ = false, down_done_ = false;              // client -> machine, machine -> client
  bool server_eof_ = false;                    // down: the machine's EOF is being passed on
  std::optional<pg::BackendWatcher> watcher_;  // pg_tls, until the first ReadyForQuery
  base::Bytes watcher_out_;
  // pg_tls: where the messages passed to the client end, so that OnStop() can add one, and the
  // in_hot_standby reports among them (one walk of the message headers does both).
  std::optional<pg::ParameterScanner> down_messages_;
  std::vector<pg::CancelKey> issued_keys_;
};

}  // namespace drawbridge::net
