#include "base/logfmt.h"

#include <gtest/gtest.h>

namespace drawbridge::base {
namespace {

TEST(LogfmtValue, PlainValuesStandAsTheyAre) {
  EXPECT_EQ(LogfmtValue("postgres"), "postgres");
  EXPECT_EQ(LogfmtValue("mydb.drawbridge.test"), "mydb.drawbridge.test");
  EXPECT_EQ(LogfmtValue("jürgen"), "jürgen");  // well-formed UTF-8 is kept
  EXPECT_EQ(LogfmtValue(""), "-");
}

TEST(LogfmtValue, SpacesQuotesAndEqualsAreQuoted) {
  EXPECT_EQ(LogfmtValue("two words"), "\"two words\"");
  EXPECT_EQ(LogfmtValue("a=b"), "\"a=b\"");
  EXPECT_EQ(LogfmtValue("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(LogfmtValue("back\\slash"), "\"back\\\\slash\"");
}

// A client that names itself "x\nconn client=6.6.6.6:1 reason=forged" must not be able to
// write a log line of its own, nor a key of the line it is on.
TEST(LogfmtValue, ControlCharactersCannotStartALine) {
  std::string v = LogfmtValue("x\nconn client=6.6.6.6:1 reason=forged");
  EXPECT_EQ(v, "\"x\\nconn client=6.6.6.6:1 reason=forged\"");
  EXPECT_EQ(v.find('\n'), std::string::npos);
  EXPECT_EQ(LogfmtValue("a\rb"), "\"a\\rb\"");
  EXPECT_EQ(LogfmtValue("a\tb"), "\"a\\tb\"");
  EXPECT_EQ(LogfmtValue(std::string("a\0b", 3)), "\"a\\x00b\"");
  EXPECT_EQ(LogfmtValue("\x1b[31mred"), "\"\\x1b[31mred\"");
  EXPECT_EQ(LogfmtValue("del\x7f"), "\"del\\x7f\"");
}

TEST(LogfmtValue, MalformedUtf8IsEscapedByteByByte) {
  EXPECT_EQ(LogfmtValue("\xff"), "\"\\xff\"");
  EXPECT_EQ(LogfmtValue("a\x80z"), "\"a\\x80z\"");                // stray continuation byte
  EXPECT_EQ(LogfmtValue("\xc3"), "\"\\xc3\"");                    // truncated
  EXPECT_EQ(LogfmtValue("\xc0\xaf"), "\"\\xc0\\xaf\"");           // overlong '/'
  EXPECT_EQ(LogfmtValue("\xed\xa0\x80"), "\"\\xed\\xa0\\x80\"");  // a UTF-16 surrogate
  EXPECT_EQ(LogfmtValue("\xf4\x90\x80\x80"), "\"\\xf4\\x90\\x80\\x80\"");  // above U+10FFFF
  EXPECT_EQ(LogfmtValue("ok \xe2\x82\xac"), "\"ok \xe2\x82\xac\"");        // the euro sign is kept
}

}  // namespace
}  // namespace drawbridge::base
