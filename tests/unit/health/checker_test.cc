#include "health/checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace drawbridge::health {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A TCP listener on 127.0.0.1 whose thread accepts and closes every connection (polling every
// 20 ms, so that Close() is prompt). Port 0: the kernel picks.
class Listener {
 public:
  explicit Listener(int port = 0, int backlog = 64, bool accept = true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_, backlog) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    if (accept) thread_ = std::thread([this] { Accept(); });
  }
  ~Listener() { Close(); }
  void Close() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool ok() const { return fd_ >= 0; }
  int port() const { return port_; }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c >= 0) ::close(c);
      }
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A port on 127.0.0.1 nothing listens on (bound, then released).
int ClosedPort() {
  Listener l(0, 1, false);
  return l.port();
}

control::TcpCheck FastCheck(int interval_ms = 100, int timeout_ms = 300, int grace_ms = 0) {
  control::TcpCheck c;
  c.interval = milliseconds(interval_ms);
  c.timeout = milliseconds(timeout_ms);
  c.grace_period = milliseconds(grace_ms);
  return c;
}

control::RouteTable::Entry RouteTo(const std::string& app, int public_port, int internal_port,
                                   std::vector<std::string> addresses,
                                   std::vector<control::TcpCheck> checks) {
  control::RouteTable::Entry e;
  e.route.app = app;
  e.route.public_port = public_port;
  e.route.internal_port = internal_port;
  for (size_t i = 0; i < addresses.size(); ++i) {
    e.route.machines.push_back(control::Machine{"m" + std::to_string(i), addresses[i]});
  }
  e.route.checks = std::move(checks);
  return e;
}

std::shared_ptr<const control::RouteTable> Table(uint64_t version,
                                                 std::vector<control::RouteTable::Entry> e) {
  return std::make_shared<const control::RouteTable>(version, std::move(e));
}

// Polls `done` every 10 ms for at most `limit`.
bool WaitFor(const std::function<bool()>& done, milliseconds limit = milliseconds(5000)) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return done();
}

std::optional<Board::Status> StatusOf(const Board& board, const std::string& app,
                                      const std::string& address, int port) {
  for (auto& s : board.AppStatus(app)) {
    if (s.key.address == address && s.key.port == port) return s;
  }
  return std::nullopt;
}

TEST(TargetsOf, OnePerMachineAndPortWithTheUnionOfChecks) {
  auto a = FastCheck(100);
  auto b = FastCheck(200);
  auto table = Table(1, {RouteTo("db", 5432, 5432, {"10.0.0.1", "10.0.0.2"}, {a}),
                         // Another public port to the same internal port: same targets.
                         RouteTo("db", 15432, 5432, {"10.0.0.1", "10.0.0.2"}, {a, b}),
                         RouteTo("db", 5433, 5433, {"10.0.0.1"}, {b}),
                         RouteTo("other", 5432, 5432, {"10.0.0.1"}, {a}),
                         RouteTo("empty", 5432, 5432, {}, {a})});
  auto targets = TargetsOf(*table);
  ASSERT_EQ(targets.size(), 4u);
  EXPECT_EQ(targets[0].key, (MachineKey{"db", "10.0.0.1", 5432}));
  EXPECT_EQ(targets[0].checks, (std::vector<control::TcpCheck>{a, b}));
  EXPECT_EQ(targets[1].key, (MachineKey{"db", "10.0.0.2", 5432}));
  EXPECT_EQ(targets[1].checks, (std::vector<control::TcpCheck>{a, b}));
  EXPECT_EQ(targets[2].key, (MachineKey{"db", "10.0.0.1", 5433}));
  EXPECT_EQ(targets[2].checks, (std::vector<control::TcpCheck>{b}));
  EXPECT_EQ(targets[3].key, (MachineKey{"other", "10.0.0.1", 5432}));
}

TEST(Checker, ListenerPassesClosedPortFails) {
  Listener up;
  ASSERT_TRUE(up.ok());
  const int down = ClosedPort();
  Board board;
  control::RouteTableHolder routes;
  routes.Swap(Table(1, {RouteTo("db", 1, up.port(), {"127.0.0.1", "localhost"}, {FastCheck()}),
                        RouteTo("db", 2, down, {"127.0.0.1"}, {FastCheck()})}));
  Checker checker(&board, &routes, milliseconds(50));
  checker.Start();
  EXPECT_TRUE(WaitFor([&] {
    auto a = StatusOf(board, "db", "127.0.0.1", up.port());
    auto b = StatusOf(board, "db", "localhost", up.port());
    auto c = StatusOf(board, "db", "127.0.0.1", down);
    return a && a->last_check == "passing" && b && b->last_check == "passing" && c &&
           c->last_check == "failing: connection refused";
  }));
  auto a = StatusOf(board, "db", "127.0.0.1", up.port());
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->healthy);
  EXPECT_FALSE(a->last_check_at.empty());
  auto c = StatusOf(board, "db", "127.0.0.1", down);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->healthy);
  checker.Stop();
}

TEST(Checker, GracePeriodHidesEarlyFailures) {
  const int down = ClosedPort();
  Board board;
  control::RouteTableHolder routes;
  routes.Swap(Table(1, {RouteTo("db", 1, down, {"127.0.0.1"}, {FastCheck(100, 300, 800)})}));
  Checker checker(&board, &routes, milliseconds(50));
  const auto start = Clock::now();
  checker.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf(board, "db", "127.0.0.1", down).has_value(); }));
  // Checks run every 100 ms and fail, yet within the 800 ms grace the machine stays healthy.
  std::this_thread::sleep_until(start + milliseconds(500));
  auto s = StatusOf(board, "db", "127.0.0.1", down);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->healthy);
  EXPECT_EQ(s->last_check, "");
  EXPECT_TRUE(WaitFor([&] {
    auto s = StatusOf(board, "db", "127.0.0.1", down);
    return s && !s->healthy;
  }));
  EXPECT_GE(Clock::now() - start, milliseconds(800));
}

TEST(Checker, MachineThatGoesAwayAndComesBack) {
  auto up = std::make_unique<Listener>();
  ASSERT_TRUE(up->ok());
  const int port = up->port();
  Board board;
  control::RouteTableHolder routes;
  routes.Swap(Table(1, {RouteTo("db", 1, port, {"127.0.0.1"}, {FastCheck()})}));
  Checker checker(&board, &routes, milliseconds(50));
  checker.Start();
  auto state = [&] { return StatusOf(board, "db", "127.0.0.1", port); };
  ASSERT_TRUE(WaitFor([&] { auto s = state(); return s && s->last_check == "passing"; }));
  up->Close();
  ASSERT_TRUE(WaitFor([&] { auto s = state(); return s && !s->healthy; }));
  std::vector<std::string> addresses = {"127.0.0.1"};
  EXPECT_FALSE(board.View("db", port, addresses, Clock::now()).at(0).healthy);
  up = std::make_unique<Listener>(port);
  ASSERT_TRUE(up->ok());
  EXPECT_TRUE(WaitFor([&] { auto s = state(); return s && s->healthy; }));
  EXPECT_TRUE(board.View("db", port, addresses, Clock::now()).at(0).healthy);
}

TEST(Checker, FollowsTheRouteTable) {
  Listener one, two;
  ASSERT_TRUE(one.ok() && two.ok());
  Board board;
  control::RouteTableHolder routes;
  Checker checker(&board, &routes, milliseconds(50));
  checker.Start();  // no table yet: nothing to check
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_TRUE(board.AppStatus("db").empty());
  routes.Swap(Table(1, {RouteTo("db", 1, one.port(), {"127.0.0.1"}, {FastCheck()})}));
  ASSERT_TRUE(WaitFor([&] {
    auto s = StatusOf(board, "db", "127.0.0.1", one.port());
    return s && s->last_check == "passing";
  }));
  routes.Swap(Table(2, {RouteTo("db", 1, two.port(), {"127.0.0.1"}, {FastCheck()})}));
  EXPECT_TRUE(WaitFor([&] {
    auto s = StatusOf(board, "db", "127.0.0.1", two.port());
    return s && s->last_check == "passing" && !StatusOf(board, "db", "127.0.0.1", one.port());
  }));
  routes.Swap(Table(3, {}));
  EXPECT_TRUE(WaitFor([&] { return board.AppStatus("db").empty(); }));
}

// A listener whose accept queue is full drops new SYNs: a connect to it hangs until the
// check's timeout, and Stop() does not wait for it.
TEST(Checker, TimeoutAndPromptStopWithChecksInFlight) {
  Listener full(0, 0, false);
  ASSERT_TRUE(full.ok());
  // Fill the accept queue (backlog 0 holds one connection, the kernel may allow one more).
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(full.port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(milliseconds(50));
  Board board;
  control::RouteTableHolder routes;
  routes.Swap(Table(1, {RouteTo("db", 1, full.port(), {"127.0.0.1"}, {FastCheck(100, 300)})}));
  {
    Checker checker(&board, &routes, milliseconds(50));
    checker.Start();
    EXPECT_TRUE(WaitFor([&] {
      auto s = StatusOf(board, "db", "127.0.0.1", full.port());
      return s && s->last_check == "failing: timed out after 300ms";
    }));
  }
  // A check with a long timeout in flight when Stop() is called.
  routes.Swap(Table(2, {RouteTo("db", 1, full.port(), {"127.0.0.1"}, {FastCheck(100, 30000)})}));
  Checker checker(&board, &routes, milliseconds(50));
  checker.Start();
  std::this_thread::sleep_for(milliseconds(300));
  const auto start = Clock::now();
  checker.Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  checker.Stop();  // idempotent
  for (int fd : fillers) ::close(fd);
}

TEST(Checker, StopWithoutStartAndStartAfterStop) {
  Board board;
  control::RouteTableHolder routes;
  Checker a(&board, &routes);
  a.Stop();
  a.Start();  // does nothing after a stop
  a.Stop();
  Checker b(&board, &routes);  // destroyed without Stop()
  b.Start();
}

}  // namespace
}  // namespace drawbridge::health
