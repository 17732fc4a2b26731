#include "base/host_name.h"

#include <gtest/gtest.h>

#include <string>

namespace drawbridge::base {
namespace {

TEST(HostName, NormalizeLowersAsciiAndDropsOneRootDot) {
  EXPECT_EQ(NormalizeHost("MyDB.Drawbridge.TEST."), "mydb.drawbridge.test");
  EXPECT_EQ(NormalizeHost("a.b.."), "a.b.");
  EXPECT_EQ(NormalizeHost(""), "");
  EXPECT_EQ(NormalizeHost("."), "");
  // Bytes outside ASCII are left as they are: no locale decides what a host name is.
  EXPECT_EQ(NormalizeHost("\xc3\x89.test"), "\xc3\x89.test");
}

TEST(HostName, SameHostIgnoresCaseAndRootDotButNeverMatchesEmpty) {
  EXPECT_TRUE(SameHost("mydb.drawbridge.test", "MYDB.drawbridge.test."));
  EXPECT_FALSE(SameHost("mydb.drawbridge.test", "mydb.drawbridge.tes"));
  EXPECT_FALSE(SameHost("", ""));
  EXPECT_FALSE(SameHost(".", ""));
}

TEST(HostName, UnderZoneNeedsALabelBoundary) {
  EXPECT_TRUE(UnderZone("other.drawbridge.test", "drawbridge.test"));
  EXPECT_TRUE(UnderZone("A.B.Drawbridge.Test.", "drawbridge.test"));
  EXPECT_FALSE(UnderZone("drawbridge.test", "drawbridge.test"));
  EXPECT_FALSE(UnderZone("evildrawbridge.test", "drawbridge.test"));
  EXPECT_FALSE(UnderZone("x.drawbridge.test", ""));
  EXPECT_FALSE(UnderZone("", "drawbridge.test"));
}

TEST(HostName, IsHostNameTakesDnsNamesOnly) {
  for (const char* good : {"drawbridge.test", "Example.COM.", "localhost", "pg-1.internal",
                           "1password.com", "a.b.c.d.e", "x1"}) {
    EXPECT_TRUE(IsHostName(good)) << good;
  }
  std::string label63(63, 'a'), label64(64, 'a');
  EXPECT_TRUE(IsHostName(label63 + ".test"));
  EXPECT_FALSE(IsHostName(label64 + ".test"));
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  long_name += "test";  // 254 characters
  EXPECT_FALSE(IsHostName(long_name));
  EXPECT_TRUE(IsHostName(long_name.substr(10)));
  for (const char* bad : {"", ".", "BAD DOMAIN", "a..b", ".a", "a..", "-a.test", "a-.test",
                          "a_b.test", "*.test", "999.1.1.1", "10.0.0", "1.2.3.4.5", "x.123",
                          "a.b/c", "caf\xc3\xa9.test", "a:b"}) {
    EXPECT_FALSE(IsHostName(bad)) << bad;
  }
  EXPECT_TRUE(IsHostName("a.")) << "one root dot";
}

}  // namespace
}  // namespace drawbridge::base
