#include "base/utc_time.h"

#include <gtest/gtest.h>

namespace drawbridge::base {
namespace {

TEST(UtcTextTest, WritesRfc3339InUtcToTheSecond) {
  EXPECT_EQ(UtcText(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(UtcText(1764669600), "2025-12-02T10:00:00Z");
}

}  // namespace
}  // namespace drawbridge::base
