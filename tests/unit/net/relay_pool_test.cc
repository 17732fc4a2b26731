// RelayPool: the placement policy on its own (ChooseLoop, ChooseShedTarget), then real loops on
// socketpairs: where connections land, a loop that measures itself busy and idle again, a
// connection moved between two loops that keeps relaying both ways, and Stop() while
// connections move, which must give each one up exactly once. Everything runs on this test's
// threads and the pool's loop threads; every wait is bounded (Eventually: five seconds).
#include "net/relay_pool.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/test_sockets.h"

namespace drawbridge::net {
namespace {

using nettest::Eventually;
using nettest::SocketPair;

using namespace std::chrono_literals;

// ---- the policy ------------------------------------------------------------------------------

TEST(RelayPoolTest, ChooseLoopTakesTheFirstBelowTheThreshold) {
  EXPECT_EQ(ChooseLoop(std::vector<double>{0, 0, 0}, 0.7), 0u);
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.69, 0, 0}, 0.7), 0u);  // packs the first loop
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.7, 0, 0}, 0.7), 1u);   // at the threshold: full
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.9, 0.5, 0}, 0.7), 1u);
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.9, 0.8, 0.2}, 0.7), 2u);
}

TEST(RelayPoolTest, ChooseLoopTakesTheLeastLoadedWhenAllAreBusy) {
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.9, 0.8}, 0.7), 1u);
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.75, 0.95, 0.8}, 0.7), 0u);
  EXPECT_EQ(ChooseLoop(std::vector<double>{1.0, 0.9, 0.9}, 0.7), 1u);  // first of equals
  EXPECT_EQ(ChooseLoop(std::vector<double>{0.9}, 0.7), 0u);
  EXPECT_EQ(ChooseLoop(std::span<const double>{}, 0.7), 0u);
}

TEST(RelayPoolTest, ShedOnlyFromABusyLoopToAQuietOne) {
  // Above the threshold, and another well below: the first such.
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.8, 0.2}, 0, 0.7, 0.25), 1u);
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.1, 0.9}, 1, 0.7, 0.25), 0u);
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.9, 0.5, 0.3, 0.1}, 0, 0.7, 0.25), 2u);
  // Not above the threshold: keeps everything.
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.7, 0.0}, 0, 0.7, 0.25), std::nullopt);
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.5, 0.0}, 0, 0.7, 0.25), std::nullopt);
  // No loop below threshold - margin (0.45): a move would only push the other one up.
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.9, 0.45}, 0, 0.7, 0.25), std::nullopt);
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.9, 0.6, 0.8}, 0, 0.7, 0.25), std::nullopt);
  // Never to itself, and nowhere with one loop or a bad index.
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.9}, 0, 0.7, 0.25), std::nullopt);
  EXPECT_EQ(ChooseShedTarget(std::vector<double>{0.9, 0.1}, 2, 0.7, 0.25), std::nullopt);
}

// ---- real loops ------------------------------------------------------------------------------

// What a test sees of a handler a loop owns.
struct Probe {
  std::atomic<int> stops{0};      // OnStop() calls
  std::atomic<int> dones{0};      // kDone answers
  std::atomic<int> destroyed{0};  // destructor calls
  std::atomic<int> rechecks{0};
};

// Copies bytes both ways between its two sockets; movable between calls, since it keeps
// nothing buffered (a send that would block is a test failure here: the messages are tiny).
class Relay : public RelayHandler {
 public:
  Relay(int client, int server, Probe* probe) : fds_{client, server}, probe_(probe) {}
  ~Relay() override {
    CloseFds();
    probe_->destroyed++;
  }
  Result OnReady(Side, uint32_t) override {
    for (int from = 0; from < 2; ++from) {
      char buf[256];
      while (true) {
        ssize_t n = recv(fds_[from], buf, sizeof buf, 0);
        if (n > 0) {
          EXPECT_EQ(send(fds_[1 - from], buf, static_cast<size_t>(n), MSG_NOSIGNAL), n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        CloseFds();  // EOF or error on either side ends it
        probe_->dones++;
        return Result::kDone;
      }
    }
    return Result::kWait;
  }
  void OnStop(Stop) override {
    probe_->stops++;
    CloseFds();
  }
  Result Recheck() override {
    probe_->rechecks++;
    return Result::kWait;
  }
  bool Movable() const override { return true; }

 private:
  void CloseFds() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  int fds_[2];
  Probe* probe_;
};

// Keeps its loop's thread busy: burns about a millisecond of CPU per call and asks to run
// again, until `stop` is set. Never movable (it always answers kMore).
class Spinner : public RelayHandler {
 public:
  Spinner(int a, int b, std::atomic<bool>* stop, Probe* probe)
      : fds_{a, b}, stop_(stop), probe_(probe) {}
  ~Spinner() override {
    CloseFds();
    probe_->destroyed++;
  }
  Result OnReady(Side, uint32_t) override {
    if (stop_->load()) {
      CloseFds();
      probe_->dones++;
      return Result::kDone;
    }
    auto until = std::chrono::steady_clock::now() + 1ms;
    while (std::chrono::steady_clock::now() < until) {
    }
    return Result::kMore;
  }
  void OnStop(Stop) override {
    probe_->stops++;
    CloseFds();
  }
  Result Recheck() override {
    probe_->rechecks++;
    return Result::kWait;
  }

 private:
  void CloseFds() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  int fds_[2];
  std::atomic<bool>* stop_;
  Probe* probe_;
};

// A relayed connection as the test sees it: the far ends of both socketpairs.
struct Conn {
  SocketPair client, server;
  Probe probe;
};

bool AdoptRelay(RelayPool& pool, Conn& c) {
  std::unique_ptr<RelayHandler> h = std::make_unique<Relay>(c.client.ours, c.server.ours, &c.probe);
  return pool.Adopt(&h, c.client.ours, c.server.ours);
}

// Sends `msg` into `from` and expects it out of `to` within two seconds.
bool Passes(int from, int to, const std::string& msg) {
  if (send(from, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
    return false;
  }
  std::string got;
  Eventually([&] {
    char buf[256];
    ssize_t n = recv(to, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.size() >= msg.size();
  });
  return got == msg;
}

// Low thresholds and short windows, so that a loop kept busy by a Spinner counts as busy even
// on a machine shared with other work, and a move comes within milliseconds.
RelayPoolOptions TestOptions(size_t loops) {
  RelayPoolOptions o;
  o.max_loops = loops;
  o.threshold = 0.30;
  o.shed_margin = 0.25;  // a quiet loop is one below 0.05
  o.shed_after_windows = 1;
  o.window = 10ms;
  return o;
}

TEST(RelayPoolTest, ConnectionsLandOnTheFirstLoopWhileItIsIdle) {
  RelayPool pool(TestOptions(2));
  ASSERT_TRUE(pool.Start().ok());
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < 10; ++i) {
    conns.push_back(std::make_unique<Conn>());
    ASSERT_TRUE(AdoptRelay(pool, *conns.back()));
  }
  EXPECT_EQ(pool.loop(0).Held(), 10u);
  EXPECT_EQ(pool.loop(1).Held(), 0u);
  for (auto& c : conns) {
    EXPECT_TRUE(Passes(c->client.theirs, c->server.theirs, "ping"));
    EXPECT_TRUE(Passes(c->server.theirs, c->client.theirs, "pong"));
  }
  // Idle traffic this light never moves anything.
  EXPECT_EQ(pool.loop(1).Held(), 0u);
  pool.Stop();
  for (auto& c : conns) {
    EXPECT_EQ(c->probe.stops.load(), 1);
    EXPECT_EQ(c->probe.destroyed.load(), 1);
  }
}

TEST(RelayPoolTest, ABusyLoopIsPassedOverAndReportsIdleAgainOnceQuiet) {
  RelayPool pool(TestOptions(2));
  ASSERT_TRUE(pool.Start().ok());
  std::atomic<bool> stop{false};
  SocketPair a, b;
  Probe spin_probe;
  std::unique_ptr<RelayHandler> spinner = std::make_unique<Spinner>(a.ours, b.ours, &stop, &spin_probe);
  ASSERT_TRUE(pool.Adopt(&spinner, a.ours, b.ours));  // on loop 0: all idle
  ASSERT_TRUE(Eventually([&] { return pool.Loads()[0] > 0.30; }));
  // Loop 0 is above the threshold: a new connection goes to loop 1.
  Conn c;
  ASSERT_TRUE(AdoptRelay(pool, c));
  EXPECT_EQ(pool.loop(1).Held(), 1u);
  EXPECT_TRUE(Passes(c.client.theirs, c.server.theirs, "hello"));
  // The spinner ends; loop 0 blocks and its load must still fall to 0 (the loop wakes at the
  // end of a window that had work, and reports the idle one after it).
  stop = true;
  ASSERT_TRUE(Eventually([&] { return spin_probe.dones.load() == 1; }));
  EXPECT_TRUE(Eventually([&] { return pool.Loads()[0] == 0.0; }));
  EXPECT_TRUE(Eventually([&] { return pool.Loads()[1] == 0.0; }));
  // Both idle: the next connection goes to loop 0 again.
  Conn d;
  ASSERT_TRUE(AdoptRelay(pool, d));
  EXPECT_TRUE(Eventually([&] { return pool.loop(0).Held() == 1; }));  // d; the spinner is gone
  pool.Stop();
  EXPECT_EQ(spin_probe.destroyed.load(), 1);
  EXPECT_EQ(c.probe.stops.load(), 1);
  EXPECT_EQ(d.probe.stops.load(), 1);
}

TEST(RelayPoolTest, AMovedConnectionKeepsRelayingBothWays) {
  RelayPool pool(TestOptions(2));
  ASSERT_TRUE(pool.Start().ok());
  Conn c;
  ASSERT_TRUE(AdoptRelay(pool, c));  // loop 0, idle
  EXPECT_TRUE(Passes(c.client.theirs, c.server.theirs, "before"));
  ASSERT_EQ(pool.loop(0).Held(), 1u);
  // Now loop 0 gets busy: it sheds its one movable connection to loop 1.
  std::atomic<bool> stop{false};
  SocketPair a, b;
  Probe spin_probe;
  std::unique_ptr<RelayHandler> spinner = std::make_unique<Spinner>(a.ours, b.ours, &stop, &spin_probe);
  // Straight onto loop 0 through the pool: loop 0 is still idle, so it is chosen.
  ASSERT_TRUE(pool.Adopt(&spinner, a.ours, b.ours));
  ASSERT_EQ(pool.loop(0).Held(), 2u);
  ASSERT_TRUE(Eventually([&] { return pool.loop(1).Held() == 1; }));
  // The spinner stays: it is never idle. (Loop 0 counts the move once loop 1 took it.)
  EXPECT_TRUE(Eventually([&] { return pool.loop(0).Held() == 1; }));
  EXPECT_GE(pool.loop(0).MovedOut(), 1u);
  // Adopted again on loop 1 (Held() counts it as soon as it is queued there): rechecked there
  // once that loop's thread takes it, as on any adoption.
  EXPECT_TRUE(Eventually([&] { return c.probe.rechecks.load() >= 2; }));
  // Bytes both ways, several times, on its new loop.
  for (int i = 0; i < 20; ++i) {
    std::string n = std::to_string(i);
    std::string up = "up ";
    up += n;
    std::string down = "down ";
    down += n;
    ASSERT_TRUE(Passes(c.client.theirs, c.server.theirs, up));
    ASSERT_TRUE(Passes(c.server.theirs, c.client.theirs, down));
  }
  // Bytes already waiting when a move happens are not lost either: the new loop's
  // registration reports them. (Here: written while the connection sits on loop 1, read there.)
  EXPECT_EQ(c.probe.stops.load(), 0);
  // The client closes: finished once, on loop 1.
  close(c.client.theirs);
  c.client.theirs = -1;
  EXPECT_TRUE(Eventually([&] { return c.probe.destroyed.load() == 1; }));
  stop = true;
  pool.Stop();
  EXPECT_EQ(c.probe.dones.load(), 1);
  EXPECT_EQ(c.probe.stops.load(), 0);
  EXPECT_EQ(spin_probe.dones.load() + spin_probe.stops.load(), 1);
}

// Stop() while connections are moving from a busy loop to an idle one: each connection is
// finished exactly once (given up by the loop that held it, or refused by a loop already
// stopped and kept by the one that shed it), none is lost (its sockets are closed: the far ends
// read EOF) and none is closed twice.
TEST(RelayPoolTest, StopWhileConnectionsMoveLosesNothing) {
  uint64_t moved = 0;  // over all rounds: the test is only worth something if moves happened
  for (int round = 0; round < 6; ++round) {
    RelayPool pool(TestOptions(2));
    ASSERT_TRUE(pool.Start().ok());
    std::atomic<bool> stop{false};
    SocketPair a, b;
    Probe spin_probe;
    std::unique_ptr<RelayHandler> spinner =
        std::make_unique<Spinner>(a.ours, b.ours, &stop, &spin_probe);
    ASSERT_TRUE(pool.Adopt(&spinner, a.ours, b.ours));
    std::vector<std::unique_ptr<Conn>> conns;
    for (int i = 0; i < 40; ++i) {
      conns.push_back(std::make_unique<Conn>());
      // While loop 0 is not yet measured busy, these land on it, to be shed one per window.
      ASSERT_TRUE(AdoptRelay(pool, *conns.back()));
    }
    // Stop at a different point of the shedding each round, with traffic in flight.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(15 * round);
    size_t i = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      Conn& c = *conns[i++ % conns.size()];
      (void)send(c.client.theirs, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(200us);
    }
    pool.Stop();
    moved += pool.loop(0).MovedOut() + pool.loop(1).MovedOut();
    EXPECT_EQ(spin_probe.destroyed.load(), 1);
    EXPECT_EQ(spin_probe.stops.load() + spin_probe.dones.load(), 1);
    for (auto& c : conns) {
      EXPECT_EQ(c->probe.destroyed.load(), 1) << "round " << round;
      EXPECT_EQ(c->probe.stops.load() + c->probe.dones.load(), 1) << "round " << round;
      // Closed: the far end reads what was relayed, then EOF.
      char buf[4096];
      ssize_t n;
      while ((n = recv(c->server.theirs, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      }
      EXPECT_EQ(n, 0) << "round " << round;
      EXPECT_EQ(recv(c->client.theirs, buf, sizeof buf, MSG_DONTWAIT), 0) << "round " << round;
    }
    EXPECT_EQ(pool.loop(0).Held(), 0u);
    EXPECT_EQ(pool.loop(1).Held(), 0u);
    // After Stop() the pool adopts nothing and hands the handler back.
    Conn late;
    std::unique_ptr<RelayHandler> h =
        std::make_unique<Relay>(late.client.ours, late.server.ours, &late.probe);
    EXPECT_FALSE(pool.Adopt(&h, late.client.ours, late.server.ours));
    ASSERT_NE(h, nullptr);
    h->OnStop(RelayHandler::Stop::kLoopStopping);
    h.reset();
    EXPECT_EQ(late.probe.destroyed.load(), 1);
  }
  EXPECT_GT(moved, 0u);
}

TEST(RelayPoolTest, RecheckAllReachesEveryLoop) {
  RelayPool pool(TestOptions(2));
  ASSERT_TRUE(pool.Start().ok());
  // The spinner stays on loop 0; the connection is shed to loop 1.
  Conn c;
  ASSERT_TRUE(AdoptRelay(pool, c));
  std::atomic<bool> stop{false};
  SocketPair a, b;
  Probe spin_probe;
  std::unique_ptr<RelayHandler> spinner = std::make_unique<Spinner>(a.ours, b.ours, &stop, &spin_probe);
  ASSERT_TRUE(pool.Adopt(&spinner, a.ours, b.ours));
  ASSERT_TRUE(Eventually([&] { return pool.loop(1).Held() == 1; }));
  ASSERT_TRUE(Eventually([&] { return c.probe.rechecks.load() >= 2; }));  // adopted twice
  int before_c = c.probe.rechecks.load(), before_spin = spin_probe.rechecks.load();
  pool.RecheckAll();
  EXPECT_TRUE(Eventually([&] { return c.probe.rechecks.load() > before_c; }));
  EXPECT_TRUE(Eventually([&] { return spin_probe.rechecks.load() > before_spin; }));
  stop = true;
  pool.Stop();
  EXPECT_EQ(c.probe.destroyed.load(), 1);
  EXPECT_EQ(spin_probe.destroyed.load(), 1);
}

}  // namespace
}  // namespace drawbridge::net
