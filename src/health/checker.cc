#include "health/checker.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility> (see net/asio.h).
#include <utility>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <string>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace drawbridge::health {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using asio::ip::tcp;
using Executor = asio::io_context::executor_type;
template <typename T>
using awaitable = asio::awaitable<T, Executor>;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Resolver = asio::ip::basic_resolver<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
constexpr asio::use_awaitable_t<Executor> kAwait;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The floors config::ParseFlyToml puts on a check, again here: a route built from a stored
// release that bypassed the parser must not make a check spin.
constexpr milliseconds kMinInterval{100};
constexpr milliseconds kMinTimeout{10};

std::string DurationText(milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

// "connection refused", "network is unreachable", ...: the system's words, lower case first.
std::string ErrorText(const error_code& ec) {
  if (ec == asio::error::connection_refused) return "connection refused";
  std::string text = ec.message();
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// One check of one target, run on the checker's thread until cancelled.
struct Probe {
  Probe(Executor ex, MachineKey k, size_t i, control::TcpCheck c)
      : key(std::move(k)), index(i), check(c), socket(ex), resolver(ex), deadline(ex), wait(ex) {}

  void Cancel() {
    cancelled = true;
    ++attempt;
    error_code ec;
    wait.cancel();
    deadline.cancel();
    resolver.cancel();
    socket.close(ec);
  }

  MachineKey key;
  size_t index;
  control::TcpCheck check;
  bool cancelled = false;
  uint64_t attempt = 0;  // tells a deadline that fired late from the current attempt's
  bool timed_out = false;
  Socket socket;
  Resolver resolver;
  Timer deadline;
  Timer wait;
};

// One connect attempt: "" if it passed, else why not.
awaitable<std::string> Attempt(std::shared_ptr<Probe> p) {
  const uint64_t attempt = ++p->attempt;
  p->timed_out = false;
  const milliseconds timeout = std::max(p->check.timeout, kMinTimeout);
  p->deadline.expires_after(timeout);
  p->deadline.async_wait([p, attempt](error_code ec) {
    if (ec || p->attempt != attempt) return;
    p->timed_out = true;
    error_code ignored;
    p->resolver.cancel();
    p->socket.close(ignored);
  });
  error_code ec;
  std::vector<tcp::endpoint> endpoints;
  auto ip = asio::ip::make_address(p->key.address, ec);
  if (!ec) {
    endpoints.emplace_back(ip, static_cast<uint16_t>(p->key.port));
  } else {
    ec = {};
    auto results = co_await p->resolver.async_resolve(
        p->key.address, std::to_string(p->key.port), asio::redirect_error(kAwait, ec));
    if (!ec) {
      for (const auto& r : results) endpoints.push_back(r.endpoint());
      if (endpoints.empty()) ec = asio::error::host_not_found;
    }
    if (ec && !p->timed_out && !p->cancelled) {
      p->deadline.cancel();
      co_return "cannot resolve " + p->key.address + ": " + ErrorText(ec);
    }
  }
  for (const auto& ep : endpoints) {
    if (p->timed_out || p->cancelled) break;
    error_code ignored;
    p->socket.close(ignored);
    p->socket.open(ep.protocol(), ec);
    if (ec) continue;
    co_await p->socket.async_connect(ep, asio::redirect_error(kAwait, ec));
    if (!ec) break;
  }
  p->deadline.cancel();
  error_code ignored;
  p->socket.close(ignored);
  if (p->timed_out) co_return "timed out after " + DurationText(timeout);
  if (ec) co_return ErrorText(ec);
  co_return "";
}

}  // namespace

std::vector<Board::Target> TargetsOf(const control::RouteTable& table) {
  std::vector<Board::Target> out;
  std::map<MachineKey, size_t> seen;  // key -> index in out
  for (const auto& entry : table.entries()) {
    const control::Route& route = entry.route;
    for (const auto& machine : route.machines) {
      MachineKey key{route.app, machine.address, route.internal_port};
      auto [it, added] = seen.emplace(key, out.size());
      if (added) out.push_back(Board::Target{std::move(key), {}});
      auto& checks = out[it->second].checks;
      for (const auto& check : route.checks) {
        if (std::find(checks.begin(), checks.end(), check) == checks.end()) {
          checks.push_back(check);
        }
      }
    }
  }
  return out;
}

struct Checker::Impl {
  Impl(Board* b, const control::RouteTableHolder* r, milliseconds poll)
      : board(b), routes(r), poll_interval(poll) {}

  // Reads the route table; on a new one, re-targets the board and the probes.
  void Refresh() {
    auto table = routes->Current();
    if (table == table_ && started_probes_) return;
    table_ = table;
    started_probes_ = true;
    std::vector<Board::Target> targets;
    if (table) targets = TargetsOf(*table);
    board->SetTargets(targets, steady_clock::now());
    std::map<std::pair<MachineKey, size_t>, std::shared_ptr<Probe>> next;
    for (const auto& target : targets) {
      for (size_t i = 0; i < target.checks.size(); ++i) {
        auto id = std::make_pair(target.key, i);
        auto old = probes_.find(id);
        if (old != probes_.end() && old->second->check == target.checks[i]) {
          next.emplace(id, std::move(old->second));
          probes_.erase(old);
          continue;
        }
        auto p = std::make_shared<Probe>(io.get_executor(), target.key, i, target.checks[i]);
        next.emplace(id, p);
        asio::co_spawn(io.get_executor(), Run(p), [](std::exception_ptr e) {
          if (e) spdlog::error("health check coroutine ended with an exception");
        });
      }
    }
    for (auto& [id, p] : probes_) p->Cancel();
    probes_ = std::move(next);
  }

  awaitable<void> Run(std::shared_ptr<Probe> p) {
    while (!p->cancelled) {
      const auto start = steady_clock::now();
      std::string why = co_await Attempt(p);
      if (p->cancelled) break;
      board->CheckResult(p->key, p->index, why.empty(), why, steady_clock::now(),
                         std::chrono::system_clock::now());
      p->wait.expires_at(start + std::max(p->check.interval, kMinInterval));
      error_code ec;
      co_await p->wait.async_wait(asio::redirect_error(kAwait, ec));
    }
  }

  awaitable<void> Poll() {
    Timer timer(io.get_executor());
    for (;;) {
      Refresh();
      timer.expires_after(poll_interval);
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(kAwait, ec));
    }
  }

  // First: destroyed last, after the members below that hold its I/O objects; its own
  // destruction then destroys the coroutines still suspended on it.
  asio::io_context io{1};
  Board* board;
  const control::RouteTableHolder* routes;
  milliseconds poll_interval;
  // Owned by the checker's thread once started.
  std::shared_ptr<const control::RouteTable> table_;
  bool started_probes_ = false;
  std::map<std::pair<MachineKey, size_t>, std::shared_ptr<Probe>> probes_;
  // Owner's thread.
  std::thread thread;
  bool started = false;
};

Checker::Checker(Board* board, const control::RouteTableHolder* routes,
                 milliseconds poll_interval)
    : impl_(std::make_unique<Impl>(board, routes, poll_interval)) {}

Checker::~Checker() { Stop(); }

void Checker::Start() {
  if (impl_->started) return;
  impl_->started = true;
  asio::co_spawn(impl_->io.get_executor(), impl_->Poll(), [](std::exception_ptr e) {
    if (e) spdlog::error("health check loop ended with an exception");
  });
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

void Checker::Stop() {
  impl_->started = true;  // no start after a stop
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace drawbridge::health
