#include "net/server.h"

#include <sched.h>
#include <sys/socket.h>

#include <future>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "net/asio.h"
#include "net/connection.h"
#include "net/metrics.h"
#include "net/relay_loop.h"

namespace drawbridge::net {

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

awaitable<void> AcceptLoop(std::shared_ptr<Acceptor> acceptor, const ConnectionContext* ctx) {
  constexpr auto kPause = std::chrono::milliseconds(100);
  constexpr uint64_t kReportEvery = 600;  // failures: about a minute of pauses
  uint64_t failures = 0;                  // in a row
  while (acceptor->is_open()) {
    error_code ec;
    Socket socket(acceptor->get_executor());
    tcp::endpoint peer;
    co_await acceptor->async_accept(socket, peer, asio::redirect_error(kAwait, ec));
    if (!ec) {
      if (failures > 0) {
        spdlog::info("accept on port {} works again, after {} failures",
                     acceptor->local_endpoint(ec).port(), failures);
        failures = 0;
      }
      StartConnection(std::move(socket), peer, *ctx);
      continue;
    }
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
    // Out of descriptors or memory: back off instead of spinning, and say so once per streak
    // (and once a minute while it lasts), not ten times a second.
    Metrics::Get().accept_errors++;
    if (failures++ % kReportEvery == 0) {
      error_code ignored;
      spdlog::warn("accept failed on port {}: {} ({} in a row; retrying every {} ms)",
                   acceptor->local_endpoint(ignored).port(), ec.message(), failures,
                   kPause.count());
    }
    Timer pause(acceptor->get_executor(), kPause);
    co_await pause.async_wait(asio::redirect_error(kAwait, ec));
  }
}

base::Result<std::shared_ptr<Acceptor>> Listen(asio::io_context& io, const tcp::endpoint& ep) {
  auto a = std::make_shared<Acceptor>(io);
  error_code ec;
  a->open(ep.protocol(), ec);
  if (!ec && ep.address().is_v6()) a->set_option(asio::ip::v6_only(true), ec);
  if (!ec) a->set_option(Acceptor::reuse_address(true), ec);
  if (!ec) a->set_option(ReusePort(true), ec);
  if (!ec) a->bind(ep, ec);
  if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return base::Status::Error("cannot listen on " + ep.address().to_string() + " port " +
                               std::to_string(ep.port()) + ": " + ec.message());
  }
  return a;
}

}  // namespace

struct Server::Impl {
  struct Worker {
    asio::io_context io{1};
    // Where this worker's connections go once negotiated. Declared after `io`, so destroyed
    // before it: the connections it still holds own Asio objects of `io`.
    RelayLoop relay;
    std::map<int, std::vector<std::shared_ptr<Acceptor>>> listeners;
    std::thread thread;
  };

  ServerOptions options;
  const control::RouteTableHolder* routes;
  ConnectionContext ctx;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::mutex sync_mu;

  // Runs on the worker's thread (or before it starts).
  base::Status Sync(Worker& w, const std::set<int>& ports) {
    for (auto it = w.listeners.begin(); it != w.listeners.end();) {
      if (ports.count(it->first)) {
        ++it;
        continue;
      }
      for (auto& a : it->second) {
        error_code ignored;
        a->close(ignored);
      }
      it = w.listeners.erase(it);
    }
    for (int port : ports) {
      if (w.listeners.count(port)) continue;
      auto v4 = Listen(w.io, tcp::endpoint(asio::ip::address_v4::any(), port));
      if (!v4.ok()) return v4.status();
      auto& list = w.listeners[port];
      list.push_back(*v4);
      auto v6 = Listen(w.io, tcp::endpoint(asio::ip::address_v6::any(), port));
      if (v6.ok()) {
        list.push_back(*v6);
      } else {
        spdlog::warn("{} (IPv6 clients cannot reach this port)", v6.message());
      }
      for (auto& a : list) asio::co_spawn(w.io, AcceptLoop(a, &ctx), asio::detached);
    }
    return {};
  }

  std::set<int> WantedPorts() const {
    std::set<int> ports;
    if (auto table = routes->Current()) {
      for (int p : table->Ports()) ports.insert(p);
    }
    return ports;
  }
};

namespace {
// One event loop per core this process may run on (taskset, cpusets), not per core the machine
// has. Fewer loops cost less CPU per transaction (fewer wake-ups, each finding more work) but
// queue connections behind each other: on the 2-core benchmark machine, shared with pgbench
// and PostgreSQL, one loop (and its relay thread) gave less throughput than two in each of 18
// rounds, 0.3-29% less, and spent less CPU per transaction in 17 of them, up to 20% less
// (bench/results/2026-11-26*.md). Pinning each relay thread to a core did not help either:
// less throughput in 4 of 5 rounds.
int DefaultThreads() {
  cpu_set_t set;
  int cores = sched_getaffinity(0, sizeof set, &set) == 0
                  ? CPU_COUNT(&set)
                  : static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores);
}
}  // namespace

Server::Server(ServerOptions options, const control::RouteTableHolder* routes,
               const tls::CertStore* certs)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->routes = routes;
  impl_->ctx.routes = routes;
  impl_->ctx.certs = certs;
  impl_->ctx.limits = options.limits;
  impl_->ctx.on_server_version = options.on_server_version;
  int n = options.threads > 0 ? options.threads : DefaultThreads();
  for (int i = 0; i < n; ++i) impl_->workers.push_back(std::make_unique<Impl::Worker>());
}

Server::~Server() {
  for (auto& w : impl_->workers) w->io.stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  for (auto& w : impl_->workers) w->relay.Stop();
}

base::Status Server::Start() {
  auto ports = impl_->WantedPorts();
  for (auto& w : impl_->workers) {
    if (auto s = impl_->Sync(*w, ports); !s.ok()) return s;
  }
  for (auto& w : impl_->workers) {
    if (auto s = w->relay.Start(); !s.ok()) return s;
  }
  for (auto& w : impl_->workers) {
    impl_->guards.push_back(asio::make_work_guard(w->io));
    Impl::Worker* worker = w.get();
    w->thread = std::thread([worker] {
      RelayLoop::Current() = &worker->relay;
      worker->io.run();
    });
  }
  return {};
}

base::Status Server::SyncListeners() {
  std::lock_guard lock(impl_->sync_mu);
  auto ports = impl_->WantedPorts();
  base::Status result;
  for (auto& w : impl_->workers) {
    std::promise<base::Status> done;
    Impl::Worker* worker = w.get();
    asio::post(w->io, [&, worker] { done.set_value(impl_->Sync(*worker, ports)); });
    auto s = done.get_future().get();
    if (!s.ok() && result.ok()) result = s;
  }
  return result;
}

void Server::Run(const std::function<void()>& on_reload, const std::function<void()>& on_tick) {
  asio::io_context signals_io(1);
  asio::signal_set signals(signals_io, SIGTERM, SIGINT, SIGHUP);
  bool stopping = false;
  std::function<void(error_code, int)> on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading");
      on_reload();
      if (auto s = SyncListeners(); !s.ok()) spdlog::error("listeners: {}", s.message());
      signals.async_wait(on_signal);
      return;
    }
    stopping = true;
  };
  signals.async_wait(on_signal);
  asio::steady_timer tick(signals_io);
  std::function<void(error_code)> on_timer = [&](error_code ec) {
    if (ec) return;
    if (on_tick) on_tick();
    tick.expires_after(std::chrono::seconds(1));
    tick.async_wait(on_timer);
  };
  tick.expires_after(std::chrono::seconds(1));
  tick.async_wait(on_timer);
  while (!stopping) signals_io.run_one();
  tick.cancel();

  for (auto& w : impl_->workers) {
    std::promise<void> done;
    Impl::Worker* worker = w.get();
    asio::post(w->io, [&, worker] {
      impl_->Sync(*worker, {});
      done.set_value();
    });
    done.get_future().wait();
  }
  // Logged once the listeners are closed, so that whoever reads it can rely on it.
  spdlog::info("stopping: no new connections; draining {} open", Metrics::Get().active.load());
  // A second SIGTERM or SIGINT ends the drain at once (SIGHUP is ignored from here on).
  bool hurry = false;
  on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP ignored: stopping");
      signals.async_wait(on_signal);
      return;
    }
    spdlog::info("second {}: closing {} open connections now", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 Metrics::Get().active.load());
    hurry = true;
  };
  signals.async_wait(on_signal);
  if (signals_io.stopped()) signals_io.restart();
  auto deadline = std::chrono::steady_clock::now() + impl_->options.limits.drain_timeout;
  while (!hurry && Metrics::Get().active.load() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    signals_io.run_for(std::chrono::milliseconds(50));
  }
  signals.cancel();
  impl_->guards.clear();
  for (auto& w : impl_->workers) w->io.stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  for (auto& w : impl_->workers) w->relay.Stop();
}

}  // namespace drawbridge::net
