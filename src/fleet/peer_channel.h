// The node channel of a fleet (docs/connection.md, "Cancel requests"): how a node that received
// a CancelRequest for a session held by another node hands it to that node. UDP, because a
// cancel is one small message that needs no answer (the client never gets one either) and
// must not wait behind a connection setup; one datagram per cancel, never retried.
//
// Each datagram is authenticated with HMAC-SHA256 under the fleet's peer key
// (FleetKeys::peer), carries the sender's wall-clock time and a random nonce, and is accepted
// only within +-30 s of the receiver's clock and once: a bounded cache remembers the nonces
// of the last minute. Only the fleet's nodes hold the peer key, so a datagram from anyone else
// (or one changed on the way) is dropped after one MAC over a fixed-size buffer, before any
// parsing or allocation; replaying a captured one does nothing.
//
// Datagram (big-endian), at most kMaxDatagram bytes:
//   u8 version (1) | u8 sender node id | u64 unix ms | 16 nonce |
//   u32 pid | u16 secret length (1..256) | secret |
//   u16 app count (1..) | per app: u8 length (1..255), name |
//   32 HMAC-SHA256(peer key, everything before)
// The apps are those the landing node reached at the address and port the cancel came to:
// the owner forwards the cancel only if its session's app is among them, as a local cancel.
//
// Threads: Open() and Send() may be called from any thread (Send() only reads immutable
// state and the socket). Start() starts the channel's one receiving thread, which owns the
// replay cache and calls the handlers; Stop() (also run by the destructor) ends and joins it
// within one poll interval, so the handlers' targets must outlive Stop().
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "fleet/peer_refusal.h"
#include "pg/messages.h"

namespace drawbridge::fleet {

struct PeerCancel {
  int from_node = 0;
  pg::CancelKey key;
  std::vector<std::string> apps;
};

using PeerKey = std::array<uint8_t, 32>;
using Nonce = std::array<uint8_t, 16>;

inline constexpr size_t kMaxDatagram = 32768;
inline constexpr std::chrono::milliseconds kPeerClockWindow{30000};

// The datagram codec (pure). Build fails (kInvalidArgument) on a bad key, no apps, an app name
// outside 1..255 bytes, or a datagram over kMaxDatagram.
base::Result<base::Bytes> BuildPeerDatagram(const PeerKey& key, int from_node, int64_t unix_ms,
                                            const Nonce& nonce, const pg::CancelKey& cancel,
                                            const std::vector<std::string>& apps);
struct OpenedDatagram {
  PeerCancel cancel;
  int64_t unix_ms = 0;
  Nonce nonce{};
};
// Checks the MAC first (constant time), then the layout. Does not look at the time or nonce.
std::variant<OpenedDatagram, PeerRefusal> OpenPeerDatagram(const PeerKey& key,
                                                           base::ByteSpan datagram);

// The nonces of the last `retention`, at most `capacity` of them (pure; owned by the receiving
// thread). A nonce is kept for longer than the clock window lets its datagram be accepted, so
// a replay is either remembered or stale. When full, new nonces are refused rather than old
// ones forgotten: a replay is never let through, and only a fleet node can fill it.
class ReplayCache {
 public:
  enum class Verdict { kFresh, kReplayed, kFull };
  ReplayCache(size_t capacity, std::chrono::milliseconds retention);
  Verdict Check(const Nonce& nonce, std::chrono::steady_clock::time_point now);
  size_t size() const { return seen_.size(); }

 private:
  size_t capacity_;
  std::chrono::milliseconds retention_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, Nonce>> order_;
  std::set<Nonce> seen_;
};

class PeerChannel {
 public:
  struct Handlers {
    // A fresh, authenticated cancel; runs on the receiving thread and must not block long.
    std::function<void(PeerCancel)> on_cancel;
    // A datagram dropped, with the sender's address ("ip:port"); may be empty.
    std::function<void(PeerRefusal, const std::string& from)> on_refused;
  };

  // Binds `listen` ("IPv4:port" or "[IPv6]:port", numeric, port 0 for any free one; a wildcard
  // address is refused: the bound address is what the other nodes send to). `node_id` is this
  // node's (1..255), `key` the fleet's peer key.
  static base::Result<std::unique_ptr<PeerChannel>> Open(const std::string& listen, int node_id,
                                                         const PeerKey& key,
                                                         size_t replay_capacity = 16384);
  ~PeerChannel();
  PeerChannel(const PeerChannel&) = delete;
  PeerChannel& operator=(const PeerChannel&) = delete;

  // The bound address, "127.0.0.1:40123" or "[::1]:40123": what the node record publishes.
  const std::string& address() const { return address_; }
  int node_id() const { return node_id_; }

  // Sends `cancel` to the node whose channel is at `peer` ("ip:port" as address() gives it).
  // kInvalidArgument for a bad peer address or datagram, kUnavailable if the send fails.
  base::Status Send(const std::string& peer, const pg::CancelKey& cancel,
                    const std::vector<std::string>& apps) const;

  // Sends `cancel` to node `node`, whose channel address `directory` gives (the node records'
  // `peer`): kNotFound when the directory knows no such node (its sessions, if it ever had
  // any, are gone with it), kUnavailable when it has published no address; else as Send().
  using Directory = std::function<std::optional<std::string>(int node)>;
  base::Status SendTo(int node, const Directory& directory, const pg::CancelKey& cancel,
                      const std::vector<std::string>& apps) const;

  // Starts the receiving thread (once).
  void Start(Handlers handlers);
  // Ends and joins the receiving thread; idempotent.
  void Stop();

 private:
  PeerChannel(int fd, int wake_fd, std::string address, int node_id, const PeerKey& key,
              size_t replay_capacity);
  void Receive();
  void Handle(base::ByteSpan datagram, const std::string& from);

  int fd_;       // the bound socket: receives, and sends to peers of its family
  int wake_fd_;  // eventfd that Stop() writes to end the receiving thread's poll
  int family_ = 0;     // fd_'s: AF_INET or AF_INET6
  int other_fd_ = -1;  // unbound socket of the other family, for peers of that family
  std::string address_;
  int node_id_;
  PeerKey key_;
  ReplayCache replay_;
  Handlers handlers_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  // Last warning per refusal reason: a flood of bad datagrams logs one line per reason per
  // interval, not one per datagram.
  std::array<std::chrono::steady_clock::time_point, static_cast<size_t>(PeerRefusal::kCount)>
      warned_{};
};

}  // namespace drawbridge::fleet
