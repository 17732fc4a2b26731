#include "net/session.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "net/route_choice.h"
#include "net/scratch.h"
#include "pg/sqlstate.h"

namespace drawbridge::net {

namespace {

using base::Bytes;
using base::ByteSpan;

enum class Recv { kData, kWait, kEnd };

// One read of a non-blocking socket registered edge-triggered. `readable` is what the last
// event said and the last read left: false after EAGAIN or a read that came back short (the
// socket was drained then; bytes that arrive later raise a new edge), unless `hung_up` (an
// event said the peer closed or the socket failed: its EOF or error may have come with the
// bytes just read, and raises no edge of its own any more). kEnd: EOF (`*error` 0) or an error
// (`*error` its errno).
Recv RecvSome(int fd, std::span<uint8_t> buf, bool& readable, bool hung_up, size_t* n, int* error) {
  *error = 0;
  if (!readable) return Recv::kWait;
  while (true) {
    ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r > 0) {
      *n = static_cast<size_t>(r);
      readable = hung_up || *n == buf.size();
      return Recv::kData;
    }
    if (r == 0) return Recv::kEnd;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable = false;
      return Recv::kWait;
    }
    *error = errno;
    return Recv::kEnd;
  }
}

// Sends what the socket takes of `data` now: *sent bytes. False: the socket failed.
bool SendSome(int fd, ByteSpan data, size_t* sent, bool& writable) {
  *sent = 0;
  while (*sent < data.size() && writable) {
    ssize_t r = ::send(fd, data.data() + *sent, data.size() - *sent, MSG_NOSIGNAL);
    if (r > 0) {
      *sent += static_cast<size_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      writable = false;
    } else {
      return false;
    }
  }
  return true;
}

// Whether a machine that reports `in_hot_standby` may serve `target` (libpq's words). Only
// in_hot_standby counts: the edge does not ask the server for default_transaction_read_only.
bool WrongRole(control::TargetSessionAttrs target, bool in_hot_standby) {
  switch (target) {
    case control::TargetSessionAttrs::kReadWrite:
    case control::TargetSessionAttrs::kPrimary:
      return in_hot_standby;
    case control::TargetSessionAttrs::kReadOnly:
    case control::TargetSessionAttrs::kStandby:
      return !in_hot_standby;
    case control::TargetSessionAttrs::kAny:
    case control::TargetSessionAttrs::kPreferStandby:
      break;
  }
  return false;
}

}  // namespace

bool Session::Outbox::Send(int fd, ByteSpan data) {
  size_t sent = 0;
  if (!SendSome(fd, data, &sent, writable)) return false;
  if (sent < data.size()) {
    spill.assign(data.begin() + static_cast<std::ptrdiff_t>(sent), data.end());
    offset = 0;
  }
  return true;
}

bool Session::Outbox::Flush(int fd) {
  if (spill.empty()) return true;
  size_t sent = 0;
  if (!SendSome(fd, ByteSpan(spill).subspan(offset), &sent, writable)) return false;
  offset += sent;
  if (offset == spill.size()) {
    Bytes().swap(spill);  // a slow peer's copy is freed as soon as it has taken it
    offset = 0;
  }
  return true;
}

Session::Session(ServerContext* ctx, SessionParts parts)
    : ctx_(ctx),
      fds_{parts.client_fd, parts.server_fd},
      tls_(std::move(parts.tls)),
      record_(std::move(parts.record)),
      machine_address_(std::move(parts.machine_address)),
      ticket_(std::move(parts.ticket)) {
  if (record_.route != nullptr && record_.route->pg_tls) {
    down_messages_.emplace();
    watcher_.emplace([this](const pg::CancelKey& real) { return IssueKey(real); });
  }
}

Session::~Session() {
  if (!finished_) Finish();
}

pg::CancelKey Session::IssueKey(const pg::CancelKey& real) {
  pg::CancelKey issued = ctx_->cancels.Register(
      CancelTarget{record_.route->app, machine_address_, record_.route->internal_port, real});
  issued_keys_.push_back(issued);
  return issued;
}

void Session::LearnRole(bool in_hot_standby) {
  ctx_->board.LearnRole(
      health::MachineKey{record_.route->app, machine_address_, record_.route->internal_port},
      in_hot_standby, std::chrono::steady_clock::now());
}

Session::Got Session::ClientRead(std::span<uint8_t> buf, size_t* n) {
  int error = 0;
  if (!tls_) {
    switch (RecvSome(fds_[0], buf, client_readable_, client_hung_up_, n, &error)) {
      case Recv::kData:
        return Got::kData;
      case Recv::kWait:
        return Got::kWait;
      case Recv::kEnd:
        return Got::kEnd;
    }
  }
  ByteSpan input;  // lent to the engine, which copies what it does not consume
  bool ask_engine = !engine_drained_;
  while (true) {
    if (ask_engine || !input.empty()) {
      switch (tls_->Read(input, buf, n)) {
        case tls::TlsEngine::Io::kOk:
          return Got::kData;
        case tls::TlsEngine::Io::kClosed:
          return Got::kEnd;
        case tls::TlsEngine::Io::kError:
          record_.SetReason("client_tls_error");
          return Got::kEnd;
        case tls::TlsEngine::Io::kWantRead:
          break;
      }
    }
    size_t got = 0;
    switch (RecvSome(fds_[0], CipherScratch(), client_readable_, client_hung_up_, &got, &error)) {
      case Recv::kData:
        break;
      case Recv::kWait:
        return Got::kWait;
      case Recv::kEnd:
        return Got::kEnd;
    }
    input = CipherScratch().first(got);
  }
}

Session::Flow Session::ClientToServer() {
  if (up_done_) return Flow::kIdle;
  if (!to_server_.Flush(fds_[1])) return Fail("machine_write_failed");
  if (!to_server_.spill.empty()) return Flow::kIdle;  // the machine reads slowly: wait for it
  size_t n = 0;
  Got got = ClientRead(PlainScratch(), &n);
  // Whether the engine would only ask for ciphertext: then the next step goes to the socket.
  engine_drained_ = got == Got::kWait || (got == Got::kData && tls_ && tls_->read_drained());
  switch (got) {
    case Got::kWait:
      return Flow::kIdle;
    case Got::kEnd:
      record_.SetReason("client_closed");
      ::shutdown(fds_[1], SHUT_WR);  // half-close: the machine sees EOF and may still answer
      up_done_ = true;
      return Flow::kProgress;
    case Got::kData:
      break;
  }
  record_.bytes_in += n;
  if (!to_server_.Send(fds_[1], PlainScratch().first(n))) return Fail("machine_write_failed");
  return Flow::kProgress;
}

Session::Flow Session::ServerToClient() {
  if (down_done_) return Flow::kIdle;
  if (!to_client_.Flush(fds_[0])) return Fail("client_write_failed");
  if (!to_client_.spill.empty()) return Flow::kIdle;  // the client reads slowly: wait for it
  if (server_eof_) {  // what was left, and the close_notify, are out: now the FIN
    ::shutdown(fds_[0], SHUT_WR);
    down_done_ = true;
    // A PostgreSQL server that closes has ended the session: nothing the client sends after
    // can matter, so the edge does not wait for the client's own close (which an idle pooled
    // client may never send) with both sockets held. Raw TCP and `tls` keep the half-close.
    if (record_.route->pg_tls) up_done_ = true;
    return Flow::kProgress;
  }
  size_t n = 0;
  int error = 0;
  switch (RecvSome(fds_[1], PlainScratch(), server_readable_, server_hung_up_, &n, &error)) {
    case Recv::kWait:
      return Flow::kIdle;
    case Recv::kEnd:
      if (error != 0) return Fail("machine_read_failed");
      record_.SetReason("machine_closed");
      server_eof_ = true;
      if (tls_) {
        Bytes& out = OutScratch();
        out.clear();
        tls_->Close(&out);
        if (!to_client_.Send(fds_[0], out)) return Fail("client_write_failed");
      }
      return Flow::kProgress;
    case Recv::kData:
      break;
  }
  ByteSpan chunk = PlainScratch().first(n);
  base::Status broken;      // the server broke the protocol after the messages in `chunk`
  bool wrong_role = false;  // the login reported a role the service does not want
  bool logging_in = watcher_.has_value();
  if (watcher_) {
    watcher_out_.clear();
    broken = watcher_->Feed(chunk, &watcher_out_);
    chunk = watcher_out_;
    if (const auto& end = watcher_->in_hot_standby_end()) {
      bool standby = *watcher_->in_hot_standby();
      LearnRole(standby);
      if (WrongRole(record_.route->target, standby)) {
        // The client gets the login up to the report, then the FATAL: never ReadyForQuery.
        wrong_role = true;
        chunk = chunk.first(*end);
      }
    }
    // ReadyForQuery: from here on, bytes pass untouched.
    if (broken.ok() && !wrong_role && watcher_->done()) {
      record_.server_version = watcher_->server_version();
      watcher_.reset();
      if (ctx_->on_server_version && !record_.server_version.empty()) {
        ctx_->on_server_version(record_.route->app, machine_address_, record_.server_version);
      }
    }
  }
  record_.bytes_out += chunk.size();
  // In a live session (the login's report is the watcher's), a promotion says in_hot_standby=off.
  if (down_messages_ && down_messages_->Advance(chunk) && !logging_in) {
    LearnRole(*down_messages_->in_hot_standby());
  }
  if (!chunk.empty()) {
    if (tls_) {
      Bytes& out = OutScratch();
      out.clear();
      if (tls_->Write(chunk, &out) != tls::TlsEngine::Io::kOk) return Fail("client_write_failed");
      chunk = out;
    }
    if (!to_client_.Send(fds_[0], chunk)) return Fail("client_write_failed");
  }
  if (wrong_role) {
    ctx_->metrics.Failed(NetReason::kRoleMismatch);
    bool standby_wanted = !*watcher_->in_hot_standby();
    TellClientAndClose(pg::sqlstate::kCannotConnectNow,
                       "app \"" + record_.route->app + "\" has no " +
                           (standby_wanted ? "standby" : "primary") + " machine available now");
    // A Terminate, so that the server ends the backend as for a client that left politely.
    static constexpr uint8_t kTerminate[] = {'X', 0, 0, 0, 4};
    size_t sent = 0;
    if (to_server_.spill.empty()) (void)SendSome(fds_[1], kTerminate, &sent, to_server_.writable);
    return Fail(NetReasonName(NetReason::kRoleMismatch));
  }
  if (!broken.ok()) {
    // The client is still logging in: after the messages before the bad one, it hears why, as
    // from a server that failed (the text names no address).
    TellClientAndClose(pg::SqlStateFor(broken.code()),
                       "the database server broke the protocol: " + broken.message());
    return Fail("machine_protocol_error");
  }
  if (!watcher_ && watcher_out_.capacity() > 0) Bytes().swap(watcher_out_);
  return Flow::kProgress;
}

Session::Flow Session::Fail(const char* reason) {
  record_.SetReason(reason);
  up_done_ = down_done_ = true;
  return Flow::kProgress;
}

RelayHandler::Result Session::OnReady(Side side, uint32_t events) {
  // Any event may be the one after which a read or a write fails; both find out by trying.
  constexpr uint32_t kIn = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  constexpr uint32_t kOut = EPOLLOUT | EPOLLHUP | EPOLLERR;
  bool client = side == Side::kClient;
  if (events & kIn) (client ? client_readable_ : server_readable_) = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    (client ? client_hung_up_ : server_hung_up_) = true;
  }
  if (events & kOut) (client ? to_client_ : to_server_).writable = true;
  // A bounded burst, so that one busy connection (a COPY) does not hold the loop.
  for (int i = 0; i < 16; ++i) {
    Flow up = ClientToServer();
    Flow down = ServerToClient();
    if (up_done_ && down_done_) {
      Finish();
      return Result::kDone;
    }
    if (up == Flow::kIdle && down == Flow::kIdle) return Result::kWait;
  }
  return Result::kMore;
}

void Session::TellClientAndClose(std::string_view sqlstate, const std::string& message) {
  // Only between two of the server's messages: a FATAL inside one would corrupt the stream,
  // and there the close alone says it.
  if (!down_messages_ || !down_messages_->at_boundary() || !to_client_.spill.empty() ||
      down_done_ || !tls_) {
    return;
  }
  Bytes out;
  if (tls_->Write(pg::BuildFatal(sqlstate, message), &out) == tls::TlsEngine::Io::kOk) {
    tls_->Close(&out);
    size_t sent = 0;
    (void)SendSome(fds_[0], out, &sent, to_client_.writable);
  }
  down_done_ = true;
}

void Session::OnStop(Stop why) {
  record_.SetReason("relay_stopped");
  if (why == Stop::kLoopStopping) {
    // As PostgreSQL tells its clients at a fast shutdown.
    TellClientAndClose(pg::sqlstate::kAdminShutdown,
                       "terminating connection because the edge is shutting down");
  }
  Finish();
}

RelayHandler::Result Session::Recheck() {
  if (finished_) return Result::kDone;
  auto holders = ctx_->holders.Current();
  auto revoked = CheckRevoked(holders.get(), record_.route->app, record_.local.Ip(),
                              record_.table ? record_.table->version() : 0);
  if (!revoked) return Result::kWait;
  ctx_->metrics.revoked++;
  // This is why it ended, whatever a half-close noted before.
  record_.reason = revoked->reason;
  TellClientAndClose(pg::sqlstate::kAdminShutdown, revoked->message);
  Finish();
  return Result::kDone;
}

bool Session::Movable() const {
  return !finished_ && !up_done_ && !down_done_ && !server_eof_ && !watcher_ &&
         !client_hung_up_ && !server_hung_up_ && to_client_.spill.empty() &&
         to_server_.spill.empty() && (!tls_ || engine_drained_);
}

void Session::CloseFds() {
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

void Session::Finish() {
  finished_ = true;
  CloseFds();
  ticket_.Release();
  for (const auto& key : issued_keys_) ctx_->cancels.Unregister(key);
  Metrics& m = ctx_->metrics;
  m.bytes_in += record_.bytes_in;
  m.bytes_out += record_.bytes_out;
  m.active--;
  m.closed++;
  m.session_seconds.Observe(std::chrono::steady_clock::now() - record_.started);
  LogConnection(record_, tls_.get(), tls_ != nullptr);
  ctx_->live.Leave();
}

}  // namespace drawbridge::net
