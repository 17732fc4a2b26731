#include "net/connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/logfmt.h"
#include "net/cancel_registry.h"
#include "net/metrics.h"
#include "net/proxy_protocol.h"
#include "net/relay_loop.h"
#include "pg/backend_watcher.h"
#include "pg/startup.h"
#include "tls/tls_engine.h"

namespace drawbridge::net {

namespace {

using base::Bytes;
using base::ByteSpan;
using base::LogfmtValue;
using Clock = std::chrono::steady_clock;

std::string Ip(const tcp::endpoint& ep) { return ep.address().to_string(); }

std::string Endpoint(const tcp::endpoint& ep) {
  return ep.address().is_v6() ? "[" + Ip(ep) + "]:" + std::to_string(ep.port())
                              : Ip(ep) + ":" + std::to_string(ep.port());
}

ProxyAddresses ProxyAddressesOf(const tcp::endpoint& client, const tcp::endpoint& local) {
  ProxyAddresses a;
  a.v6 = client.address().is_v6();
  auto copy = [&](const asio::ip::address& addr, std::array<uint8_t, 16>& out) {
    if (a.v6) {
      auto b = addr.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    } else {
      auto b = addr.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    }
  };
  copy(client.address(), a.source);
  copy(local.address(), a.dest);
  a.source_port = client.port();
  a.dest_port = local.port();
  return a;
}

// Resolves a machine address (an IP literal or a host name) and connects. The caller's
// deadline closes `socket` and cancels `resolver` to bound the attempt.
awaitable<error_code> Dial(Socket& socket, Resolver& resolver, const std::string& host, int port) {
  error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  std::vector<tcp::endpoint> endpoints;
  if (!ec) {
    endpoints.emplace_back(ip, static_cast<uint16_t>(port));
  } else {
    auto results = co_await resolver.async_resolve(host, std::to_string(port),
                                                   asio::redirect_error(kAwait, ec));
    if (ec) co_return ec;
    for (const auto& r : results) endpoints.push_back(r.endpoint());
  }
  for (const auto& ep : endpoints) {
    if (socket.is_open()) socket.close(ec);
    socket.open(ep.protocol(), ec);
    if (ec) continue;
    co_await socket.async_connect(ep, asio::redirect_error(kAwait, ec));
    if (!ec) {
      // Asio keeps the connect's writability interest on this descriptor; harmless, since
      // replies are read on the relay loop, which registers the socket afresh.
      socket.set_option(tcp::no_delay(true), ec);
      socket.non_blocking(true, ec);  // ReadNow and WriteAll try the socket first
      co_return error_code{};
    }
  }
  co_return ec ? ec : asio::error::host_not_found;
}

// Per-thread scratch space. A waiting connection holds no buffer of its own: it waits for
// readability, then reads into scratch and consumes the bytes (feeds a codec, writes them on,
// or copies what a socket would not take) before it suspends again. All connections of a
// thread share these, which is safe because a coroutine never keeps scratch across a co_await.
constexpr size_t kScratchSize = 64 * 1024;
std::span<uint8_t> PlainScratch() {
  thread_local std::vector<uint8_t> buf(kScratchSize);
  return buf;
}
std::span<uint8_t> CipherScratch() {
  thread_local std::vector<uint8_t> buf(kScratchSize);
  return buf;
}
base::Bytes& OutScratch() {
  thread_local base::Bytes buf;
  return buf;
}

// One read of what `s` (a non-blocking socket) has into `buf`, without suspending. kData: *n
// bytes. kEnd: EOF or an error, in `ec`. kWait: wait for readability, then call again.
// `maybe_more` says whether the last read filled its buffer: if it did not, the socket is most
// likely drained, so the read that would fail with EAGAIN is skipped and the caller waits
// first (Asio re-arms the descriptor for a wait, so bytes that arrived meanwhile are not
// missed). Either way one syscall per message is spent on waiting: an EAGAIN read or that
// re-arm.
enum class Got { kData, kWait, kEnd };
Got ReadSome(Socket& s, std::span<uint8_t> buf, bool& maybe_more, size_t* n, error_code& ec) {
  if (!maybe_more) {
    maybe_more = true;  // read once the wait is over
    return Got::kWait;
  }
  *n = s.read_some(asio::buffer(buf.data(), buf.size()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) return Got::kWait;
  if (ec) return Got::kEnd;
  maybe_more = *n == buf.size();
  return Got::kData;
}

// Reads what `s` has into `buf`, waiting for it: 0 with `ec` set on EOF or error. The bytes
// land in `buf` only after the last suspension, so `buf` may be scratch. For negotiation
// only: the relay reads on its own loop (RecvSome).
awaitable<size_t> ReadNow(Socket& s, std::span<uint8_t> buf, bool& maybe_more, error_code& ec) {
  while (true) {
    size_t n = 0;
    switch (ReadSome(s, buf, maybe_more, &n, ec)) {
      case Got::kData: co_return n;
      case Got::kEnd: co_return 0;
      case Got::kWait: break;
    }
    co_await s.async_wait(Socket::wait_read, asio::redirect_error(kAwait, ec));
    if (ec) co_return 0;
  }
}

// Writes all of `data` (which may be scratch): as much as the socket takes at once, the rest
// from `spill`, a copy owned by the connection only while the peer is slow.
awaitable<bool> WriteAll(Socket& s, ByteSpan data, base::Bytes& spill) {
  if (data.empty()) co_return true;
  error_code ec;
  size_t n = s.write_some(asio::buffer(data.data(), data.size()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    n = 0;
  } else if (ec) {
    co_return false;
  }
  if (n == data.size()) co_return true;
  spill.assign(data.begin() + static_cast<std::ptrdiff_t>(n), data.end());
  co_await asio::async_write(s, asio::buffer(spill), asio::redirect_error(kAwait, ec));
  base::Bytes().swap(spill);
  co_return !ec;
}

class Connection : public std::enable_shared_from_this<Connection>, public RelayHandler {
 public:
  Connection(Socket socket, const tcp::endpoint& peer, const ConnectionContext& ctx)
      : ctx_(ctx),
        client_(std::move(socket)),
        server_(client_.get_executor()),
        resolver_(client_.get_executor()),
        deadline_(client_.get_executor()),
        started_(Clock::now()),
        client_ep_(peer) {}

  // Reads the route and starts Run(); a connection without a route is finished here.
  void Start();

  // The relay phase, on the relay loop's thread (see Relay()); OnStop() also from the thread
  // that stops the loop, once the loop's own has ended. OnStop() logs `reason=relay_stopped`;
  // when the edge stops, a pg_tls client between two messages first gets FATAL 57P01.
  Result OnReady(Side side, uint32_t events) override;
  void OnStop(Stop why) override;

 private:
  // The connection's coroutine, from after Start() to the hand-off to the relay loop (or the
  // end). A pg_tls client that keeps the edge waiting for its startup packets parks instead:
  // Run() returns, and the bytes' arrival spawns it again (see Park()).
  void Spawn();
  awaitable<void> Run();
  // Closes the sockets, counts and logs the connection: once, at its end.
  void Finish();

  // The client's byte stream, plaintext or through TLS once tls_ is set. TryClientRead()
  // never suspends: kWait means wait for the socket, then call again with `engine_drained`
  // true (the engine asked for ciphertext before the wait, so it is not asked again first).
  Got TryClientRead(std::span<uint8_t> buf, size_t* n, bool engine_drained);
  // One read of the client's socket: through Asio while negotiating, the relay loop's after.
  Got ClientRecv(std::span<uint8_t> buf, size_t* n);
  awaitable<bool> ClientWrite(ByteSpan data);
  awaitable<bool> FlushTls();
  awaitable<bool> TlsHandshake(ByteSpan prefix, tls::SessionPolicy policy);
  // Sends `error` (may be empty), close_notify and FIN, then drains input briefly (§6.4).
  awaitable<void> RefuseAndClose(ByteSpan error, std::string reason);

  // pg_tls: negotiation up to a routed StartupMessage, from where startup_ stands. kParked:
  // the client has sent nothing more yet and Park() waits for it without a coroutine.
  enum class Startup { kRouted, kFinished, kParked };
  awaitable<Startup> PgStartup();
  // A waiting connection that holds no coroutine frame: an idle client costs the Connection,
  // one pending wait and the deadline, whatever Run()'s call chain would have held.
  void Park();
  // tls handler: the handshake, then the route by SNI. Its own coroutine so that Run's frame,
  // which lives as long as the connection, does not hold the handshake's temporaries.
  awaitable<bool> TlsStartup();
  awaitable<void> ForwardCancel(const pg::CancelKey& key);
  // Picks route_ among candidates_ by SNI or the `app=` option. False: refused.
  awaitable<bool> ChooseRoute(pg::StartupMessage* startup);
  awaitable<bool> ConnectMachine();
  // Sends what the machine must see first, then hands both sockets to the thread's relay
  // loop. True: the loop has the connection and finishes it.
  awaitable<bool> Relay();

  // Bytes for a socket that would not take them all at once, sent when it is writable again.
  // While it holds any, the relay reads nothing more from the other side.
  struct Outbox {
    Bytes spill;  // empty (and unallocated) unless the peer is slow
    size_t offset = 0;
    bool writable = true;              // false after EAGAIN, until the next EPOLLOUT edge
    bool Send(int fd, ByteSpan data);  // call only when spill is empty; false: socket failed
    bool Flush(int fd);                // false: socket failed
  };
  // The relay phase's state, allocated when it starts.
  struct RelayState {
    int fds[2] = {-1, -1};  // client, machine: taken over from Asio
    Outbox to_client, to_server;
    bool client_readable = true, server_readable = true;  // see RecvSome
    bool client_hung_up = false, server_hung_up = false;   // EPOLLRDHUP, EPOLLHUP or EPOLLERR seen
    bool engine_drained = false;  // the TLS engine has no whole record left (see TryClientRead)
    bool up_done = false, down_done = false;    // client -> machine, machine -> client
    bool server_eof = false;                    // down: the machine's EOF is being passed on
    std::optional<pg::BackendWatcher> watcher;  // pg_tls, until the first ReadyForQuery
    Bytes watcher_out;
    // pg_tls: where the messages passed to the client end, so that OnStop() can add one.
    std::optional<pg::MessageCursor> down_messages;
  };
  // One step of each direction: kProgress if it moved bytes or changed state.
  enum class Flow { kIdle, kProgress };
  Flow ClientToServer();
  Flow ServerToClient();
  Flow Fail(const char* reason);  // both directions end; the sockets close
  void CloseFds();

  // Closes the machine socket (and the client's if `client_too`) after `after` unless re-armed
  // or disarmed first; `reason` (a static string, or null) becomes reason_ if none is set.
  void ArmDeadline(std::chrono::milliseconds after, const char* reason, bool client_too);
  void DisarmDeadline() { deadline_.cancel(); }
  void CloseAll();
  void Log();
  tls::SessionPolicy PolicyFor(const control::Route& route) const;

  const ConnectionContext& ctx_;
  Socket client_;
  Socket server_;
  Resolver resolver_;
  Timer deadline_;
  Clock::time_point started_;
  tcp::endpoint client_ep_, local_ep_;

  std::shared_ptr<const control::RouteTable> table_;
  // Routes for the dialled address and port; several on a shared address until SNI or the
  // `options` parameter picks one into route_.
  std::vector<const control::Route*> candidates_;
  const control::Route* route_ = nullptr;
  std::shared_ptr<const tls::CertSet> certs_;
  std::unique_ptr<tls::TlsEngine> tls_;
  bool tls_ready_ = false;
  // Bytes a slow client has not taken yet while negotiating; empty (and unallocated) otherwise.
  Bytes client_spill_;
  // Whether the last read of the client's socket filled its buffer (see ReadSome).
  bool client_more_ = true;
  std::unique_ptr<RelayState> relay_;

  // pg_tls: the negotiation so far, whether the last park's wait failed, and what the
  // client sent to be forwarded once a machine is connected.
  pg::StartupMachine startup_;
  bool park_failed_ = false;
  Bytes startup_packet_;
  std::string user_, database_;
  std::string machine_address_;
  std::vector<pg::CancelKey> issued_keys_;
  std::string server_version_;

  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  std::string reason_;
  bool deadline_fired_ = false;
};

void Connection::ArmDeadline(std::chrono::milliseconds after, const char* reason, bool client_too) {
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this(), reason, client_too](error_code ec) {
    if (ec) return;  // re-armed or disarmed
    self->deadline_fired_ = true;
    if (self->reason_.empty() && reason != nullptr) self->reason_ = reason;
    error_code ignored;
    self->server_.close(ignored);
    self->resolver_.cancel();
    if (client_too) self->client_.close(ignored);
  });
}

void Connection::CloseAll() {
  error_code ignored;
  client_.close(ignored);
  server_.close(ignored);
}

tls::SessionPolicy Connection::PolicyFor(const control::Route& route) const {
  tls::SessionPolicy p;
  if (candidates_.size() == 1) p.default_host = route.host;
  if (!route.pg_tls) {
    p.alpn_policy = tls::AlpnPolicy::kList;
    p.alpn = route.tls_options.alpn;
  }
  const auto& versions = route.tls_options.versions;
  if (!versions.empty()) {
    bool v12 = std::find(versions.begin(), versions.end(), "TLSv1.2") != versions.end();
    bool v13 = std::find(versions.begin(), versions.end(), "TLSv1.3") != versions.end();
    p.min_version = v12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    p.max_version = v13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  }
  return p;
}

Got Connection::TryClientRead(std::span<uint8_t> buf, size_t* n, bool engine_drained) {
  if (!tls_ready_) return ClientRecv(buf, n);
  ByteSpan input;  // lent to the engine, which copies what it does not consume
  while (true) {
    if (!engine_drained || !input.empty()) {
      switch (tls_->Read(input, buf, n)) {
        case tls::TlsEngine::Io::kOk: return Got::kData;
        case tls::TlsEngine::Io::kClosed: return Got::kEnd;
        case tls::TlsEngine::Io::kError:
          if (reason_.empty()) reason_ = "client_tls_error";
          return Got::kEnd;
        case tls::TlsEngine::Io::kWantRead: break;
      }
    }
    size_t got = 0;
    Got g = ClientRecv(CipherScratch(), &got);
    if (g != Got::kData) return g;
    input = CipherScratch().first(got);
  }
}

awaitable<bool> Connection::FlushTls() {
  Bytes& out = OutScratch();
  out.clear();
  tls_->TakeOutput(&out);
  co_return co_await WriteAll(client_, out, client_spill_);
}

awaitable<bool> Connection::ClientWrite(ByteSpan data) {
  if (!tls_ready_) co_return co_await WriteAll(client_, data, client_spill_);
  Bytes& out = OutScratch();
  out.clear();
  if (tls_->Write(data, &out) != tls::TlsEngine::Io::kOk) co_return false;
  co_return co_await WriteAll(client_, out, client_spill_);
}

awaitable<bool> Connection::TlsHandshake(ByteSpan prefix, tls::SessionPolicy policy) {
  auto engine = tls::TlsEngine::NewServer(certs_, std::move(policy));
  if (!engine.ok()) {
    spdlog::error("TLS session setup failed: {}", engine.message());
    co_return false;
  }
  tls_ = std::move(*engine);
  tls_->FeedCiphertext(prefix);
  error_code ec;
  ByteSpan input;  // lent to the engine, which copies what it does not consume
  while (true) {
    auto r = tls_->Handshake(input);
    bool flushed = co_await FlushTls();  // the server flight, or an alert
    if (r == tls::TlsEngine::Io::kOk && flushed) {
      tls_ready_ = true;
      co_return true;
    }
    if (r != tls::TlsEngine::Io::kWantRead || !flushed) {
      if (reason_.empty()) reason_ = "tls_handshake_failed";
      Metrics::Get().Failed(NetReason::kTlsHandshakeFailed);
      spdlog::debug("TLS handshake with {} failed: {}", Endpoint(client_ep_), tls_->error());
      co_return false;
    }
    size_t got = co_await ReadNow(client_, CipherScratch(), client_more_, ec);
    if (got == 0) {
      if (reason_.empty()) reason_ = "client_closed_during_tls_handshake";
      co_return false;
    }
    input = CipherScratch().first(got);
  }
}

awaitable<void> Connection::RefuseAndClose(ByteSpan error, std::string reason) {
  if (reason_.empty()) reason_ = std::move(reason);
  error_code ec;
  if (!error.empty()) co_await ClientWrite(error);
  if (tls_ready_) {
    tls_->Shutdown();
    co_await FlushTls();
  }
  client_.shutdown(Socket::shutdown_send, ec);
  // Read what the client still sends until it closes, so that closing does not reset the
  // connection and lose the error (RFC 1122 4.2.2.13); bounded in time and bytes.
  ArmDeadline(ctx_.limits.close_linger, nullptr, true);  // reason_ is set above
  for (size_t drained = 0; drained < 64 * 1024;) {
    size_t n = co_await ReadNow(client_, PlainScratch(), client_more_, ec);
    if (n == 0) break;
    drained += n;
  }
  DisarmDeadline();
}

awaitable<Connection::Startup> Connection::PgStartup() {
  ByteSpan input;
  while (true) {
    // Feed() copies what it keeps, before anything suspends.
    pg::StartupAction a = startup_.Feed(input);
    input = {};
    switch (a.kind) {
      case pg::StartupAction::Kind::kNeedMore: {
        size_t n = 0;
        Got got = park_failed_ ? Got::kEnd : TryClientRead(PlainScratch(), &n, false);
        if (got == Got::kWait) {
          Park();
          co_return Startup::kParked;
        }
        if (got == Got::kEnd) {
          if (reason_.empty()) reason_ = "client_closed_during_startup";
          // A socket the pre-auth deadline closed is counted as that, by Run().
          if (!deadline_fired_) Metrics::Get().Failed(NetReason::kClientClosedEarly);
          co_return Startup::kFinished;
        }
        input = PlainScratch().first(n);
        break;
      }
      case pg::StartupAction::Kind::kReply:
        if (!co_await ClientWrite(a.bytes)) co_return Startup::kFinished;
        break;
      case pg::StartupAction::Kind::kStartTls: {
        // Bytes the client sent before it could have seen our 'S' are plaintext injected
        // ahead of the handshake (CVE-2021-23214): refuse them even if they arrived after
        // our last read.
        error_code ec;
        if (!a.direct_tls && client_.available(ec) > 0) {
          Metrics::Get().Refused(pg::RefuseReason::kUnencryptedAfterSsl);
          co_await RefuseAndClose(pg::BuildUnencryptedAfterSslError(),
                                  pg::RefuseReasonName(pg::RefuseReason::kUnencryptedAfterSsl));
          co_return Startup::kFinished;
        }
        if (!a.bytes.empty() && !co_await ClientWrite(a.bytes)) co_return Startup::kFinished;
        if (!co_await TlsHandshake(a.tls_prefix, PolicyFor(*route_))) {
          co_return Startup::kFinished;
        }
        startup_.TlsEstablished();
        if (a.direct_tls && tls_->alpn().empty()) {
          Metrics::Get().Failed(NetReason::kDirectTlsWithoutAlpn);
          co_await RefuseAndClose(
              pg::BuildFatal(pg::sqlstate::kProtocolViolation,
                             "received direct SSL connection request without ALPN protocol "
                             "negotiation extension"),
              NetReasonName(NetReason::kDirectTlsWithoutAlpn));
          co_return Startup::kFinished;
        }
        break;
      }
      case pg::StartupAction::Kind::kRefuse:
        Metrics::Get().Refused(a.reason);
        co_await RefuseAndClose(a.bytes, pg::RefuseReasonName(a.reason));
        co_return Startup::kFinished;
      case pg::StartupAction::Kind::kCancel:
        co_await ForwardCancel(a.cancel);
        co_return Startup::kFinished;
      case pg::StartupAction::Kind::kStartup: {
        size_t before = a.startup.params.size();
        std::string options_before;
        if (const auto* o = a.startup.Find("options")) options_before = *o;
        if (!co_await ChooseRoute(&a.startup)) co_return Startup::kFinished;
        const auto* o = a.startup.Find("options");
        bool rewritten = a.startup.params.size() != before || (o && *o != options_before);
        // The `app=` option is the edge's, not the server's: forward the packet without it.
        startup_packet_ = rewritten ? pg::BuildStartupMessage(a.startup) : std::move(a.bytes);
        startup_packet_.insert(startup_packet_.end(), a.rest.begin(), a.rest.end());
        if (const auto* u = a.startup.Find("user")) user_ = *u;
        if (const auto* d = a.startup.Find("database")) database_ = *d;
        co_return Startup::kRouted;
      }
    }
  }
}

void Connection::Park() {
  client_.async_wait(Socket::wait_read, [self = shared_from_this()](error_code ec) {
    if (ec) self->park_failed_ = true;  // the deadline closed the socket, or it failed
    self->Spawn();
  });
}

awaitable<bool> Connection::TlsStartup() {
  co_return co_await TlsHandshake({}, PolicyFor(*route_)) && co_await ChooseRoute(nullptr);
}

awaitable<void> Connection::ForwardCancel(const pg::CancelKey& key) {
  reason_ = "cancel_request";
  auto target = CancelRegistry::Get().Find(key);
  // A key counts only at an address and port where its session's app is reached: another
  // tenant that learnt it cannot cancel through an address of its own. (On a shared address
  // a plaintext cancel names no app, so every app sharing it is a candidate.)
  bool here = target && std::any_of(candidates_.begin(), candidates_.end(),
                                    [&](const control::Route* r) { return r->app == target->app; });
  if (!here) {
    // Unknown keys get the same silence as known ones: a cancel never has a reply.
    Metrics::Get().Failed(NetReason::kCancelUnknownKey);
    reason_ = target ? "cancel_key_of_another_app" : "cancel_unknown_key";
    co_return;
  }
  ArmDeadline(ctx_.limits.connect_timeout, "cancel_connect_timeout", false);
  error_code ec = co_await Dial(server_, resolver_, target->address, target->port);
  if (!ec) {
    Bytes cancel = pg::BuildCancelRequest(target->key);
    co_await asio::async_write(server_, asio::buffer(cancel), asio::redirect_error(kAwait, ec));
  }
  DisarmDeadline();
  if (ec) {
    reason_ = "cancel_machine_unreachable";
    co_return;
  }
  Metrics::Get().cancels_forwarded++;
  server_.shutdown(Socket::shutdown_send, ec);
  reason_ = "cancel_forwarded";
}

namespace {
bool SameHost(std::string a, std::string b) {
  auto norm = [](std::string& s) {
    if (!s.empty() && s.back() == '.') s.pop_back();
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  norm(a);
  norm(b);
  return !a.empty() && a == b;
}

// True if `sni` is a name under the zone of `host` ("<app>.<zone>") but not `host` itself.
bool InZoneOf(const std::string& sni, const std::string& host) {
  auto dot = host.find('.');
  if (sni.empty() || dot == std::string::npos || SameHost(sni, host)) return false;
  std::string zone = host.substr(dot);  // ".<zone>"
  std::string name = sni;
  if (!name.empty() && name.back() == '.') name.pop_back();
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name.size() > zone.size() &&
         name.compare(name.size() - zone.size(), zone.size(), zone) == 0;
}
}  // namespace

awaitable<bool> Connection::ChooseRoute(pg::StartupMessage* startup) {
  std::optional<std::string> named = startup ? pg::TakeAppOption(startup) : std::nullopt;
  std::string sni = tls_ready_ ? tls_->server_name() : "";
  const control::Route* by_sni = nullptr;
  const control::Route* by_name = nullptr;
  for (const auto* r : candidates_) {
    if (!sni.empty() && SameHost(sni, r->host)) by_sni = r;
    if (named && *named == r->app) by_name = r;
  }
  std::string problem;
  if (by_sni && named && by_name != by_sni) {
    problem = "the app named in options (\"" + *named + "\") does not match the server name \"" +
              sni + "\"";
  } else if (by_sni || by_name) {
    route_ = by_sni ? by_sni : by_name;
    co_return true;
  } else if (named) {
    problem = "unknown app \"" + *named + "\" on this address";
  } else if (candidates_.size() == 1 && !InZoneOf(sni, route_->host)) {
    co_return true;  // a dedicated address: route_ is already its app
  } else if (candidates_.size() == 1) {
    // Another app's name of our zone on this app's address (stale DNS, a typo in hostaddr):
    // never hand the client a database other than the one it named.
    problem = "the server name \"" + sni + "\" does not belong to this address";
  } else {
    problem = "this address is shared by several apps and the client did not say which one";
  }
  Metrics::Get().Failed(NetReason::kNoRoute);
  if (route_ && route_->pg_tls) {
    co_await RefuseAndClose(
        pg::BuildFatal(pg::sqlstate::kInvalidAuthorization, problem, {},
                       "Connect with the app's host name (<app>.<domain>) so that the client "
                       "sends SNI (libpq 14 or later), or name the app in the options parameter: "
                       "options='app=<app>' (in a URL: ?options=app%3D<app>)."),
        "no_route_for_client");
  } else {
    reason_ = "no_route_for_client";
  }
  co_return false;
}

awaitable<bool> Connection::ConnectMachine() {
  const auto& machines = route_->machines;
  static std::atomic<size_t> next{0};
  size_t start = machines.empty() ? 0 : next++ % machines.size();
  for (size_t i = 0; i < machines.size(); ++i) {
    const auto& m = machines[(start + i) % machines.size()];
    ArmDeadline(ctx_.limits.connect_timeout, "machine_connect_timeout", false);
    error_code ec = co_await Dial(server_, resolver_, m.address, route_->internal_port);
    DisarmDeadline();
    if (!ec) {
      machine_address_ = m.address;
      reason_.clear();
      co_return true;
    }
    // Only the connect deadline aborts a dial (it closes the socket under it).
    std::string why =
        ec == asio::error::operation_aborted
            ? "no answer within " + std::to_string(ctx_.limits.connect_timeout.count()) + " ms"
            : ec.message();
    spdlog::warn("app {}: machine {} port {} unreachable: {}", route_->app, m.address,
                 route_->internal_port, why);
  }
  Metrics::Get().Failed(NetReason::kMachineUnreachable);
  if (route_->pg_tls) {
    // The text names the app, never a private address.
    co_await RefuseAndClose(
        pg::BuildFatal(pg::sqlstate::kConnectionFailure,
                       "could not connect to a machine of app \"" + route_->app + "\"",
                       {}, "The app's machines are not reachable from the edge; try again later."),
        NetReasonName(NetReason::kMachineUnreachable));
  } else {
    reason_ = NetReasonName(NetReason::kMachineUnreachable);
  }
  co_return false;
}

void Connection::Start() {
  error_code ec;
  local_ep_ = client_.local_endpoint(ec);
  client_.set_option(tcp::no_delay(true), ec);
  client_.non_blocking(true, ec);  // ReadNow and WriteAll try the socket first
  Metrics::Get().accepted++;
  Metrics::Get().active++;

  table_ = ctx_.routes->Current();
  if (table_) candidates_ = table_->FindAll(Ip(local_ep_), local_ep_.port());
  // Until SNI or `options` says otherwise, the first route decides the handler.
  route_ = candidates_.empty() ? nullptr : candidates_.front();
  if (route_ == nullptr) {
    Metrics::Get().Failed(NetReason::kNoRoute);
    reason_ = NetReasonName(NetReason::kNoRoute);
    Finish();
    return;
  }
  certs_ = ctx_.certs->Current();
  ArmDeadline(ctx_.limits.handshake_timeout, NetReasonName(NetReason::kHandshakeTimeout), true);
  Spawn();
}

void Connection::Spawn() {
  asio::co_spawn(client_.get_executor(), Run(), [self = shared_from_this()](std::exception_ptr e) {
    if (e) spdlog::error("connection coroutine ended with an exception");
  });
}

awaitable<void> Connection::Run() {
  bool ok = true;
  if (route_->pg_tls) {
    Startup s = co_await PgStartup();
    if (s == Startup::kParked) co_return;  // Park() spawns Run() again
    ok = s == Startup::kRouted;
  } else if (route_->tls) {
    ok = co_await TlsStartup();
  } else if (candidates_.size() > 1) {
    ok = co_await ChooseRoute(nullptr);  // raw TCP on a shared address: nothing to go by
  }
  if (deadline_fired_) Metrics::Get().Failed(NetReason::kHandshakeTimeout);
  DisarmDeadline();
  if (ok && !deadline_fired_ && co_await ConnectMachine() && co_await Relay()) co_return;
  Finish();
}

void Connection::Finish() {
  CloseAll();
  for (const auto& key : issued_keys_) CancelRegistry::Get().Unregister(key);
  Metrics::Get().bytes_in += bytes_in_;
  Metrics::Get().bytes_out += bytes_out_;
  Metrics::Get().active--;
  Metrics::Get().closed++;
  Log();
}

awaitable<bool> Connection::Relay() {
  error_code ec;
  if (route_->proxy_proto != 0) {
    auto addrs = ProxyAddressesOf(client_ep_, local_ep_);
    Bytes header = route_->proxy_proto == 2 ? BuildProxyV2(addrs) : BuildProxyV1(addrs);
    co_await asio::async_write(server_, asio::buffer(header), asio::redirect_error(kAwait, ec));
    if (ec) co_return false;
  }
  if (!startup_packet_.empty()) {
    co_await asio::async_write(server_, asio::buffer(startup_packet_),
                               asio::redirect_error(kAwait, ec));
    bytes_in_ += startup_packet_.size();
    Bytes().swap(startup_packet_);
    if (ec) co_return false;
  }
  RelayLoop* loop = RelayLoop::Current();
  if (loop == nullptr) {
    spdlog::error("connection: no relay loop on this thread");
    co_return false;
  }
  relay_ = std::make_unique<RelayState>();
  if (route_->pg_tls) {
    relay_->down_messages.emplace();
    relay_->watcher.emplace([this](const pg::CancelKey& real) {
      pg::CancelKey issued = CancelRegistry::Get().Register(
          CancelTarget{route_->app, machine_address_, route_->internal_port, real});
      issued_keys_.push_back(issued);
      return issued;
    });
  }
  // Both sockets leave Asio, which deregisters them, for the relay loop: from here on it calls
  // OnReady(), and Finish() at the end.
  relay_->fds[0] = client_.release(ec);
  if (!ec) relay_->fds[1] = server_.release(ec);
  if (ec || !loop->Adopt(shared_from_this(), relay_->fds[0], relay_->fds[1])) {
    CloseFds();
    co_return false;
  }
  co_return true;
}

namespace {
// One read of a non-blocking socket registered edge-triggered. `readable` is what the last
// event said and the last read left: false after EAGAIN or a read that came back short (the
// socket was drained then; bytes that arrive later raise a new edge), unless `hung_up` (an
// event said the peer closed or the socket failed: its EOF or error may have come with the
// bytes just read, and raises no edge of its own any more). kEnd: EOF (`*error` 0) or an error
// (`*error` its errno).
Got RecvSome(int fd, std::span<uint8_t> buf, bool& readable, bool hung_up, size_t* n,
             int* error) {
  *error = 0;
  if (!readable) return Got::kWait;
  while (true) {
    ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r > 0) {
      *n = static_cast<size_t>(r);
      readable = hung_up || *n == buf.size();
      return Got::kData;
    }
    if (r == 0) return Got::kEnd;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable = false;
      return Got::kWait;
    }
    *error = errno;
    return Got::kEnd;
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
}  // namespace

bool Connection::Outbox::Send(int fd, ByteSpan data) {
  size_t sent = 0;
  if (!SendSome(fd, data, &sent, writable)) return false;
  if (sent < data.size()) {
    spill.assign(data.begin() + static_cast<std::ptrdiff_t>(sent), data.end());
    offset = 0;
  }
  return true;
}

bool Connection::Outbox::Flush(int fd) {
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

Got Connection::ClientRecv(std::span<uint8_t> buf, size_t* n) {
  if (relay_) {
    int error = 0;
    return RecvSome(relay_->fds[0], buf, relay_->client_readable, relay_->client_hung_up, n,
                    &error);
  }
  error_code ec;
  return ReadSome(client_, buf, client_more_, n, ec);
}

Connection::Flow Connection::ClientToServer() {
  RelayState& r = *relay_;
  if (r.up_done) return Flow::kIdle;
  if (!r.to_server.Flush(r.fds[1])) return Fail("machine_write_failed");
  if (!r.to_server.spill.empty()) return Flow::kIdle;  // the machine reads slowly: wait for it
  size_t n = 0;
  Got got = TryClientRead(PlainScratch(), &n, r.engine_drained);
  // Whether the engine would only ask for ciphertext: then the next step goes to the socket.
  r.engine_drained = got == Got::kWait || (got == Got::kData && tls_ready_ && tls_->read_drained());
  switch (got) {
    case Got::kWait: return Flow::kIdle;
    case Got::kEnd:
      if (reason_.empty()) reason_ = "client_closed";
      ::shutdown(r.fds[1], SHUT_WR);  // half-close: the machine sees EOF and may still answer
      r.up_done = true;
      return Flow::kProgress;
    case Got::kData: break;
  }
  bytes_in_ += n;
  if (!r.to_server.Send(r.fds[1], PlainScratch().first(n))) return Fail("machine_write_failed");
  return Flow::kProgress;
}

Connection::Flow Connection::ServerToClient() {
  RelayState& r = *relay_;
  if (r.down_done) return Flow::kIdle;
  if (!r.to_client.Flush(r.fds[0])) return Fail("client_write_failed");
  if (!r.to_client.spill.empty()) return Flow::kIdle;  // the client reads slowly: wait for it
  if (r.server_eof) {  // what was left, and the close_notify, are out: now the FIN
    ::shutdown(r.fds[0], SHUT_WR);
    r.down_done = true;
    // A PostgreSQL server that closes has ended the session: nothing the client sends after
    // can matter, so the edge does not wait for the client's own close (which an idle pooled
    // client may never send) with both sockets held. Raw TCP and `tls` keep the half-close.
    if (route_->pg_tls) r.up_done = true;
    return Flow::kProgress;
  }
  size_t n = 0;
  int error = 0;
  switch (RecvSome(r.fds[1], PlainScratch(), r.server_readable, r.server_hung_up, &n, &error)) {
    case Got::kWait: return Flow::kIdle;
    case Got::kEnd:
      if (error != 0) return Fail("machine_read_failed");
      if (reason_.empty()) reason_ = "machine_closed";
      r.server_eof = true;
      if (tls_ready_) {
        tls_->Shutdown();
        Bytes& out = OutScratch();
        out.clear();
        tls_->TakeOutput(&out);
        if (!r.to_client.Send(r.fds[0], out)) return Fail("client_write_failed");
      }
      return Flow::kProgress;
    case Got::kData: break;
  }
  ByteSpan chunk = PlainScratch().first(n);
  if (r.watcher) {
    r.watcher_out.clear();
    if (auto s = r.watcher->Feed(chunk, &r.watcher_out); !s.ok()) {
      return Fail("machine_protocol_error");
    }
    chunk = r.watcher_out;
    if (r.watcher->done()) {  // ReadyForQuery: from here on, bytes pass untouched
      server_version_ = r.watcher->server_version();
      r.watcher.reset();
      if (ctx_.on_server_version && !server_version_.empty()) {
        ctx_.on_server_version(route_->app, machine_address_, server_version_);
      }
    }
  }
  bytes_out_ += chunk.size();
  if (r.down_messages) r.down_messages->Advance(chunk);
  if (!chunk.empty()) {
    if (tls_ready_) {
      Bytes& out = OutScratch();
      out.clear();
      if (tls_->Write(chunk, &out) != tls::TlsEngine::Io::kOk) return Fail("client_write_failed");
      chunk = out;
    }
    if (!r.to_client.Send(r.fds[0], chunk)) return Fail("client_write_failed");
  }
  if (!r.watcher && r.watcher_out.capacity() > 0) Bytes().swap(r.watcher_out);
  return Flow::kProgress;
}

Connection::Flow Connection::Fail(const char* reason) {
  if (reason_.empty()) reason_ = reason;
  relay_->up_done = relay_->down_done = true;
  return Flow::kProgress;
}

RelayHandler::Result Connection::OnReady(Side side, uint32_t events) {
  // Any event may be the one after which a read or a write fails; both find out by trying.
  constexpr uint32_t kIn = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  constexpr uint32_t kOut = EPOLLOUT | EPOLLHUP | EPOLLERR;
  RelayState& r = *relay_;
  bool client = side == Side::kClient;
  if (events & kIn) (client ? r.client_readable : r.server_readable) = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    (client ? r.client_hung_up : r.server_hung_up) = true;
  }
  if (events & kOut) (client ? r.to_client : r.to_server).writable = true;
  // A bounded burst, so that one busy connection (a COPY) does not hold the loop.
  for (int i = 0; i < 16; ++i) {
    Flow up = ClientToServer();
    Flow down = ServerToClient();
    if (r.up_done && r.down_done) {
      CloseFds();
      Finish();
      return Result::kDone;
    }
    if (up == Flow::kIdle && down == Flow::kIdle) return Result::kWait;
  }
  return Result::kMore;
}

void Connection::OnStop(Stop why) {
  if (reason_.empty()) reason_ = "relay_stopped";
  RelayState& r = *relay_;
  if (why == Stop::kLoopStopping && r.down_messages && r.down_messages->at_boundary() &&
      r.to_client.spill.empty() && !r.down_done && tls_ready_) {
    // Between two of the server's messages, the client is told why, as PostgreSQL tells it at
    // a fast shutdown; in the middle of one, the close alone says it.
    Bytes out;
    Bytes fatal =
        pg::BuildFatal("57P01", "terminating connection because the edge is shutting down");
    if (tls_->Write(fatal, &out) == tls::TlsEngine::Io::kOk) {
      tls_->Shutdown();
      tls_->TakeOutput(&out);
      size_t sent = 0;
      (void)SendSome(r.fds[0], out, &sent, r.to_client.writable);
    }
  }
  CloseFds();
  Finish();
}

void Connection::CloseFds() {
  if (!relay_) return;
  for (int& fd : relay_->fds) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

void Connection::Log() {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
  spdlog::info(
      "conn client={} local={} app={} handler={} tls={} cipher={} sni={} user={} database={} "
      "server_version={} bytes_in={} bytes_out={} duration_ms={} reason={}",
      Endpoint(client_ep_), Endpoint(local_ep_), LogfmtValue(route_ ? route_->app : ""),
      route_ ? route_->HandlerName() : "-", tls_ready_ ? tls_->version() : "-",
      tls_ready_ ? tls_->cipher() : "-", LogfmtValue(tls_ ? tls_->server_name() : ""),
      LogfmtValue(user_), LogfmtValue(database_), LogfmtValue(server_version_), bytes_in_,
      bytes_out_, ms.count(), reason_.empty() ? "closed" : reason_);
}

}  // namespace

void StartConnection(Socket socket, const tcp::endpoint& peer, const ConnectionContext& ctx) {
  std::make_shared<Connection>(std::move(socket), peer, ctx)->Start();
}

}  // namespace drawbridge::net
