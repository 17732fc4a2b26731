#include "net/relay_loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "net/test_sockets.h"

namespace drawbridge::net {
namespace {

using nettest::Eventually;
using nettest::SocketPair;

using namespace std::chrono_literals;

// What a test sees of a handler the loop owns.
struct Probe {
  std::atomic<int> calls{0};
  std::atomic<int> stops{0};
  std::atomic<bool> destroyed{false};
};

// Copies what the client side sends to the server side; done when the client side closes.
class Forwarder : public RelayHandler {
 public:
  Forwarder(int client, int server, Probe* probe) : fds_{client, server}, probe_(probe) {}
  ~Forwarder() override {
    CloseFds();
    probe_->destroyed = true;
  }

  Result OnReady(Side side, uint32_t events) override {
    probe_->calls++;
    if (side == Side::kClient && (events & EPOLLIN)) readable_ = true;
    char buf[256];
    while (readable_) {
      ssize_t n = recv(fds_[0], buf, sizeof buf, 0);
      if (n > 0) {
        EXPECT_EQ(send(fds_[1], buf, static_cast<size_t>(n), MSG_NOSIGNAL), n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        readable_ = false;
        break;
      }
      CloseFds();  // EOF or error
      return Result::kDone;
    }
    return Result::kWait;
  }
  void OnStop(Stop) override {
    probe_->stops++;
    CloseFds();
  }

 private:
  void CloseFds() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  int fds_[2];
  bool readable_ = false;
  Probe* probe_;
};

std::unique_ptr<RelayHandler> NewForwarder(int client, int server, Probe* probe) {
  return std::make_unique<Forwarder>(client, server, probe);
}

std::string RecvAll(int fd, size_t want) {
  std::string got;
  Eventually([&] {
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.size() >= want;
  });
  return got;
}

TEST(RelayLoopTest, RelaysWhatIsAlreadyThereAndWhatComesLater) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  SocketPair client, server;
  Probe probe;
  // Bytes sent before the loop adopts the sockets still raise the first edge.
  ASSERT_EQ(send(client.theirs, "early ", 6, 0), 6);
  auto handler = NewForwarder(client.ours, server.ours, &probe);
  ASSERT_TRUE(loop.Adopt(&handler, client.ours, server.ours));
  EXPECT_EQ(handler, nullptr);  // the loop owns it now
  EXPECT_EQ(RecvAll(server.theirs, 6), "early ");
  ASSERT_EQ(send(client.theirs, "late", 4, 0), 4);
  EXPECT_EQ(RecvAll(server.theirs, 4), "late");

  // The client closes: the handler says kDone and the loop destroys it.
  close(client.theirs);
  client.theirs = -1;
  EXPECT_TRUE(Eventually([&] { return probe.destroyed.load(); }));
  loop.Stop();
  EXPECT_EQ(probe.stops.load(), 0);
}

TEST(RelayLoopTest, StopHandsOpenConnectionsOnStop) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  SocketPair client, server;
  Probe probe;
  auto handler = NewForwarder(client.ours, server.ours, &probe);
  ASSERT_TRUE(loop.Adopt(&handler, client.ours, server.ours));
  EXPECT_TRUE(Eventually([&] { return probe.calls.load() > 0; }));  // registered
  loop.Stop();
  EXPECT_EQ(probe.stops.load(), 1);
  EXPECT_TRUE(probe.destroyed.load());
  // Its sockets are closed: the peer reads EOF.
  char c;
  EXPECT_EQ(recv(client.theirs, &c, 1, MSG_DONTWAIT), 0);
  // A stopped loop adopts nothing: the caller gets the handler back, with its sockets.
  SocketPair c2, s2;
  Probe probe2;
  auto refused = NewForwarder(c2.ours, s2.ours, &probe2);
  EXPECT_FALSE(loop.Adopt(&refused, c2.ours, s2.ours));
  EXPECT_NE(refused, nullptr);
  EXPECT_EQ(probe2.stops.load(), 0);
}

TEST(RelayLoopTest, AnUnstartedLoopHandsTheHandlerBack) {
  RelayLoop loop;
  SocketPair c, s;
  Probe probe;
  auto handler = NewForwarder(c.ours, s.ours, &probe);
  EXPECT_FALSE(loop.Adopt(&handler, c.ours, s.ours));
  ASSERT_NE(handler, nullptr);
  handler.reset();
  EXPECT_TRUE(probe.destroyed.load());
}

// Answers kMore a number of times, then kWait: the loop calls it again (events 0) without a
// new event.
class Busy : public RelayHandler {
 public:
  Busy(int fd, std::atomic<int>* again) : fd_(fd), again_(again) {}
  ~Busy() override { close(fd_); }
  Result OnReady(Side, uint32_t events) override {
    if (events == 0) ++*again_;
    return *again_ < 5 ? Result::kMore : Result::kWait;
  }
  void OnStop(Stop) override {}

 private:
  int fd_;
  std::atomic<int>* again_;
};

TEST(RelayLoopTest, MoreMeansCalledAgainWithoutAnEvent) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  SocketPair a, b;
  std::atomic<int> again{0};
  std::unique_ptr<RelayHandler> busy = std::make_unique<Busy>(a.ours, &again);
  ASSERT_TRUE(loop.Adopt(&busy, a.ours, b.ours));
  EXPECT_TRUE(Eventually([&] { return again.load() >= 5; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(again.load(), 5);  // kWait: no more calls until an event
  loop.Stop();
  close(b.ours);
}

// Finishes itself at the first Recheck() once `revoked` is set; counts the rechecks.
class Revocable : public RelayHandler {
 public:
  Revocable(int client, int server, std::atomic<bool>* revoked, std::atomic<int>* rechecks,
            Probe* probe)
      : fds_{client, server}, revoked_(revoked), rechecks_(rechecks), probe_(probe) {}
  ~Revocable() override {
    CloseFds();
    probe_->destroyed = true;
  }
  Result OnReady(Side, uint32_t) override {
    probe_->calls++;
    return Result::kWait;
  }
  void OnStop(Stop) override {
    probe_->stops++;
    CloseFds();
  }
  Result Recheck() override {
    ++*rechecks_;
    if (!*revoked_) return Result::kWait;
    CloseFds();
    return Result::kDone;
  }

 private:
  void CloseFds() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  int fds_[2];
  std::atomic<bool>* revoked_;
  std::atomic<int>* rechecks_;
  Probe* probe_;
};

TEST(RelayLoopTest, RecheckAllAsksEveryIdleConnectionAndFinishesThoseThatAreDone) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  SocketPair c1, s1, c2, s2;
  std::atomic<bool> keep{false}, revoke{false};
  std::atomic<int> rechecks1{0}, rechecks2{0};
  Probe p1, p2;
  std::unique_ptr<RelayHandler> h1 =
      std::make_unique<Revocable>(c1.ours, s1.ours, &keep, &rechecks1, &p1);
  std::unique_ptr<RelayHandler> h2 =
      std::make_unique<Revocable>(c2.ours, s2.ours, &revoke, &rechecks2, &p2);
  ASSERT_TRUE(loop.Adopt(&h1, c1.ours, s1.ours));
  ASSERT_TRUE(loop.Adopt(&h2, c2.ours, s2.ours));
  // Each is rechecked as it is adopted, then waits: idle, no event calls it again.
  EXPECT_TRUE(Eventually([&] { return p1.calls.load() > 0 && p2.calls.load() > 0; }));
  EXPECT_EQ(rechecks1.load(), 1);
  EXPECT_EQ(rechecks2.load(), 1);
  revoke = true;
  loop.RecheckAll();
  EXPECT_TRUE(Eventually([&] { return p2.destroyed.load(); }));
  EXPECT_EQ(rechecks1.load(), 2);
  EXPECT_FALSE(p1.destroyed.load());
  char c;
  EXPECT_EQ(recv(c2.theirs, &c, 1, MSG_DONTWAIT), 0) << "its sockets are closed";
  loop.Stop();
  EXPECT_EQ(p1.stops.load(), 1);
  EXPECT_EQ(p2.stops.load(), 0);
  loop.RecheckAll();  // a stopped loop: nothing, and no crash
}

TEST(RelayLoopTest, AConnectionAdoptedAfterRecheckAllLooksForItself) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  loop.RecheckAll();
  SocketPair c, s;
  std::atomic<bool> revoked{true};
  std::atomic<int> rechecks{0};
  Probe probe;
  std::unique_ptr<RelayHandler> h =
      std::make_unique<Revocable>(c.ours, s.ours, &revoked, &rechecks, &probe);
  ASSERT_TRUE(loop.Adopt(&h, c.ours, s.ours));
  EXPECT_TRUE(Eventually([&] { return probe.destroyed.load(); }));
  EXPECT_EQ(probe.calls.load(), 0) << "finished before its sockets were watched";
  EXPECT_EQ(rechecks.load(), 1);
  loop.Stop();
}

}  // namespace
}  // namespace drawbridge::net
