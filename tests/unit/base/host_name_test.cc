#include "base/host_name.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace drawbridge::base
