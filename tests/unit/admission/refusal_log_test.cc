#include "admission/refusal_log.h"

#include <gtest/gtest.h>

namespace drawbridge::admission {
namespace {

using std::chrono::milliseconds;

TEST(RefusalLogTest, TheFirstRefusalLogsThenOneLinePerInterval) {
  RefusalLog log(milliseconds(1000));
  auto t0 = RefusalLog::Clock::time_point() + std::chrono::hours(1);
  EXPECT_EQ(log.Note(Refusal::kMaxConnections, t0), 1u);
  for (int i = 0; i < 99; ++i) {
    EXPECT_EQ(log.Note(Refusal::kMaxConnections, t0 + milliseconds(i * 10)), 0u);
  }
  // The next line reports the 99 not logged and this one.
  EXPECT_EQ(log.Note(Refusal::kMaxConnections, t0 + milliseconds(1000)), 100u);
  EXPECT_EQ(log.Note(Refusal::kMaxConnections, t0 + milliseconds(1500)), 0u);
  EXPECT_EQ(log.Note(Refusal::kMaxConnections, t0 + milliseconds(2000)), 2u);
}

TEST(RefusalLogTest, ReasonsAreLoggedApart) {
  RefusalLog log(milliseconds(1000));
  auto t0 = RefusalLog::Clock::time_point() + std::chrono::hours(1);
  EXPECT_EQ(log.Note(Refusal::kPerSourceConnections, t0), 1u);
  EXPECT_EQ(log.Note(Refusal::kTlsHandshakeRate, t0), 1u);
  EXPECT_EQ(log.Note(Refusal::kPerSourceConnections, t0), 0u);
  EXPECT_EQ(log.Note(Refusal::kCancelRate, t0), 1u);
}

}  // namespace
}  // namespace drawbridge::admission
