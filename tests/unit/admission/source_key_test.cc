#include "admission/source_key.h"

#include <gtest/gtest.h>

namespace drawbridge::admission {
namespace {

TEST(SourceKeyTest, AnIpv4AddressIsItsOwnSource) {
  EXPECT_EQ(SourceKey("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(SourceKey("127.0.0.1"), "127.0.0.1");
  EXPECT_NE(SourceIdOf("192.0.2.7"), SourceIdOf("192.0.2.8"));
}

TEST(SourceKeyTest, AnIpv4MappedAddressIsTheIpv4Address) {
  EXPECT_EQ(SourceKey("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(SourceKey("::ffff:c000:0207"), "192.0.2.7");
  EXPECT_EQ(SourceIdOf("::ffff:192.0.2.7"), SourceIdOf("192.0.2.7"));
}

TEST(SourceKeyTest, Ipv6CountsPerSlash64) {
  EXPECT_EQ(SourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(SourceKey("2001:0db8:0001:0002::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(SourceIdOf("2001:db8:1:2::1"), SourceIdOf("2001:db8:1:2:ffff:ffff:ffff:ffff"));
  // The next /64, and one that differs only in its first 48 bits, are other sources.
  EXPECT_EQ(SourceKey("2001:db8:1:3::1"), "2001:db8:1:3::/64");
  EXPECT_NE(SourceIdOf("2001:db8:1:2::1"), SourceIdOf("2001:db8:1:3::1"));
  EXPECT_NE(SourceIdOf("2001:db8:1:2::1"), SourceIdOf("2001:db9:1:2::1"));
  EXPECT_EQ(SourceKey("::1"), "::/64");
}

TEST(SourceKeyTest, Ipv4AndIpv6NeverShareAKey) {
  EXPECT_NE(SourceIdOf("0.0.0.0"), SourceIdOf("::"));
  EXPECT_NE(SourceIdOf("0.0.0.1"), SourceIdOf("::1"));
  EXPECT_NE(SourceIdOf("255.255.255.255"), SourceIdOf("ffff:ffff:ffff:ffff::"));
  EXPECT_NE(SourceIdOf("ffff:ffff:ffff:ffff::1"), SourceId::Unparsable());
}

TEST(SourceKeyTest, AnUnparsableAddressIsKeptAsGiven) {
  EXPECT_EQ(SourceKey("not an address"), "not an address");
  EXPECT_EQ(SourceKey(""), "");
  EXPECT_EQ(SourceIdOf("not an address"), SourceId::Unparsable());
  EXPECT_EQ(SourceIdOf(std::string(200, '1')), SourceId::Unparsable());
  EXPECT_EQ(SourceIdOf("1.2.3.4 "), SourceId::Unparsable());
}

TEST(SourceKeyTest, TheHashDependsOnTheSeed) {
  SourceId a = SourceIdOf("192.0.2.7");
  EXPECT_EQ(HashSourceId(a, 1), HashSourceId(a, 1));
  EXPECT_NE(HashSourceId(a, 1), HashSourceId(a, 2));
  EXPECT_NE(HashSourceId(a, 1), HashSourceId(SourceIdOf("192.0.2.8"), 1));
}

}  // namespace
}  // namespace drawbridge::admission
