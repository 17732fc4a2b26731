#include "net/server.h"

#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <future>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "io/accept_loop.h"
#include "net/asio.h"
#include "net/negotiation.h"
#include "net/relay_loop.h"
#include "net/server_context.h"

namespace drawbridge::net {

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Holds the acceptor for as long as its loop runs: Sync() may drop the listener meanwhile.
awaitable<void> Accept(std::shared_ptr<Acceptor> acceptor, WorkerContext ctx) {
  error_code ec;
  std::string what = "port " + std::to_string(acceptor->local_endpoint(ec).port());
  co_await io::AcceptLoop(
      *acceptor, std::move(what),
      [ctx](Socket socket, const tcp::endpoint& peer) {
        StartConnection(std::move(socket), peer, ctx);
      },
      [ctx] { ctx.server->metrics.accept_errors++; });
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
    return base::Status::Unavailable("cannot listen on " + ep.address().to_string() + " port " +
                                     std::to_string(ep.port()) + ": " + ec.message());
  }
  return a;
}

}  // namespace

struct Server::Impl {
  struct Worker {
    asio::io_context io{1};
    // Where this worker's connections go once negotiated. Stopped before `io` is destroyed.
    RelayLoop relay;
    std::map<int, std::vector<std::shared_ptr<Acceptor>>> listeners;
    std::thread thread;
  };

  ServerOptions options;
  const control::RouteTableHolder* routes;
  ServerContext ctx;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::mutex sync_mu;    // one SyncListeners() at a time; guards `closing`
  bool closing = false;  // Run() has closed the listeners for good: SyncListeners() does nothing

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
      for (auto& a : list) {
        asio::co_spawn(w.io, Accept(a, WorkerContext{&ctx, &w.relay}), [](std::exception_ptr e) {
          if (e) spdlog::error("accept loop ended with an exception");
        });
      }
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
    w->thread = std::thread([worker] { worker->io.run(); });
  }
  return {};
}

const Metrics& Server::metrics() const { return impl_->ctx.metrics; }

base::Status Server::SyncListeners() {
  std::lock_guard lock(impl_->sync_mu);
  // A route change during the drain (the control plane keeps publishing) must not reopen the
  // listeners, nor wait on io threads that are stopping.
  if (impl_->closing) return {};
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

  {
    // Waits for a SyncListeners() in progress; any later one does nothing.
    std::lock_guard lock(impl_->sync_mu);
    impl_->closing = true;
  }
  for (auto& w : impl_->workers) {
    std::promise<void> done;
    Impl::Worker* worker = w.get();
    asio::post(w->io, [&, worker] {
      // Closing every listener opens none, so it cannot fail.
      (void)impl_->Sync(*worker, {});
      done.set_value();
    });
    done.get_future().wait();
  }
  // Logged once the listeners are closed, so that whoever reads it can rely on it.
  LiveConnections& live = impl_->ctx.live;
  spdlog::info("stopping: no new connections; draining {} open", live.count());
  // The drain ends when the last connection is logged, at the drain timeout, or at a second
  // SIGTERM or SIGINT (SIGHUP is ignored from here on), whichever comes first.
  bool drained = false;
  on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP ignored: stopping");
      signals.async_wait(on_signal);
      return;
    }
    spdlog::info("second {}: closing {} open connections now", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 live.count());
    drained = true;
  };
  signals.async_wait(on_signal);
  if (signals_io.stopped()) signals_io.restart();
  asio::steady_timer drain_deadline(signals_io, impl_->options.limits.drain_timeout);
  drain_deadline.async_wait([&](error_code ec) {
    if (!ec) drained = true;
  });
  live.WhenEmpty([&] { asio::post(signals_io, [&] { drained = true; }); });
  while (!drained) signals_io.run_one();
  live.WhenEmpty(nullptr);
  drain_deadline.cancel();
  signals.cancel();
  impl_->guards.clear();
  for (auto& w : impl_->workers) w->io.stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  for (auto& w : impl_->workers) w->relay.Stop();
  // Destroying the io_contexts finishes what was still negotiating (each logs itself), so the
  // counters are final when Run() returns.
  impl_->workers.clear();
}

}  // namespace drawbridge::net
