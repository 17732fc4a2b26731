// Address pools: prefix lengths are parsed without exceptions, and bad ones are named.
#include "control/ip_pool.h"

#include <gtest/gtest.h>

#include <string>

namespace drawbridge::control {
namespace {

TEST(IpPoolTest, PrefixLengthsAreCheckedWithoutThrowing) {
  EXPECT_EQ(IpPool::Parse("127.0.10.0/24")->prefix_length(), 24);
  EXPECT_EQ(IpPool::Parse("127.0.10.0/024")->prefix_length(), 24);
  for (const char* bad : {"127.0.10.0/99999999999", "127.0.10.0/-24", "127.0.10.0/+24",
                          "127.0.10.0/", "127.0.10.0/0024", "127.0.10.0/2 4"}) {
    auto p = IpPool::Parse(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.code(), base::StatusCode::kInvalidArgument);
    EXPECT_EQ(p.message(), std::string("pool \"") + bad + "\": bad prefix length");
  }
  EXPECT_EQ(IpPool::Parse("127.0.10.0/31").message(),
            "pool \"127.0.10.0/31\": prefix length must be between 8 and 30");
  EXPECT_EQ(IpPool::Parse("127.0.10.0").code(), base::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace drawbridge::control
