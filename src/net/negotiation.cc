#include "net/negotiation.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "base/cidr.h"
#include "base/logfmt.h"
#include "health/pick.h"
#include "net/conn_log.h"
#include "net/proxy_protocol.h"
#include "net/relay_pool.h"
#include "net/route_choice.h"
#include "net/scratch.h"
#include "net/session.h"
#include "pg/startup.h"
#include "tls/tls_engine.h"

namespace drawbridge::net {

namespace {

using base::Bytes;
using base::ByteSpan;

Address AddressOf(const tcp::endpoint& ep) {
  Address a;
  a.port = ep.port();
  a.v6 = ep.address().is_v6();
  if (a.v6) {
    auto b = ep.address().to_v6().to_bytes();
    std::copy(b.begin(), b.end(), a.ip.begin());
  } else {
    auto b = ep.address().to_v4().to_bytes();
    std::copy(b.begin(), b.end(), a.ip.begin());
  }
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
      socket.non_blocking(true, ec);  // writes try the socket first
      co_return error_code{};
    }
  }
  co_return ec ? ec : asio::error::host_not_found;
}

// Sends the server's own key of `target` to its machine on `socket` and shuts the sending side
// down: nullptr once sent, else the log reason. The caller's deadline bounds it.
awaitable<const char*> SendCancel(Socket& socket, Resolver& resolver, const CancelTarget& target) {
  error_code ec = co_await Dial(socket, resolver, target.address, target.port);
  if (!ec) {
    Bytes cancel = pg::BuildCancelRequest(target.key);
    co_await asio::async_write(socket, asio::buffer(cancel), asio::redirect_error(kAwait, ec));
  }
  if (ec) co_return "cancel_machine_unreachable";
  socket.shutdown(Socket::shutdown_send, ec);
  co_return nullptr;
}

// One read of what `s` (a non-blocking socket) has into `buf`, without suspending. kData: *n
// bytes. kEnd: EOF or an error. kWait: wait for readability, then call again. `maybe_more`
// says whether the last read filled its buffer: if it did not, the socket is most likely
// drained, so the read that would fail with EAGAIN is skipped and the caller waits first (Asio
// re-arms the descriptor for a wait, so bytes that arrived meanwhile are not missed).
enum class Got { kData, kWait, kEnd };
Got ReadSome(Socket& s, std::span<uint8_t> buf, bool& maybe_more, size_t* n) {
  if (!maybe_more) {
    maybe_more = true;  // read once the wait is over
    return Got::kWait;
  }
  error_code ec;
  *n = s.read_some(asio::buffer(buf.data(), buf.size()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) return Got::kWait;
  if (ec) return Got::kEnd;
  maybe_more = *n == buf.size();
  return Got::kData;
}

// Reads what `s` has into `buf`, waiting for it: 0 on EOF or error. The bytes land in `buf`
// only after the last suspension, so `buf` may be scratch.
awaitable<size_t> ReadNow(Socket& s, std::span<uint8_t> buf, bool& maybe_more) {
  while (true) {
    size_t n = 0;
    switch (ReadSome(s, buf, maybe_more, &n)) {
      case Got::kData:
        co_return n;
      case Got::kEnd:
        co_return 0;
      case Got::kWait:
        break;
    }
    error_code ec;
    co_await s.async_wait(Socket::wait_read, asio::redirect_error(kAwait, ec));
    if (ec) co_return 0;
  }
}

// Writes all of `data` (which may be scratch): as much as the socket takes at once, the rest
// from `spill`, a copy owned by the negotiation only while the peer is slow.
awaitable<bool> WriteAll(Socket& s, ByteSpan data, Bytes& spill) {
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
  Bytes().swap(spill);
  co_return !ec;
}

class Negotiation : public std::enable_shared_from_this<Negotiation> {
 public:
  Negotiation(Socket socket, const tcp::endpoint& peer, WorkerContext ctx)
      : ctx_(ctx),
        client_(std::move(socket)),
        server_(client_.get_executor()),
        resolver_(client_.get_executor()),
        deadline_(client_.get_executor()) {
    record_.client = AddressOf(peer);
  }

  // A negotiation still under way when its io_context is destroyed (the edge stopping after
  // the drain) is finished here, so that it is counted and logged like any other.
  ~Negotiation() {
    if (!finished_ && !handed_off_) {
      record_.SetReason("edge_stopped");
      Finish();
    }
  }

  // Reads the route and starts Run(); a connection without a route is finished here.
  void Start();

 private:
  Metrics& metrics() { return ctx_.server->metrics; }
  const Limits& limits() const { return ctx_.server->limits; }

  // The coroutine, from after Start() to the hand-off (or the end). A pg_tls client that
  // keeps the edge waiting for its startup packets parks instead: Run() returns, and the
  // bytes' arrival spawns it again (see Park()).
  void Spawn();
  awaitable<void> Run();
  // Closes the sockets, counts and logs the connection: once, unless it was handed over.
  void Finish();

  // Admission control (docs/admission.md). Admit(): at accept, the caps; false if refused, the
  // connection then finished (pg_tls: a FATAL 53300 written without waiting). ChargeTls():
  // before the edge answers an SSLRequest or starts a TLS handshake, the source's handshake
  // rate; false if over it, the connection refused (an SSLRequest gets FATAL 53300 in plain
  // text; direct TLS and the tls handler are closed). LogRefusal(): the line of a refused
  // connection, at most one per reason per second.
  bool Admit();
  awaitable<bool> ChargeTls(bool ssl_request);
  void LogRefusal();

  // The client's byte stream, plaintext or through TLS once tls_ready_. Never suspends: kWait
  // means wait for the socket, then call again.
  Got TryClientRead(std::span<uint8_t> buf, size_t* n);
  awaitable<bool> ClientWrite(ByteSpan data);
  awaitable<bool> FlushTls();
  awaitable<bool> TlsHandshake(ByteSpan prefix, tls::SessionPolicy policy);
  // Sends `error` (may be empty), close_notify and FIN, then drains input briefly
  // (docs/connection.md, "Refusing").
  awaitable<void> RefuseAndClose(ByteSpan error, const char* reason);

  // pg_tls: negotiation up to a routed StartupMessage, from where startup_ stands. kParked:
  // the client has sent nothing more yet and Park() waits for it without a coroutine.
  enum class Startup { kRouted, kFinished, kParked };
  awaitable<Startup> PgStartup();
  // A waiting negotiation that holds no coroutine frame: an idle client costs this object,
  // one pending wait and the deadline.
  void Park();
  // tls handler: the handshake, then the route by SNI. Its own coroutine so that Run's frame,
  // which lives as long as the negotiation, does not hold the handshake's temporaries.
  awaitable<bool> TlsStartup();
  awaitable<void> ForwardCancel(const pg::CancelKey& key);
  // Fleet mode: hands a cancel whose key names node `node` (not this one) to that node.
  void SendCancelToPeer(int node, const pg::CancelKey& key);
  // Picks the route among candidates_ by SNI or the `app=` option. False: refused.
  awaitable<bool> Route(pg::StartupMessage* startup);
  // False: the client's address is outside the app's allowed_sources; refused with FATAL
  // 28000 (pg_tls) before any machine is contacted.
  awaitable<bool> SourceAllowed();
  // False: the route's app no longer holds the dialled address (released, or the app
  // destroyed, since the connection was accepted); refused with FATAL 57P01 saying so.
  awaitable<bool> StillHeld();
  // Chooses the machines to try from the health board (health/pick.h) and connects the first
  // that answers, holding a session ticket on it. False: refused (no machine, none healthy,
  // none of the role asked for, every one at its hard limit for the whole wait, or none could
  // be reached).
  awaitable<bool> ConnectMachine();
  // Refuses a connection the board gave no machine to: FATAL `sqlstate` `message` `hint` for
  // pg_tls, a close for the others; counted as `why`.
  awaitable<void> RefuseForMachines(NetReason why, std::string_view sqlstate,
                                    const std::string& message, const std::string& hint);
  // Sends what the machine must see first, then moves the connection into a Session for the
  // server's relay loops (the pool picks one). True: the session has the connection and finishes it.
  awaitable<bool> HandOff();

  // Closes the machine socket (and the client's if `client_too`) after `after` unless re-armed
  // or disarmed first; `reason` (may be null) becomes the record's reason if none is set.
  // Each arm or disarm starts a new generation: a handler that had already expired when it
  // was cancelled still runs, and does nothing unless its generation is current.
  void ArmDeadline(std::chrono::milliseconds after, const char* reason, bool client_too);
  void DisarmDeadline();
  void CloseAll();
  tls::SessionPolicy PolicyFor(const control::Route& route) const;

  WorkerContext ctx_;
  Socket client_;
  Socket server_;
  Resolver resolver_;
  Timer deadline_;
  uint32_t deadline_generation_ = 0;
  bool deadline_fired_ = false;
  ConnRecord record_;

  // Routes for the dialled address and port; several on a shared address until SNI or the
  // `options` parameter picks one into record_.route.
  std::vector<const control::Route*> candidates_;
  std::shared_ptr<const tls::CertSet> certs_;
  std::unique_ptr<tls::TlsEngine> tls_;
  bool tls_ready_ = false;
  // Bytes a slow client has not taken yet; empty (and unallocated) otherwise.
  Bytes client_spill_;
  // Whether the last read of the client's socket filled its buffer (see ReadSome).
  bool client_more_ = true;

  // pg_tls: the negotiation so far, whether the last park's wait failed, and what the
  // client sent to be forwarded once a machine is connected.
  pg::StartupMachine startup_;
  bool park_failed_ = false;
  Bytes startup_packet_;
  std::string machine_address_;
  // Counts this connection on its machine's open sessions from the dial on; moved into the
  // session at the hand-off, released if the connection ends before.
  health::SessionTicket ticket_;
  // What admission control refused of this connection, if anything: its line is then logged
  // by LogRefusal(). (Its slot, when admitted, is record_.admission.)
  admission::Refusal refusal_ = admission::Refusal::kNone;
  bool handed_off_ = false;
  bool finished_ = false;
};

void Negotiation::ArmDeadline(std::chrono::milliseconds after, const char* reason,
                              bool client_too) {
  uint32_t generation = ++deadline_generation_;
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this(), generation, reason, client_too](error_code ec) {
    if (ec || generation != self->deadline_generation_ || self->handed_off_) return;
    self->deadline_fired_ = true;
    if (reason != nullptr) self->record_.SetReason(reason);
    error_code ignored;
    self->server_.close(ignored);
    self->resolver_.cancel();
    if (client_too) self->client_.close(ignored);
  });
}

void Negotiation::DisarmDeadline() {
  ++deadline_generation_;
  deadline_.cancel();
}

void Negotiation::CloseAll() {
  error_code ignored;
  client_.close(ignored);
  server_.close(ignored);
}

tls::SessionPolicy Negotiation::PolicyFor(const control::Route& route) const {
  tls::SessionPolicy p;
  if (candidates_.size() == 1 && !route.shared) p.default_host = route.host;
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

Got Negotiation::TryClientRead(std::span<uint8_t> buf, size_t* n) {
  if (!tls_ready_) return ReadSome(client_, buf, client_more_, n);
  ByteSpan input;  // lent to the engine, which copies what it does not consume
  while (true) {
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
    size_t got = 0;
    Got g = ReadSome(client_, CipherScratch(), client_more_, &got);
    if (g != Got::kData) return g;
    input = CipherScratch().first(got);
  }
}

awaitable<bool> Negotiation::FlushTls() {
  Bytes& out = OutScratch();
  out.clear();
  tls_->TakeOutput(&out);
  co_return co_await WriteAll(client_, out, client_spill_);
}

awaitable<bool> Negotiation::ClientWrite(ByteSpan data) {
  if (!tls_ready_) co_return co_await WriteAll(client_, data, client_spill_);
  Bytes& out = OutScratch();
  out.clear();
  if (tls_->Write(data, &out) != tls::TlsEngine::Io::kOk) co_return false;
  co_return co_await WriteAll(client_, out, client_spill_);
}

awaitable<bool> Negotiation::TlsHandshake(ByteSpan prefix, tls::SessionPolicy policy) {
  auto engine = tls::TlsEngine::NewServer(certs_, std::move(policy));
  if (!engine.ok()) {
    spdlog::error("TLS session setup failed: {}", engine.message());
    co_return false;
  }
  tls_ = std::move(*engine);
  tls_->FeedCiphertext(prefix);
  auto started = std::chrono::steady_clock::now();
  ByteSpan input;  // lent to the engine, which copies what it does not consume
  while (true) {
    auto r = tls_->Handshake(input);
    bool flushed = co_await FlushTls();  // the server flight, or an alert
    if (r == tls::TlsEngine::Io::kOk && flushed) {
      tls_ready_ = true;
      metrics().tls_handshake_seconds.Observe(std::chrono::steady_clock::now() - started);
      co_return true;
    }
    if (r != tls::TlsEngine::Io::kWantRead || !flushed) {
      record_.SetReason("tls_handshake_failed");
      metrics().Failed(NetReason::kTlsHandshakeFailed);
      spdlog::debug("TLS handshake with {} failed: {}", record_.client.ToString(), tls_->error());
      co_return false;
    }
    size_t got = co_await ReadNow(client_, CipherScratch(), client_more_);
    if (got == 0) {
      record_.SetReason("client_closed_during_tls_handshake");
      co_return false;
    }
    input = CipherScratch().first(got);
  }
}

awaitable<void> Negotiation::RefuseAndClose(ByteSpan error, const char* reason) {
  record_.SetReason(reason);
  // Lingering to deliver a refusal is not negotiating: it leaves the handshake cap.
  record_.admission.HandshakeDone();
  if (!error.empty()) co_await ClientWrite(error);
  if (tls_ready_) {
    Bytes& out = OutScratch();
    out.clear();
    tls_->Close(&out);
    co_await WriteAll(client_, out, client_spill_);
  }
  error_code ec;
  client_.shutdown(Socket::shutdown_send, ec);
  // Read what the client still sends until it closes, so that closing does not reset the
  // connection and lose the error (RFC 1122 4.2.2.13); bounded in time and bytes.
  ArmDeadline(limits().close_linger, nullptr, true);  // the reason is set above
  for (size_t drained = 0; drained < 64 * 1024;) {
    size_t n = co_await ReadNow(client_, PlainScratch(), client_more_);
    if (n == 0) break;
    drained += n;
  }
  DisarmDeadline();
}

awaitable<Negotiation::Startup> Negotiation::PgStartup() {
  ByteSpan input;
  while (true) {
    // Feed() copies what it keeps, before anything suspends.
    pg::StartupAction a = startup_.Feed(input);
    input = {};
    switch (a.kind) {
      case pg::StartupAction::Kind::kNeedMore: {
        size_t n = 0;
        Got got = park_failed_ ? Got::kEnd : TryClientRead(PlainScratch(), &n);
        if (got == Got::kWait) {
          Park();
          co_return Startup::kParked;
        }
        if (got == Got::kEnd) {
          record_.SetReason("client_closed_during_startup");
          // A socket the pre-auth deadline closed is counted as that, by Run().
          if (!deadline_fired_) metrics().Failed(NetReason::kClientClosedEarly);
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
          metrics().Refused(pg::RefuseReason::kUnencryptedAfterSsl);
          co_await RefuseAndClose(pg::BuildUnencryptedAfterSslError(),
                                  pg::RefuseReasonName(pg::RefuseReason::kUnencryptedAfterSsl));
          co_return Startup::kFinished;
        }
        // Charged before the 'S' (or, for direct TLS, before reading the ClientHello further):
        // the handshake's private-key work is what a flood of handshakes would cost.
        if (!co_await ChargeTls(!a.direct_tls)) co_return Startup::kFinished;
        if (!a.bytes.empty() && !co_await ClientWrite(a.bytes)) co_return Startup::kFinished;
        if (!co_await TlsHandshake(a.tls_prefix, PolicyFor(*record_.route))) {
          co_return Startup::kFinished;
        }
        startup_.TlsEstablished();
        if (a.direct_tls && tls_->alpn().empty()) {
          metrics().Failed(NetReason::kDirectTlsWithoutAlpn);
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
        metrics().Refused(a.reason);
        co_await RefuseAndClose(a.bytes, pg::RefuseReasonName(a.reason));
        co_return Startup::kFinished;
      case pg::StartupAction::Kind::kCancel:
        if (ctx_.server->admission.ChargeCancel(record_.client.Ip(),
                                                std::chrono::steady_clock::now()) !=
            admission::Refusal::kNone) {
          // Over the source's cancel rate: dropped unanswered, as every cancel is answered.
          refusal_ = admission::Refusal::kCancelRate;
          record_.reason = admission::RefusalName(refusal_);
          spdlog::debug("cancel from {} dropped: over the cancel rate of its source",
                        record_.client.ToString());
          co_return Startup::kFinished;
        }
        co_await ForwardCancel(a.cancel);
        co_return Startup::kFinished;
      case pg::StartupAction::Kind::kStartup: {
        size_t before = a.startup.params.size();
        std::string options_before;
        if (const auto* o = a.startup.Find("options")) options_before = *o;
        if (!co_await Route(&a.startup)) co_return Startup::kFinished;
        const auto* o = a.startup.Find("options");
        bool rewritten = a.startup.params.size() != before || (o && *o != options_before);
        // The `app=` option is the edge's, not the server's: forward the packet without it.
        startup_packet_ = rewritten ? pg::BuildStartupMessage(a.startup) : std::move(a.bytes);
        startup_packet_.insert(startup_packet_.end(), a.rest.begin(), a.rest.end());
        if (const auto* u = a.startup.Find("user")) record_.user = *u;
        if (const auto* d = a.startup.Find("database")) record_.database = *d;
        co_return Startup::kRouted;
      }
    }
  }
}

void Negotiation::Park() {
  client_.async_wait(Socket::wait_read, [self = shared_from_this()](error_code ec) {
    if (ec) self->park_failed_ = true;  // the deadline closed the socket, or it failed
    self->Spawn();
  });
}

awaitable<bool> Negotiation::TlsStartup() {
  co_return co_await ChargeTls(false) && co_await TlsHandshake({}, PolicyFor(*record_.route)) &&
            co_await Route(nullptr);
}

bool Negotiation::Admit() {
  auto [refusal, slot] = ctx_.server->admission.Admit(record_.client.Ip());
  if (refusal == admission::Refusal::kNone) {
    record_.admission = std::move(slot);
    return true;
  }
  refusal_ = refusal;
  record_.SetReason(admission::RefusalName(refusal));
  if (record_.route->pg_tls) {
    // In place of the answer to the SSLRequest (or the StartupMessage), as PostgreSQL's
    // postmaster answers when it cannot take a connection; libpq shows it as the server's
    // error. Written without waiting, so that a refused flood costs a few system calls: what
    // the client sent so far is read first (closing with unread input would reset the
    // connection and lose the error), and what the socket does not take at once is dropped.
    std::string message = refusal == admission::Refusal::kPerSourceConnections
                              ? "too many connections from this address"
                              : "the edge has too many connections";
    Bytes fatal = pg::BuildFatal(pg::sqlstate::kTooManyConnections, message, {},
                                 "Try again later.");
    error_code ec;
    for (int i = 0; i < 4 && !ec; ++i) {
      size_t n = client_.read_some(asio::buffer(PlainScratch().data(), PlainScratch().size()), ec);
      if (n < PlainScratch().size()) break;
    }
    client_.write_some(asio::buffer(fatal), ec);
    client_.shutdown(Socket::shutdown_send, ec);
  }
  Finish();
  return false;
}

awaitable<bool> Negotiation::ChargeTls(bool ssl_request) {
  admission::Refusal r = ctx_.server->admission.ChargeTlsHandshake(
      record_.client.Ip(), std::chrono::steady_clock::now());
  if (r == admission::Refusal::kNone) co_return true;
  refusal_ = r;
  if (ssl_request) {
    co_await RefuseAndClose(pg::BuildFatal(pg::sqlstate::kTooManyConnections,
                                           "too many TLS handshakes from this address; try "
                                           "again later"),
                            admission::RefusalName(r));
  } else {
    record_.reason = admission::RefusalName(r);
  }
  co_return false;
}

void Negotiation::LogRefusal() {
  uint64_t refused = ctx_.server->admission.LogDue(refusal_, std::chrono::steady_clock::now());
  if (refused == 0) return;
  LogConnection(record_, tls_.get(), tls_ready_);
  if (refused > 1) {
    spdlog::info("conn_refusals reason={} not_logged={} (one line per reason per second)",
                 admission::RefusalName(refusal_), refused - 1);
  }
}

awaitable<void> Negotiation::ForwardCancel(const pg::CancelKey& key) {
  record_.reason = "cancel_request";
  if (const auto& fleet = ctx_.server->cancel_keys) {
    // In a fleet the key names the node that holds the session, under a MAC: a key that no
    // node issued goes nowhere, one of another node's goes to that node, which checks the
    // rest as below.
    auto owner = fleet->Owner(key);
    if (!owner) {
      metrics().Failed(NetReason::kCancelUnknownKey);
      record_.reason = "cancel_unknown_key";
      co_return;
    }
    if (*owner != fleet->node_id()) {
      SendCancelToPeer(*owner, key);
      co_return;
    }
  }
  auto target = ctx_.server->cancels.Find(key);
  // A key counts only at an address and port where its session's app is reached: another
  // tenant that learnt it cannot cancel through an address of its own. (On a shared address
  // a plaintext cancel names no app, so every app sharing it is a candidate.)
  bool here = target && std::any_of(candidates_.begin(), candidates_.end(),
                                    [&](const control::Route* r) { return r->app == target->app; });
  if (!here) {
    // Unknown keys get the same silence as known ones: a cancel never has a reply.
    metrics().Failed(NetReason::kCancelUnknownKey);
    record_.reason = target ? "cancel_key_of_another_app" : "cancel_unknown_key";
    co_return;
  }
  ArmDeadline(limits().connect_timeout, "cancel_connect_timeout", false);
  const char* failed = co_await SendCancel(server_, resolver_, *target);
  DisarmDeadline();
  if (failed != nullptr) {
    record_.reason = failed;
    co_return;
  }
  metrics().cancels_forwarded++;
  record_.reason = "cancel_forwarded";
}

void Negotiation::SendCancelToPeer(int node, const pg::CancelKey& key) {
  // The owner checks the session's app against the apps reached here, as a local cancel does.
  std::vector<std::string> apps;
  for (const control::Route* r : candidates_) {
    if (std::find(apps.begin(), apps.end(), r->app) == apps.end()) apps.push_back(r->app);
  }
  base::Status sent = ctx_.server->forward_cancel
                          ? ctx_.server->forward_cancel(node, key, apps)
                          : base::Status::Unavailable("no node channel");
  if (sent.ok()) {
    metrics().cancels_to_peer++;
    record_.reason = "cancel_sent_to_peer";
    return;
  }
  if (sent.code() == base::StatusCode::kNotFound) {
    // Issued by a node that has left the fleet (or by one whose record is gone): its sessions
    // are gone with it.
    metrics().Failed(NetReason::kCancelUnknownKey);
    record_.reason = "cancel_unknown_node";
    return;
  }
  spdlog::warn("cancel for node {} not sent: {}", node, sent.message());
  record_.reason = "cancel_peer_unreachable";
}

awaitable<bool> Negotiation::Route(pg::StartupMessage* startup) {
  std::optional<std::string> named = startup ? pg::TakeAppOption(startup) : std::nullopt;
  RouteChoice choice = ChooseRoute(candidates_, tls_ready_ ? tls_->server_name() : "", named);
  if (choice.route != nullptr) {
    record_.route = choice.route;
    co_return true;
  }
  metrics().Failed(NetReason::kNoRoute);
  if (record_.route->pg_tls) {
    co_await RefuseAndClose(
        pg::BuildFatal(pg::sqlstate::kInvalidAuthorization, choice.problem, {},
                       "Connect with the app's host name (<app>.<domain>) so that the client "
                       "sends SNI (libpq 14 or later), or name the app in the options parameter: "
                       "options='app=<app>' (in a URL: ?options=app%3D<app>)."),
        "no_route_for_client");
  } else {
    record_.reason = "no_route_for_client";
  }
  co_return false;
}

awaitable<bool> Negotiation::SourceAllowed() {
  const control::Route& route = *record_.route;
  if (route.allowed_sources.empty()) co_return true;
  std::string ip = record_.client.Ip();
  for (const base::Cidr& net : route.allowed_sources) {
    if (base::CidrContains(net, ip)) co_return true;
  }
  metrics().Failed(NetReason::kSourceNotAllowed);
  if (route.pg_tls) {
    // Where PostgreSQL itself says 28000 when no pg_hba.conf line admits the host.
    co_await RefuseAndClose(
        pg::BuildFatal(pg::sqlstate::kInvalidAuthorization,
                       "source address not allowed for app \"" + route.app + "\""),
        NetReasonName(NetReason::kSourceNotAllowed));
  } else {
    record_.reason = NetReasonName(NetReason::kSourceNotAllowed);
  }
  co_return false;
}

awaitable<bool> Negotiation::StillHeld() {
  auto holders = ctx_.server->holders.Current();
  auto revoked =
      CheckRevoked(holders.get(), record_.route->app, record_.local.Ip(), record_.table->version());
  if (!revoked) co_return true;
  metrics().revoked++;
  if (record_.route->pg_tls) {
    co_await RefuseAndClose(pg::BuildFatal(pg::sqlstate::kAdminShutdown, revoked->message),
                            revoked->reason);
  } else {
    record_.reason = revoked->reason;
  }
  co_return false;
}

awaitable<void> Negotiation::RefuseForMachines(NetReason why, std::string_view sqlstate,
                                               const std::string& message,
                                               const std::string& hint) {
  metrics().Failed(why);
  if (record_.route->pg_tls) {
    co_await RefuseAndClose(pg::BuildFatal(sqlstate, message, {}, hint), NetReasonName(why));
  } else {
    record_.reason = NetReasonName(why);
  }
}

namespace {

health::PickPolicy PickPolicyOf(const control::Route& route) {
  health::PickPolicy p;
  p.target = route.target;
  p.soft_limit = route.soft_limit;
  p.hard_limit = route.hard_limit;
  // A learned role is fresh for one check interval: after that the machine may have been
  // promoted (or demoted) without a session here to tell.
  for (size_t i = 0; i < route.checks.size(); ++i) {
    if (i == 0 || route.checks[i].interval < p.role_stale) p.role_stale = route.checks[i].interval;
  }
  return p;
}

// 25 to 50 ms: the pause between two picks while every machine is at its hard limit, spread
// so that waiting connections do not all retry at once.
std::chrono::milliseconds RepickPause() {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::chrono::milliseconds(25 + static_cast<int>(rng() % 26));
}

}  // namespace

awaitable<bool> Negotiation::ConnectMachine() {
  const control::Route& route = *record_.route;
  const auto& machines = route.machines;
  if (machines.empty()) {
    // Not a failure to reach anything: there is nothing to reach until the operator adds a
    // machine. 57P03, as PostgreSQL says when it does not accept connections now: pg_isready
    // and libpq's PQping report "rejecting connections" instead of "accepting", which any
    // other SQLSTATE (08006 among them) would make them say.
    co_await RefuseForMachines(NetReason::kNoMachines, pg::sqlstate::kCannotConnectNow,
                               "app \"" + route.app + "\" has no machines",
                               "Add one with: drawbridge machines add <address> -a " + route.app);
    co_return false;
  }
  health::Board& board = ctx_.server->board;
  std::vector<std::string> addresses;
  addresses.reserve(machines.size());
  for (const auto& m : machines) addresses.push_back(m.address);
  const health::PickPolicy policy = PickPolicyOf(route);
  using Clock = std::chrono::steady_clock;
  // Every machine at its hard limit: wait for a free one, picking again every 25-50 ms, at
  // most hard_limit_wait and never past the handshake deadline.
  const Clock::time_point wait_until =
      std::min(Clock::now() + limits().hard_limit_wait,
               record_.started + limits().handshake_timeout);
  static std::atomic<uint64_t> rotation{0};  // spreads equal machines; shared by design
  bool dialled = false;
  while (true) {
    Clock::time_point now = Clock::now();
    health::Pick pick = health::ChooseMachines(
        board.View(route.app, route.internal_port, addresses, now), policy, now, rotation++);
    if (pick.outcome == health::PickOutcome::kNoHealthy) {
      co_await RefuseForMachines(NetReason::kNoHealthyMachine, pg::sqlstate::kCannotConnectNow,
                                 "app \"" + route.app + "\" has no healthy machine",
                                 "The app's machines are failing their health checks; try "
                                 "again later.");
      co_return false;
    }
    if (pick.outcome == health::PickOutcome::kNoRole) {
      bool standby = route.target == control::TargetSessionAttrs::kReadOnly ||
                     route.target == control::TargetSessionAttrs::kStandby;
      co_await RefuseForMachines(
          NetReason::kNoMachineWithRole, pg::sqlstate::kCannotConnectNow,
          "app \"" + route.app + "\" has no " + (standby ? "standby" : "primary") +
              " machine available now",
          std::string("This service wants target_session_attrs=") +
              control::TargetSessionAttrsName(route.target) + "; try again later.");
      co_return false;
    }
    for (size_t i : pick.order) {
      health::MachineKey key{route.app, machines[i].address, route.internal_port};
      // Counted from the dial on, and checked once counted, so that connections racing for a
      // machine's last slot on several threads cannot take it past its hard limit.
      health::SessionTicket ticket = board.OpenSession(key);
      if (route.hard_limit > 0) {
        std::span<const std::string> one(&machines[i].address, 1);
        if (board.View(route.app, route.internal_port, one, now)[0].sessions > route.hard_limit) {
          continue;  // the ticket ends here
        }
      }
      dialled = true;
      Clock::time_point dial_started = Clock::now();
      ArmDeadline(limits().connect_timeout, "machine_connect_timeout", false);
      error_code ec = co_await Dial(server_, resolver_, machines[i].address, route.internal_port);
      DisarmDeadline();
      if (!ec) {
        metrics().machine_connect_seconds.Observe(Clock::now() - dial_started);
        board.ConnectSucceeded(key);
        ticket_ = std::move(ticket);
        machine_address_ = machines[i].address;
        record_.reason = nullptr;
        co_return true;
      }
      // Marked down at once: the next connections skip it (with a backoff) instead of each
      // paying a failed attempt.
      board.ConnectFailed(key, Clock::now());
      // Only the connect deadline aborts a dial (it closes the socket under it).
      std::string why =
          ec == asio::error::operation_aborted
              ? "no answer within " + std::to_string(limits().connect_timeout.count()) + " ms"
              : ec.message();
      spdlog::warn("app {}: machine {} port {} unreachable: {}", route.app, machines[i].address,
                   route.internal_port, why);
    }
    if (dialled) break;  // and none answered
    // Nothing dialled: every machine the connection may use is at its hard limit.
    Clock::time_point next = Clock::now() + RepickPause();
    if (next > wait_until) {
      co_await RefuseForMachines(NetReason::kMachineHardLimit, pg::sqlstate::kTooManyConnections,
                                 "too many connections for app \"" + route.app + "\"",
                                 "Every machine of the app is at its hard_limit "
                                 "([services.concurrency]); try again later.");
      co_return false;
    }
    Timer pause(client_.get_executor());
    pause.expires_at(next);
    error_code ec;
    co_await pause.async_wait(asio::redirect_error(kAwait, ec));
    if (ec) co_return false;
  }
  metrics().Failed(NetReason::kMachineUnreachable);
  if (route.pg_tls) {
    // The text names the app, never a private address.
    co_await RefuseAndClose(
        pg::BuildFatal(pg::sqlstate::kConnectionFailure,
                       "could not connect to a machine of app \"" + route.app + "\"", {},
                       "The app's machines are not reachable from the edge; try again later."),
        NetReasonName(NetReason::kMachineUnreachable));
  } else {
    // Not a timeout of the last attempt: that no machine could be reached is what happened.
    record_.reason = NetReasonName(NetReason::kMachineUnreachable);
  }
  co_return false;
}

void Negotiation::Start() {
  error_code ec;
  record_.local = AddressOf(client_.local_endpoint(ec));
  client_.set_option(tcp::no_delay(true), ec);
  client_.non_blocking(true, ec);  // reads and writes try the socket first
  ctx_.server->live.Enter();
  metrics().accepted++;
  metrics().active++;

  record_.table = ctx_.server->routes->Current();
  if (record_.table) {
    candidates_ = record_.table->FindAll(record_.local.Ip(), record_.local.port);
  }
  // Until SNI or `options` says otherwise, the first route decides the handler.
  record_.route = candidates_.empty() ? nullptr : candidates_.front();
  if (record_.route == nullptr) {
    metrics().Failed(NetReason::kNoRoute);
    record_.SetReason(NetReasonName(NetReason::kNoRoute));
    Finish();
    return;
  }
  // Admission control first: past this point the connection costs work (docs/admission.md).
  if (!Admit()) return;
  certs_ = ctx_.server->certs->Current();
  ArmDeadline(limits().handshake_timeout, NetReasonName(NetReason::kHandshakeTimeout), true);
  Spawn();
}

void Negotiation::Spawn() {
  asio::co_spawn(client_.get_executor(), Run(), [self = shared_from_this()](std::exception_ptr e) {
    if (e) spdlog::error("connection coroutine ended with an exception");
  });
}

awaitable<void> Negotiation::Run() {
  bool ok = true;
  const control::Route& first = *record_.route;
  if (first.pg_tls) {
    Startup s = co_await PgStartup();
    if (s == Startup::kParked) co_return;  // Park() spawns Run() again
    ok = s == Startup::kRouted;
  } else if (first.tls) {
    ok = co_await TlsStartup();
  } else if (candidates_.size() > 1 || first.shared) {
    ok = co_await Route(nullptr);  // raw TCP on a shared address: nothing to go by
  }
  if (deadline_fired_) metrics().Failed(NetReason::kHandshakeTimeout);
  DisarmDeadline();
  if (ok && !deadline_fired_) metrics().app_connections.Count(record_.route->app);
  if (ok && !deadline_fired_ && co_await SourceAllowed() && co_await StillHeld() &&
      co_await ConnectMachine() && co_await HandOff()) {
    co_return;
  }
  Finish();
}

void Negotiation::Finish() {
  finished_ = true;
  CloseAll();
  ticket_.Release();
  record_.admission.Release();
  metrics().bytes_in += record_.bytes_in;
  metrics().active--;
  metrics().closed++;
  if (refusal_ == admission::Refusal::kNone) {
    LogConnection(record_, tls_.get(), tls_ready_);
  } else {
    LogRefusal();
  }
  ctx_.server->live.Leave();
}

awaitable<bool> Negotiation::HandOff() {
  error_code ec;
  const control::Route& route = *record_.route;
  if (route.proxy_proto != 0) {
    auto addrs = ProxyAddressesOf(record_.client, record_.local);
    Bytes header = route.proxy_proto == 2 ? BuildProxyV2(addrs) : BuildProxyV1(addrs);
    co_await asio::async_write(server_, asio::buffer(header), asio::redirect_error(kAwait, ec));
    if (ec) co_return false;
  }
  if (!startup_packet_.empty()) {
    co_await asio::async_write(server_, asio::buffer(startup_packet_),
                               asio::redirect_error(kAwait, ec));
    record_.bytes_in += startup_packet_.size();
    Bytes().swap(startup_packet_);
    if (ec) co_return false;
  }
  // Both sockets leave Asio, which deregisters them, for the session: from here on the relay
  // loop owns the connection, and the session finishes it.
  SessionParts parts;
  parts.client_fd = client_.release(ec);
  if (ec) co_return false;
  parts.server_fd = server_.release(ec);
  if (ec) {
    ::close(parts.client_fd);
    co_return false;
  }
  parts.tls = tls_ready_ ? std::move(tls_) : nullptr;
  record_.admission.HandshakeDone();  // relaying from here: counted as a connection only
  parts.record = std::move(record_);
  parts.machine_address = std::move(machine_address_);
  parts.ticket = std::move(ticket_);
  handed_off_ = true;
  int client_fd = parts.client_fd, server_fd = parts.server_fd;
  std::unique_ptr<RelayHandler> session = std::make_unique<Session>(ctx_.server, std::move(parts));
  if (ctx_.relays == nullptr || !ctx_.relays->Adopt(&session, client_fd, server_fd)) {
    session->OnStop(RelayHandler::Stop::kCannotWatch);
  }
  co_return true;
}

// A cancel from another node of the fleet (StartPeerCancel): the machine socket and what
// bounds it, owned by the coroutine and by the deadline's pending wait.
struct PeerCancelJob {
  explicit PeerCancelJob(asio::io_context& io)
      : socket(io.get_executor()), resolver(io.get_executor()), deadline(io.get_executor()) {}
  Socket socket;
  Resolver resolver;
  Timer deadline;
};

awaitable<void> RunPeerCancel(std::shared_ptr<PeerCancelJob> job, ServerContext* ctx,
                              int from_node, pg::CancelKey key, std::vector<std::string> apps) {
  // The same checks as a local cancel: the whole key (so an ended session's reaches nobody),
  // then its app among those the landing node reached at the address the cancel came to.
  auto target = ctx->cancels.Find(key);
  const char* reason = nullptr;
  if (!target) {
    ctx->metrics.PeerRefused(fleet::PeerRefusal::kUnknownKey);
    reason = "cancel_from_peer_unknown_key";
  } else if (std::find(apps.begin(), apps.end(), target->app) == apps.end()) {
    ctx->metrics.PeerRefused(fleet::PeerRefusal::kKeyOfAnotherApp);
    reason = "cancel_from_peer_key_of_another_app";
  } else {
    job->deadline.expires_after(ctx->limits.connect_timeout);
    job->deadline.async_wait([job](error_code ec) {
      if (ec) return;
      error_code ignored;
      job->socket.close(ignored);
      job->resolver.cancel();
    });
    const char* failed = co_await SendCancel(job->socket, job->resolver, *target);
    job->deadline.cancel();
    if (failed != nullptr) {
      reason = "cancel_from_peer_machine_unreachable";
    } else {
      ctx->metrics.cancels_forwarded++;
      reason = "cancel_from_peer_forwarded";
    }
  }
  spdlog::info("cancel from_node={} app={} reason={}", from_node,
               base::LogfmtValue(target ? target->app : ""), reason);
}

}  // namespace

void StartConnection(Socket socket, const tcp::endpoint& peer, WorkerContext ctx) {
  std::make_shared<Negotiation>(std::move(socket), peer, ctx)->Start();
}

void StartPeerCancel(asio::io_context& io, ServerContext* ctx, int from_node, pg::CancelKey key,
                     std::vector<std::string> apps) {
  // Posted first: the job's sockets and timer are created on the loop's own thread.
  asio::post(io, [&io, ctx, from_node, key = std::move(key), apps = std::move(apps)]() mutable {
    auto job = std::make_shared<PeerCancelJob>(io);
    asio::co_spawn(io.get_executor(),
                   RunPeerCancel(job, ctx, from_node, std::move(key), std::move(apps)),
                   [](std::exception_ptr e) {
                     if (e) spdlog::error("a cancel from another node ended with an exception");
                   });
  });
}

}  // namespace drawbridge::net
