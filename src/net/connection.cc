#include "net/connection.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "net/cancel_registry.h"
#include "net/metrics.h"
#include "net/proxy_protocol.h"
#include "pg/backend_watcher.h"
#include "pg/startup.h"
#include "tls/tls_engine.h"

namespace drawbridge::net {

namespace {

using base::Bytes;
using base::ByteSpan;
using Clock = std::chrono::steady_clock;

// A logfmt value: quoted when it holds a space, a quote or '='; "-" when empty.
std::string Logfmt(const std::string& v) {
  if (v.empty()) return "-";
  if (v.find_first_of(" \"=") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

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
      // The connect left writability in the descriptor's epoll interest for good, so every
      // later wait for a reply would also wake at once for it, a spurious wake-up per message.
      // Registering the descriptor afresh drops it (nothing else waits on it yet).
      int fd = socket.release(ec);
      if (ec) continue;
      socket.assign(ep.protocol(), fd, ec);
      if (ec) {
        ::close(fd);
        continue;
      }
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
// land in `buf` only after the last suspension, so `buf` may be scratch. The relay's two hot
// reads (ClientRead, ServerToClient) spell this loop out instead of calling it, which saves a
// coroutine frame per message.
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

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Socket socket, const ConnectionContext& ctx)
      : ctx_(ctx),
        client_(std::move(socket)),
        server_(client_.get_executor()),
        resolver_(client_.get_executor()),
        deadline_(client_.get_executor()),
        started_(Clock::now()) {}

  // Reads the route and starts Run(); a connection without a route is finished here.
  void Start();

 private:
  // The connection's coroutine, from after Start() to the end of the relay. A pg_tls client
  // that keeps the edge waiting for its startup packets parks instead: Run() returns, and the
  // bytes' arrival spawns it again (see Park()).
  void Spawn();
  awaitable<void> Run();
  // Closes the sockets, counts and logs the connection: once, at its end.
  void Finish();

  // The client's byte stream, plaintext or through TLS once tls_ is set. TryClientRead()
  // never suspends: kWait means wait for the socket, then call again with `engine_drained`
  // true (the engine asked for ciphertext before the wait, so it is not asked again first).
  Got TryClientRead(std::span<uint8_t> buf, size_t* n, bool engine_drained);
  awaitable<size_t> ClientRead(std::span<uint8_t> buf);
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
  // One step of it: feeds `input` to `machine` and does what it says, short of waiting for
  // more bytes (PgStartup() reads them, or parks).
  enum class Step { kNeedMore, kAgain, kRouted, kFinished };
  awaitable<Step> PgStartupStep(pg::StartupMachine& machine, ByteSpan input);
  // tls handler: the handshake, then the route by SNI. Its own coroutine so that Run's frame,
  // which lives as long as the connection, does not hold the handshake's temporaries.
  awaitable<bool> TlsStartup();
  awaitable<void> ForwardCancel(const pg::CancelKey& key);
  // Picks route_ among candidates_ by SNI or the `app=` option. False: refused.
  awaitable<bool> ChooseRoute(pg::StartupMessage* startup);
  awaitable<bool> ConnectMachine();
  awaitable<void> Relay();
  awaitable<void> ClientToServer();
  awaitable<void> ServerToClient();

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
  // Bytes a slow peer has not taken yet; empty (and unallocated) otherwise.
  Bytes client_spill_, server_spill_;
  // Whether the last read of each socket filled its buffer (see ReadNow).
  bool client_more_ = true, server_more_ = true;

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

void Connection::ArmDeadline(std::chrono::milliseconds after, const char* reason,
                             bool client_too) {
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
  error_code ec;
  if (!tls_ready_) return ReadSome(client_, buf, client_more_, n, ec);
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
    Got g = ReadSome(client_, CipherScratch(), client_more_, &got, ec);
    if (g != Got::kData) return g;
    input = CipherScratch().first(got);
  }
}

awaitable<size_t> Connection::ClientRead(std::span<uint8_t> buf) {
  bool engine_drained = false;
  while (true) {
    size_t n = 0;
    switch (TryClientRead(buf, &n, engine_drained)) {
      case Got::kData: co_return n;
      case Got::kEnd: co_return 0;
      case Got::kWait: break;
    }
    error_code ec;
    co_await client_.async_wait(Socket::wait_read, asio::redirect_error(kAwait, ec));
    if (ec) co_return 0;
    engine_drained = true;  // it asked for ciphertext before the wait
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
    Step step = co_await PgStartupStep(startup_, input);
    switch (step) {
      case Step::kNeedMore: break;
      case Step::kAgain: input = {}; continue;
      case Step::kRouted: co_return Startup::kRouted;
      case Step::kFinished: co_return Startup::kFinished;
    }
    size_t n = 0;
    Got got = park_failed_ ? Got::kEnd : TryClientRead(PlainScratch(), &n, false);
    if (got == Got::kWait) {
      Park();
      co_return Startup::kParked;
    }
    if (got == Got::kEnd) {
      if (reason_.empty()) reason_ = "client_closed_during_startup";
      Metrics::Get().Failed(NetReason::kClientClosedEarly);
      co_return Startup::kFinished;
    }
    input = PlainScratch().first(n);
  }
}

void Connection::Park() {
  client_.async_wait(Socket::wait_read, [self = shared_from_this()](error_code ec) {
    if (ec) self->park_failed_ = true;  // the deadline closed the socket, or it failed
    self->Spawn();
  });
}

awaitable<Connection::Step> Connection::PgStartupStep(pg::StartupMachine& machine,
                                                      ByteSpan input) {
  // Feed() copies what it keeps, before anything suspends.
  pg::StartupAction a = machine.Feed(input);
  switch (a.kind) {
    case pg::StartupAction::Kind::kNeedMore:
      co_return Step::kNeedMore;
    case pg::StartupAction::Kind::kReply:
      co_return co_await ClientWrite(a.bytes) ? Step::kAgain : Step::kFinished;
    case pg::StartupAction::Kind::kStartTls: {
      // Bytes the client sent before it could have seen our 'S' are plaintext injected
      // ahead of the handshake (CVE-2021-23214): refuse them even if they arrived after
      // our last read.
      error_code ec;
      if (!a.direct_tls && client_.available(ec) > 0) {
        Metrics::Get().Refused(pg::RefuseReason::kUnencryptedAfterSsl);
        co_await RefuseAndClose(pg::BuildUnencryptedAfterSslError(),
                                pg::RefuseReasonName(pg::RefuseReason::kUnencryptedAfterSsl));
        co_return Step::kFinished;
      }
      if (!a.bytes.empty() && !co_await ClientWrite(a.bytes)) co_return Step::kFinished;
      if (!co_await TlsHandshake(a.tls_prefix, PolicyFor(*route_))) co_return Step::kFinished;
      machine.TlsEstablished();
      if (a.direct_tls && tls_->alpn().empty()) {
        Metrics::Get().Failed(NetReason::kDirectTlsWithoutAlpn);
        co_await RefuseAndClose(
            pg::BuildFatal(pg::sqlstate::kProtocolViolation,
                           "received direct SSL connection request without ALPN protocol "
                           "negotiation extension"),
            NetReasonName(NetReason::kDirectTlsWithoutAlpn));
        co_return Step::kFinished;
      }
      co_return Step::kAgain;
    }
    case pg::StartupAction::Kind::kRefuse:
      Metrics::Get().Refused(a.reason);
      co_await RefuseAndClose(a.bytes, pg::RefuseReasonName(a.reason));
      co_return Step::kFinished;
    case pg::StartupAction::Kind::kCancel:
      co_await ForwardCancel(a.cancel);
      co_return Step::kFinished;
    case pg::StartupAction::Kind::kStartup: {
      size_t before = a.startup.params.size();
      std::string options_before;
      if (const auto* o = a.startup.Find("options")) options_before = *o;
      if (!co_await ChooseRoute(&a.startup)) co_return Step::kFinished;
      const auto* o = a.startup.Find("options");
      bool rewritten = a.startup.params.size() != before || (o && *o != options_before);
      // The `app=` option is the edge's, not the server's: forward the packet without it.
      startup_packet_ = rewritten ? pg::BuildStartupMessage(a.startup) : std::move(a.bytes);
      startup_packet_.insert(startup_packet_.end(), a.rest.begin(), a.rest.end());
      if (const auto* u = a.startup.Find("user")) user_ = *u;
      if (const auto* d = a.startup.Find("database")) database_ = *d;
      co_return Step::kRouted;
    }
  }
  co_return Step::kFinished;
}

awaitable<bool> Connection::TlsStartup() {
  co_return co_await TlsHandshake({}, PolicyFor(*route_)) && co_await ChooseRoute(nullptr);
}

awaitable<void> Connection::ForwardCancel(const pg::CancelKey& key) {
  reason_ = "cancel_request";
  auto target = CancelRegistry::Get().Find(key);
  if (!target) {
    // Unknown keys get the same silence as known ones: a cancel never has a reply.
    Metrics::Get().Failed(NetReason::kCancelUnknownKey);
    reason_ = "cancel_unknown_key";
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
    spdlog::warn("app {}: machine {} port {} unreachable: {}", route_->app, m.address,
                 route_->internal_port, ec.message());
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
  client_ep_ = client_.remote_endpoint(ec);
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
  if (ok && !deadline_fired_ && co_await ConnectMachine()) co_await Relay();
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

awaitable<void> Connection::Relay() {
  error_code ec;
  if (route_->proxy_proto != 0) {
    auto addrs = ProxyAddressesOf(client_ep_, local_ep_);
    Bytes header = route_->proxy_proto == 2 ? BuildProxyV2(addrs) : BuildProxyV1(addrs);
    co_await asio::async_write(server_, asio::buffer(header), asio::redirect_error(kAwait, ec));
    if (ec) co_return;
  }
  if (!startup_packet_.empty()) {
    co_await asio::async_write(server_, asio::buffer(startup_packet_),
                               asio::redirect_error(kAwait, ec));
    bytes_in_ += startup_packet_.size();
    Bytes().swap(startup_packet_);
    if (ec) co_return;
  }
  // Both directions run at once; this coroutine waits for the spawned one before returning,
  // so the captured locals outlive it.
  Timer other_done(client_.get_executor(), Clock::time_point::max());
  bool finished = false;
  asio::co_spawn(client_.get_executor(), ServerToClient(),
                 [&](std::exception_ptr e) {
                   if (e) spdlog::error("relay server->client ended with an exception");
                   finished = true;
                   other_done.cancel();
                 });
  co_await ClientToServer();
  if (!finished) co_await other_done.async_wait(asio::redirect_error(kAwait, ec));
}

awaitable<void> Connection::ClientToServer() {
  error_code ec;
  while (true) {
    size_t n = co_await ClientRead(PlainScratch());
    if (n == 0) break;
    bytes_in_ += n;
    if (!co_await WriteAll(server_, PlainScratch().first(n), server_spill_)) {
      if (reason_.empty()) reason_ = "machine_write_failed";
      CloseAll();
      co_return;
    }
  }
  if (reason_.empty()) reason_ = "client_closed";
  // Half-close: the machine sees EOF and may still answer.
  server_.shutdown(Socket::shutdown_send, ec);
}

awaitable<void> Connection::ServerToClient() {
  auto self = shared_from_this();
  std::optional<pg::BackendWatcher> watcher;
  if (route_->pg_tls) {
    watcher.emplace([this](const pg::CancelKey& real) {
      pg::CancelKey issued = CancelRegistry::Get().Register(
          CancelTarget{machine_address_, route_->internal_port, real});
      issued_keys_.push_back(issued);
      return issued;
    });
  }
  Bytes out;
  error_code ec;
  while (true) {
    size_t n = 0;
    Got g = ReadSome(server_, PlainScratch(), server_more_, &n, ec);
    if (g == Got::kEnd) break;
    if (g == Got::kWait) {  // ReadNow, spelled out (see there)
      co_await server_.async_wait(Socket::wait_read, asio::redirect_error(kAwait, ec));
      if (ec) break;
      continue;
    }
    ByteSpan chunk = PlainScratch().first(n);
    if (watcher) {
      out.clear();
      if (auto s = watcher->Feed(chunk, &out); !s.ok()) {
        if (reason_.empty()) reason_ = "machine_protocol_error";
        CloseAll();
        co_return;
      }
      chunk = out;
      if (watcher->done()) {  // ReadyForQuery: from here on, bytes pass untouched
        server_version_ = watcher->server_version();
        watcher.reset();
        if (ctx_.on_server_version && !server_version_.empty()) {
          ctx_.on_server_version(route_->app, machine_address_, server_version_);
        }
      }
    }
    bytes_out_ += chunk.size();
    if (!chunk.empty() && !co_await ClientWrite(chunk)) {
      if (reason_.empty()) reason_ = "client_write_failed";
      CloseAll();
      co_return;
    }
    if (!watcher && out.capacity() > 0) Bytes().swap(out);
  }
  if (ec != asio::error::eof) {
    if (reason_.empty()) reason_ = "machine_read_failed";
    CloseAll();
    co_return;
  }
  if (reason_.empty()) reason_ = "machine_closed";
  if (tls_ready_) {
    tls_->Shutdown();
    co_await FlushTls();
  }
  client_.shutdown(Socket::shutdown_send, ec);
}

void Connection::Log() {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
  spdlog::info(
      "conn client={} local={} app={} handler={} tls={} cipher={} sni={} user={} database={} "
      "server_version={} bytes_in={} bytes_out={} duration_ms={} reason={}",
      Endpoint(client_ep_), Endpoint(local_ep_), Logfmt(route_ ? route_->app : ""),
      route_ ? route_->HandlerName() : "-", tls_ready_ ? tls_->version() : "-",
      tls_ready_ ? tls_->cipher() : "-", Logfmt(tls_ ? tls_->server_name() : ""), Logfmt(user_),
      Logfmt(database_), Logfmt(server_version_), bytes_in_, bytes_out_, ms.count(),
      reason_.empty() ? "closed" : reason_);
}

}  // namespace

void StartConnection(Socket socket, const ConnectionContext& ctx) {
  std::make_shared<Connection>(std::move(socket), ctx)->Start();
}

}  // namespace drawbridge::net
