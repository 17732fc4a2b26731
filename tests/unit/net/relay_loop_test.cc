#include "net/relay_loop.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

namespace drawbridge::net {
namespace {

using namespace std::chrono_literals;

// Polls `pred` every millisecond for up to two seconds.
template <typename Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

struct SocketPair {
  int ours = -1, theirs = -1;  // `ours` goes to the loop
  SocketPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0) {
      ours = fds[0];
      theirs = fds[1];
    }
  }
  ~SocketPair() {
    if (theirs >= 0) close(theirs);
  }
};

// Copies what the client side sends to the server side; done when the client side closes.
class Forwarder : public RelayHandler {
 public:
  Forwarder(int client, int server, std::atomic<int>* stops)
      : fds_{client, server}, stops_(stops) {}
  ~Forwarder() override { CloseFds(); }

  Result OnReady(Side side, uint32_t events) override {
    calls++;
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
    ++*stops_;
    CloseFds();
  }

  std::atomic<int> calls{0};

 private:
  void CloseFds() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  int fds_[2];
  bool readable_ = false;
  std::atomic<int>* stops_;
};

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
  std::atomic<int> stops{0};
  // Bytes sent before the loop adopts the sockets still raise the first edge.
  ASSERT_EQ(send(client.theirs, "early ", 6, 0), 6);
  auto handler = std::make_shared<Forwarder>(client.ours, server.ours, &stops);
  std::weak_ptr<Forwarder> weak = handler;
  ASSERT_TRUE(loop.Adopt(std::move(handler), client.ours, server.ours));
  EXPECT_EQ(RecvAll(server.theirs, 6), "early ");
  ASSERT_EQ(send(client.theirs, "late", 4, 0), 4);
  EXPECT_EQ(RecvAll(server.theirs, 4), "late");

  // The client closes: the handler says kDone and the loop drops its reference.
  close(client.theirs);
  client.theirs = -1;
  EXPECT_TRUE(Eventually([&] { return weak.expired(); }));
  loop.Stop();
  EXPECT_EQ(stops.load(), 0);
}

TEST(RelayLoopTest, StopHandsOpenConnectionsOnStop) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  SocketPair client, server;
  std::atomic<int> stops{0};
  auto handler = std::make_shared<Forwarder>(client.ours, server.ours, &stops);
  ASSERT_TRUE(loop.Adopt(handler, client.ours, server.ours));
  EXPECT_TRUE(Eventually([&] { return handler->calls.load() > 0; }));  // registered
  loop.Stop();
  EXPECT_EQ(stops.load(), 1);
  // Its sockets are closed: the peer reads EOF.
  char c;
  EXPECT_EQ(recv(client.theirs, &c, 1, MSG_DONTWAIT), 0);
  // A stopped loop adopts nothing: the caller keeps its sockets.
  SocketPair c2, s2;
  EXPECT_FALSE(loop.Adopt(std::make_shared<Forwarder>(c2.ours, s2.ours, &stops), c2.ours, s2.ours));
}

// Answers kMore a number of times, then kWait: the loop calls it again (events 0) without a
// new event.
class Busy : public RelayHandler {
 public:
  explicit Busy(int fd) : fd_(fd) {}
  ~Busy() override { close(fd_); }
  Result OnReady(Side, uint32_t events) override {
    if (events == 0) again++;
    return again < 5 ? Result::kMore : Result::kWait;
  }
  void OnStop(Stop) override {}
  std::atomic<int> again{0};

 private:
  int fd_;
};

TEST(RelayLoopTest, MoreMeansCalledAgainWithoutAnEvent) {
  RelayLoop loop;
  ASSERT_TRUE(loop.Start().ok());
  SocketPair a, b;
  auto busy = std::make_shared<Busy>(a.ours);
  ASSERT_TRUE(loop.Adopt(busy, a.ours, b.ours));
  EXPECT_TRUE(Eventually([&] { return busy->again.load() >= 5; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(busy->again.load(), 5);  // kWait: no more calls until an event
  loop.Stop();
  close(b.ours);
}

}  // namespace
}  // namespace drawbridge::net
