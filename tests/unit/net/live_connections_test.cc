#include "net/live_connections.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace drawbridge::net {
namespace {

TEST(LiveConnectionsTest, WhenEmptyRunsAtOnceIfNothingIsOpen) {
  LiveConnections live;
  int calls = 0;
  live.WhenEmpty([&] { ++calls; });
  EXPECT_EQ(calls, 1);
}

TEST(LiveConnectionsTest, WhenEmptyRunsOnceWhenTheLastLeaves) {
  LiveConnections live;
  live.Enter();
  live.Enter();
  int calls = 0;
  live.WhenEmpty([&] { ++calls; });
  live.Leave();
  EXPECT_EQ(calls, 0);
  live.Leave();
  EXPECT_EQ(calls, 1);
  live.Enter();
  live.Leave();
  EXPECT_EQ(calls, 1);  // once: the drain asked for one notice
}

TEST(LiveConnectionsTest, AnEmptyFunctionCancels) {
  LiveConnections live;
  live.Enter();
  int calls = 0;
  live.WhenEmpty([&] { ++calls; });
  live.WhenEmpty(nullptr);
  live.Leave();
  EXPECT_EQ(calls, 0);
}

TEST(LiveConnectionsTest, ConnectionsLeavingOnManyThreadsNotifyOnce) {
  LiveConnections live;
  constexpr int kThreads = 4, kEach = 500;
  for (int i = 0; i < kThreads * kEach; ++i) live.Enter();
  std::atomic<int> calls{0};
  live.WhenEmpty([&] { calls++; });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) live.Leave();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(live.count(), 0u);
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace drawbridge::net
