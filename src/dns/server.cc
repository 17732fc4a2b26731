#include "dns/server.h"

// clang-format off
// Boost 1.74's awaitable.hpp uses std::exchange without including <utility> (see net/asio.h).
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
// clang-format on

#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <future>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "dns/datagram.h"
#include "dns/message.h"
#include "io/accept_loop.h"

namespace drawbridge::dns {

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using asio::ip::udp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr auto kAwait = asio::use_awaitable;

// Datagrams answered per wake-up of the UDP loop before TCP clients get their turn.
constexpr int kUdpBatch = 64;

// One TCP client. Shared with the deadline's handler, which may run after the coroutine ended.
struct TcpClient {
  explicit TcpClient(tcp::socket s) : socket(std::move(s)), deadline(socket.get_executor()) {}

  // Closes the socket unless re-armed first: a handler already queued when the deadline is
  // pushed back sees the new expiry and does nothing.
  static void Arm(const std::shared_ptr<TcpClient>& self, std::chrono::milliseconds after) {
    self->deadline.expires_after(after);
    self->deadline.async_wait([self](error_code ec) {
      if (ec || self->deadline.expiry() > Clock::now()) return;
      error_code ignored;
      self->socket.close(ignored);
    });
  }

  tcp::socket socket;
  asio::steady_timer deadline;
  bool internal_allowed = false;  // the peer may read `internal` (internal_access.h)
};

bool InternalAllowed(const std::vector<base::Cidr>& networks, const asio::ip::address& a) {
  if (a.is_v4()) return SourceAllowed(networks, a.to_v4().to_bytes());
  return SourceAllowed(networks, a.to_v6().to_bytes());
}

// The completion handler of spawned work: logs instead of dropping an exception silently.
auto LogFailure(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("dns: {} failed: {}", what, ex.what());
    } catch (...) {
      spdlog::error("dns: {} failed", what);
    }
  };
}

}  // namespace

struct Server::Impl {
  Impl(ZoneProvider p, ServerOptions o) : provider(std::move(p)), options(o) {}

  std::shared_ptr<const Zone> CurrentZone() {
    auto zone = provider ? provider() : nullptr;
    return zone ? zone : empty_zone;
  }

  awaitable<void> UdpLoop();
  awaitable<void> AcceptLoop();
  awaitable<void> ServeTcp(std::shared_ptr<TcpClient> client);

  ZoneProvider provider;
  ServerOptions options;
  const std::shared_ptr<const Zone> empty_zone = std::make_shared<Zone>();  // answers SERVFAIL
  // Declared first so that it is destroyed last, after the sockets that use it.
  asio::io_context io{1};
  std::optional<udp::socket> udp_socket;
  std::optional<tcp::acceptor> acceptor;
  std::set<std::shared_ptr<TcpClient>> clients;  // server thread only (until joined)
  std::thread thread;
  std::atomic<int> port{0};
  bool started = false;
  bool stopped = false;
};

// recvmsg and sendmsg on the native descriptor rather than async_receive_from and
// async_send_to: they carry each query's destination address, which becomes its answer's
// source (datagram.h). Asio's reactor reports readiness edge-triggered, so the socket is read
// until EAGAIN before waiting again, which also picks up datagrams that came before the first
// wait; after a full batch the loop yields to the TCP clients instead of waiting, since no new
// edge may come for datagrams already queued.
awaitable<void> Server::Impl::UdpLoop() {
  std::vector<uint8_t> buf(kMaxMessage);
  const int fd = udp_socket->native_handle();
  while (udp_socket->is_open()) {
    bool drained = false;
    for (int i = 0; i < kUdpBatch; ++i) {
      Datagram query;
      int err = ReceiveDatagram(fd, buf, &query);
      if (err == EAGAIN || err == EWOULDBLOCK) {
        drained = true;
        break;
      }
      if (err != 0) continue;  // oversized, or a queued ICMP error: nothing to answer
      bool internal = SourceAllowed(options.internal_from, query.peer_address());
      std::vector<uint8_t> out =
          Answer(*CurrentZone(), std::span(buf.data(), query.size), options.max_udp, internal);
      if (out.empty()) continue;
      err = SendReply(fd, out, query);
      if (err == EAGAIN || err == EWOULDBLOCK) {  // the send buffer is full: wait once
        error_code ec;
        co_await udp_socket->async_wait(udp::socket::wait_write, asio::redirect_error(kAwait, ec));
        if (ec == asio::error::operation_aborted || !udp_socket->is_open()) co_return;
        err = SendReply(fd, out, query);
      }
      if (err != 0) spdlog::debug("dns: UDP answer not sent: {}", std::strerror(err));
    }
    if (!drained) {
      co_await asio::post(io, kAwait);
      continue;
    }
    error_code ec;
    co_await udp_socket->async_wait(udp::socket::wait_read, asio::redirect_error(kAwait, ec));
    if (ec == asio::error::operation_aborted || !udp_socket->is_open()) co_return;
  }
}

awaitable<void> Server::Impl::AcceptLoop() {
  co_await io::AcceptLoop(
      *acceptor, "DNS TCP port " + std::to_string(port.load()),
      [this](tcp::socket socket, const tcp::endpoint& peer) {
        if (static_cast<int>(clients.size()) >= options.max_tcp_connections) {
          error_code ignored;
          socket.close(ignored);
          return;
        }
        auto client = std::make_shared<TcpClient>(std::move(socket));
        client->internal_allowed = InternalAllowed(options.internal_from, peer.address());
        clients.insert(client);
        asio::co_spawn(io, ServeTcp(client), [this, client](std::exception_ptr e) {
          clients.erase(client);
          LogFailure("tcp connection")(e);
        });
      },
      [] {});
}

awaitable<void> Server::Impl::ServeTcp(std::shared_ptr<TcpClient> client) {
  uint8_t prefix[2];
  std::vector<uint8_t> query;
  std::vector<uint8_t> framed;
  while (true) {
    TcpClient::Arm(client, options.tcp_idle_timeout);
    error_code ec;
    co_await asio::async_read(client->socket, asio::buffer(prefix),
                              asio::redirect_error(kAwait, ec));
    if (ec) break;
    size_t len = static_cast<size_t>(prefix[0]) << 8 | prefix[1];
    if (len == 0) break;  // nothing a query can be
    query.resize(len);
    co_await asio::async_read(client->socket, asio::buffer(query),
                              asio::redirect_error(kAwait, ec));
    if (ec) break;
    std::vector<uint8_t> out = Answer(*CurrentZone(), query, 0, client->internal_allowed);
    if (out.empty()) continue;  // a response or a runt: ignored, as over UDP
    framed.clear();
    framed.push_back(static_cast<uint8_t>(out.size() >> 8));
    framed.push_back(static_cast<uint8_t>(out.size()));
    framed.insert(framed.end(), out.begin(), out.end());
    co_await asio::async_write(client->socket, asio::buffer(framed),
                               asio::redirect_error(kAwait, ec));
    if (ec) break;
  }
  client->deadline.cancel();
  error_code ignored;
  client->socket.close(ignored);
}

Server::Server(ZoneProvider provider, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(provider), options)) {}

Server::~Server() { Stop(); }

base::Status Server::Start(const std::string& address, int port) {
  if (impl_->started) return base::Status::Internal("the DNS server was already started");
  if (port < 0 || port > 65535) {
    return base::Status::InvalidArgument("bad DNS port " + std::to_string(port));
  }
  error_code ec;
  asio::ip::address addr = asio::ip::make_address(address, ec);
  if (ec) return base::Status::InvalidArgument("bad DNS listen address \"" + address + "\"");

  // Port 0: the kernel picks a free UDP port, which may be taken over TCP; then try again.
  const int attempts = port == 0 ? 20 : 1;
  std::string error;
  for (int i = 0; i < attempts; ++i) {
    Impl& s = *impl_;
    s.udp_socket.emplace(s.io);
    s.acceptor.emplace(s.io);
    udp::endpoint uep(addr, static_cast<uint16_t>(port));
    s.udp_socket->open(uep.protocol(), ec);
    if (!ec) s.udp_socket->bind(uep, ec);
    if (!ec) {
      int err = ReportDestinations(s.udp_socket->native_handle(), addr.is_v6());
      if (err != 0) ec = error_code(err, boost::system::system_category());
    }
    if (ec) {
      error =
          "cannot bind DNS UDP " + address + " port " + std::to_string(port) + ": " + ec.message();
      continue;
    }
    uint16_t bound = s.udp_socket->local_endpoint(ec).port();
    tcp::endpoint tep(addr, bound);
    s.acceptor->open(tep.protocol(), ec);
    if (!ec) s.acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) s.acceptor->bind(tep, ec);
    if (!ec) s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = "cannot listen for DNS over TCP on " + address + " port " + std::to_string(bound) +
              ": " + ec.message();
      continue;
    }
    error.clear();
    s.port = bound;
    break;
  }
  if (!error.empty()) {
    impl_->udp_socket.reset();
    impl_->acceptor.reset();
    return base::Status::Unavailable(error);
  }
  impl_->started = true;
  asio::co_spawn(impl_->io, impl_->UdpLoop(), LogFailure("udp loop"));
  asio::co_spawn(impl_->io, impl_->AcceptLoop(), LogFailure("tcp accept loop"));
  Impl* impl = impl_.get();
  impl_->thread = std::thread([impl] { impl->io.run(); });
  spdlog::info("dns: serving on {} port {} (udp, tcp)", address, impl_->port.load());
  return {};
}

void Server::Stop() {
  if (!impl_->started || impl_->stopped) return;
  impl_->stopped = true;
  // Closing the sockets on their own thread ends the UDP and accept loops; TCP clients still
  // connected end with the io_context.
  std::promise<void> closed;
  asio::post(impl_->io, [&] {
    error_code ignored;
    impl_->udp_socket->close(ignored);
    impl_->acceptor->close(ignored);
    closed.set_value();
  });
  closed.get_future().wait();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // The server's thread is gone: its sockets are ours to close. Coroutine frames left suspended
  // are destroyed with the io_context.
  error_code ignored;
  impl_->udp_socket->close(ignored);
  impl_->acceptor->close(ignored);
  for (const auto& client : impl_->clients) client->socket.close(ignored);
}

int Server::udp_port() const { return impl_->port.load(); }
int Server::tcp_port() const { return impl_->port.load(); }

}  // namespace drawbridge::dns
