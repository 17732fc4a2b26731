#include "net/server.h"

#include <netinet/in.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "health/checker.h"
#include "io/accept_loop.h"
#include "net/asio.h"
#include "net/negotiation.h"
#include "net/relay_pool.h"
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

// The one place that decides whether the edge may open a port. The listeners set SO_REUSEPORT,
// which lets any process of the same user join them silently, so this binds sockets that do
// not share, IPv4 and IPv6 wildcard, and closes them: EADDRINUSE means some other socket serves
// the port. SO_REUSEADDR keeps connections lingering in TIME_WAIT from counting. A busy port is
// joined only when `may_share` says a node of this fleet on this host serves it (fleet mode:
// the nodes of one fleet share their public ports on purpose, and the kernel spreads the
// connections over them); any other holder is reported, as without a fleet. Returns why the
// port cannot be opened, or "" if it may be. Must not run while the edge itself listens on
// `port`.
std::string ProbePort(int port, const std::function<bool(int)>& may_share) {
  for (bool v6 : {false, true}) {
    int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      if (v6) continue;  // no IPv6 here: Listen() says so
      return std::string("cannot create a socket: ") + std::strerror(errno);
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_any;
      a.sin6_port = htons(static_cast<uint16_t>(port));
      rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_ANY);
      a.sin_port = htons(static_cast<uint16_t>(port));
      rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    int err = errno;
    ::close(fd);
    if (rc == 0) continue;
    if (err == EADDRINUSE) {
      if (may_share) {
        if (may_share(port)) return "";
        return v6 ? "in use by a process that is not a node of this fleet (IPv6)"
                  : "in use by a process that is not a node of this fleet";
      }
      return v6 ? "in use by another process (IPv6)" : "in use by another process";
    }
    if (!v6) return std::string("cannot bind: ") + std::strerror(err);
    // Any other IPv6 failure (IPv6 off): the IPv4 listener still serves; Listen() logs it.
  }
  return "";
}

}  // namespace

struct Server::Impl {
  struct Worker {
    asio::io_context io{1};
    std::map<int, std::vector<std::shared_ptr<Acceptor>>> listeners;
    std::thread thread;
  };

  ServerOptions options;
  const control::RouteTableHolder* routes;
  ServerContext ctx;
  // Checks every machine of the route table into ctx.board; from Start() to Run()'s shutdown.
  std::unique_ptr<health::Checker> checker;
  // Where every worker's connections go once negotiated: up to one relay loop per worker, as
  // many as the load needs (net/relay_pool.h). Stopped after the workers' io threads end;
  // declared before `workers` so that it outlives their io_contexts.
  std::unique_ptr<RelayPool> relays;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::mutex sync_mu;    // one SyncListeners() at a time; guards `closing` and `open`
  bool closing = false;  // Run() has closed the listeners for good: SyncListeners() does nothing
  std::set<int> open;    // the ports every worker listens on
  mutable std::mutex state_mu;          // guards `states`
  std::map<int, ListenerState> states;  // every wanted port's, for Listeners()
  std::mutex relays_mu;       // guards `relays_gone`: SetAddressHolders() against Run()'s end
  bool relays_gone = false;   // Run() stops the relay loops and destroys the workers
  size_t next_peer_cancel = 0;  // guarded by relays_mu: the worker the next peer cancel runs on

  // Runs on the worker's thread (or before it starts). Opens `ports` not open yet and closes
  // the others; returns the ports whose IPv4 listener could not be opened, with the reason.
  std::map<int, std::string> Sync(Worker& w, const std::set<int>& ports) {
    std::map<int, std::string> failed;
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
      if (!v4.ok()) {
        failed[port] = v4.message();
        continue;
      }
      auto& list = w.listeners[port];
      list.push_back(*v4);
      auto v6 = Listen(w.io, tcp::endpoint(asio::ip::address_v6::any(), port));
      if (v6.ok()) {
        list.push_back(*v6);
      } else {
        spdlog::warn("{} (IPv6 clients cannot reach this port)", v6.message());
      }
      for (auto& a : list) {
        asio::co_spawn(w.io, Accept(a, WorkerContext{&ctx, relays.get()}), [](std::exception_ptr e) {
          if (e) spdlog::error("accept loop ended with an exception");
        });
      }
    }
    return failed;
  }

  // Runs Sync() on every worker's thread and waits for each; the failures of all of them.
  std::map<int, std::string> SyncWorkers(const std::set<int>& ports) {
    std::map<int, std::string> failed;
    for (auto& w : workers) {
      std::promise<std::map<int, std::string>> done;
      Worker* worker = w.get();
      asio::post(w->io, [&, worker] { done.set_value(Sync(*worker, ports)); });
      failed.merge(done.get_future().get());
    }
    return failed;
  }

  // Records each wanted port's state (`failed` with its reason, else listening), logging each
  // change once; forgets ports no longer wanted.
  void Record(const std::set<int>& wanted, const std::map<int, std::string>& failed) {
    auto now = std::chrono::system_clock::now();
    std::lock_guard lock(state_mu);
    for (auto it = states.begin(); it != states.end();) {
      it = wanted.count(it->first) ? std::next(it) : states.erase(it);
    }
    for (int port : wanted) {
      auto f = failed.find(port);
      ListenerState next{port, f == failed.end(), f == failed.end() ? "" : f->second, now};
      auto it = states.find(port);
      if (it != states.end() && it->second.listening == next.listening &&
          it->second.error == next.error) {
        continue;
      }
      if (next.listening) {
        spdlog::info("port {}: listening", port);
      } else if (options.reserved_ports.count(port)) {
        spdlog::error("port {}: not listening: {}", port, next.error);
      } else {
        spdlog::error("port {}: not listening: {}; tried again every {} ms", port, next.error,
                      options.retry_interval.count());
      }
      states[port] = std::move(next);
    }
  }

  bool AnyFailed() const {
    std::lock_guard lock(state_mu);
    for (const auto& [port, state] : states) {
      if (!state.listening && !options.reserved_ports.count(port)) return true;
    }
    return false;
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
// One io loop, and at most one relay loop, per core this process may run on (taskset, cpusets),
// not per core the machine has. Fewer relay loops cost less CPU per transaction (fewer
// wake-ups, each finding more work) but queue connections behind each other: on the 2-core
// benchmark machine, shared with pgbench and PostgreSQL, one loop gave less throughput than two
// in each of 18 rounds, 0.3-29% less, and spent less CPU per transaction in 17 of them, up to
// 20% less (bench/results/2026-11-26*.md). So the relay pool (net/relay_pool.h) uses the second
// loop only once the first is busy. Pinning each relay thread to a core did not help either:
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
  impl_->ctx.cancel_keys = options.cancel_keys;
  impl_->ctx.forward_cancel = options.forward_cancel;
  impl_->ctx.cancels.UseFleetKeys(options.cancel_keys);
  impl_->ctx.admission.SetLimits(options.admission);
  impl_->checker = std::make_unique<health::Checker>(&impl_->ctx.board, routes);
  int n = options.threads > 0 ? options.threads : DefaultThreads();
  for (int i = 0; i < n; ++i) impl_->workers.push_back(std::make_unique<Impl::Worker>());
  RelayPoolOptions relay_options;
  relay_options.max_loops = static_cast<size_t>(n);
  impl_->relays = std::make_unique<RelayPool>(relay_options);
}

Server::~Server() {
  impl_->checker->Stop();
  {
    std::lock_guard lock(impl_->relays_mu);
    impl_->relays_gone = true;  // a late CancelFromPeer() posts nothing to a dying loop
  }
  for (auto& w : impl_->workers) w->io.stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  impl_->relays->Stop();
}

base::Status Server::Start() {
  if (auto s = impl_->relays->Start(); !s.ok()) return s;
  for (auto& w : impl_->workers) {
    impl_->guards.push_back(asio::make_work_guard(w->io));
    Impl::Worker* worker = w.get();
    w->thread = std::thread([worker] { worker->io.run(); });
  }
  impl_->checker->Start();
  SyncListeners();
  return {};
}

const Metrics& Server::metrics() const { return impl_->ctx.metrics; }

const health::Board& Server::board() const { return impl_->ctx.board; }

const admission::Admission& Server::admission() const { return impl_->ctx.admission; }

void Server::SetAddressHolders(std::shared_ptr<const control::AddressHolders> holders) {
  impl_->ctx.holders.Swap(std::move(holders));
  std::lock_guard lock(impl_->relays_mu);
  if (impl_->relays_gone) return;
  impl_->relays->RecheckAll();  // also during the drain
}

void Server::CancelFromPeer(int from_node, pg::CancelKey key, std::vector<std::string> apps) {
  impl_->ctx.metrics.cancels_from_peer++;
  // relays_mu also keeps the workers alive: Run() clears them only after relays_gone is set.
  std::lock_guard lock(impl_->relays_mu);
  if (impl_->relays_gone || impl_->workers.empty()) return;
  size_t i = impl_->next_peer_cancel++ % impl_->workers.size();
  StartPeerCancel(impl_->workers[i]->io, &impl_->ctx, from_node, std::move(key), std::move(apps));
}

void Server::PeerCancelRefused(fleet::PeerRefusal why) { impl_->ctx.metrics.PeerRefused(why); }

std::vector<ListenerState> Server::Listeners() const {
  std::lock_guard lock(impl_->state_mu);
  std::vector<ListenerState> out;
  for (const auto& [port, state] : impl_->states) out.push_back(state);
  return out;
}

void Server::SyncListeners() {
  std::lock_guard lock(impl_->sync_mu);
  // A route change during the drain (the control plane keeps publishing) must not reopen the
  // listeners, nor wait on io threads that are stopping.
  if (impl_->closing) return;
  std::set<int> wanted = impl_->WantedPorts();
  std::map<int, std::string> failed;
  std::set<int> ports;  // to listen on
  for (int port : wanted) {
    if (auto r = impl_->options.reserved_ports.find(port); r != impl_->options.reserved_ports.end()) {
      failed[port] = "used by " + r->second;
    } else if (std::string why = impl_->open.count(port)
                                     ? ""
                                     : ProbePort(port, impl_->options.may_share);
               !why.empty()) {
      failed[port] = std::move(why);
    } else {
      ports.insert(port);
    }
  }
  auto not_opened = impl_->SyncWorkers(ports);
  if (!not_opened.empty()) {
    // Opened by some workers only (another process took it in between): closed on all.
    for (const auto& [port, why] : not_opened) ports.erase(port);
    failed.merge(not_opened);
    (void)impl_->SyncWorkers(ports);  // opens nothing new, so it cannot fail
  }
  impl_->open = ports;
  impl_->Record(wanted, failed);
}

void Server::Run(const std::function<void()>& on_ready, const std::function<void()>& on_reload,
                 const std::function<void()>& on_tick) {
  asio::io_context signals_io(1);
  asio::signal_set signals(signals_io, SIGTERM, SIGINT, SIGHUP);
  bool stopping = false;
  std::function<void(error_code, int)> on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading");
      on_reload();
      SyncListeners();
      signals.async_wait(on_signal);
      return;
    }
    stopping = true;
  };
  signals.async_wait(on_signal);
  asio::steady_timer tick(signals_io);
  auto next_retry = std::chrono::steady_clock::now() + impl_->options.retry_interval;
  std::function<void(error_code)> on_timer = [&](error_code ec) {
    if (ec) return;
    if (on_tick) on_tick();
    if (auto now = std::chrono::steady_clock::now(); now >= next_retry) {
      next_retry = now + impl_->options.retry_interval;
      if (impl_->AnyFailed()) SyncListeners();
    }
    tick.expires_after(std::chrono::seconds(1));
    tick.async_wait(on_timer);
  };
  tick.expires_after(std::chrono::seconds(1));
  tick.async_wait(on_timer);
  if (on_ready) on_ready();
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
  impl_->checker->Stop();  // no machine is checked once no connection can use the result
  impl_->guards.clear();
  for (auto& w : impl_->workers) w->io.stop();
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  impl_->relays->Stop();
  // Destroying the io_contexts finishes what was still negotiating (each logs itself), so the
  // counters are final when Run() returns.
  {
    std::lock_guard lock(impl_->relays_mu);
    impl_->relays_gone = true;
  }
  impl_->workers.clear();
}

}  // namespace drawbridge::net
