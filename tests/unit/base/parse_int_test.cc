#include "base/parse_int.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace drawbridge::base {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

TEST(ParseIntTest, WholeTextInRange) {
  EXPECT_EQ(*ParseInt("0", 0, 10), 0);
  EXPECT_EQ(*ParseInt("15", 0, kIntMax), 15);
  EXPECT_EQ(*ParseInt("007", 0, 10), 7) << "leading zeros, as std::stoi read them";
  EXPECT_EQ(*ParseInt("-5", -10, 10), -5);
  EXPECT_EQ(*ParseInt("65535", 1, 65535), 65535);
  EXPECT_EQ(*ParseInt("2147483647", 0, kIntMax), kIntMax);
  EXPECT_EQ(*ParseInt("9223372036854775807", 0, std::numeric_limits<int64_t>::max()),
            std::numeric_limits<int64_t>::max());
}

TEST(ParseIntTest, Hexadecimal) {
  EXPECT_EQ(*ParseInt("2f", 0, 255, 16), 0x2f);
  EXPECT_EQ(*ParseInt("FF", 0, 255, 16), 255);
  EXPECT_FALSE(ParseInt("0x1f", 0, 255, 16).ok());
  EXPECT_FALSE(ParseInt("100", 0, 255, 16).ok());
  EXPECT_FALSE(ParseInt("1", 0, 255, 1).ok()) << "no such base";
  EXPECT_FALSE(ParseInt("1", 0, 255, 37).ok()) << "no such base";
}

TEST(ParseIntTest, OutOfRangeIsAnErrorNotAThrow) {
  // std::stoi threw std::out_of_range on these; a request handler let it end the daemon.
  for (const char* text :
       {"99999999999", "2147483648", "99999999999999999999999999", "-99999999999999999999999999"}) {
    auto r = ParseInt(text, 0, kIntMax);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.code(), StatusCode::kInvalidArgument) << text;
    EXPECT_EQ(r.message(), "\"" + std::string(text) + "\" is out of range (0 to 2147483647)");
  }
  EXPECT_EQ(ParseInt("0", 1, 65535).message(), "\"0\" is out of range (1 to 65535)");
  EXPECT_EQ(ParseInt("-1", 0, 10).message(), "\"-1\" is out of range (0 to 10)");
  EXPECT_FALSE(ParseInt("65536", 1, 65535).ok());
}

TEST(ParseIntTest, AnythingButDigitsIsNotANumber) {
  for (const char* text :
       {"", " 1", "1 ", "+1", "1.5", "15abc", "abc", "-", "1e3", "0x10", "\xd9\xa1"}) {
    auto r = ParseInt(text, -100, 100);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.message().find("is not a number"), std::string::npos) << r.message();
  }
  std::string with_nul("1\0", 2);
  EXPECT_FALSE(ParseInt(with_nul, 0, 10).ok()) << "the whole view, not up to a NUL";
}

TEST(ParseIntTest, MessagesQuoteShortAndPrintable) {
  EXPECT_EQ(ParseInt("a\x1b[2Jb", 0, 1).message(), "\"a\\x1b[2Jb\" is not a number");
  std::string huge(100000, '9');
  std::string m = ParseInt(huge, 0, 1).message();
  EXPECT_LT(m.size(), 100u) << m;
  EXPECT_NE(m.find("...\" is out of range"), std::string::npos) << m;
}

TEST(StatusTest, CodesAndMessages) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code(), StatusCode::kOk);
  EXPECT_EQ(Status::InvalidArgument("a").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Status::NotFound("a").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::Conflict("a").code(), StatusCode::kConflict);
  EXPECT_EQ(Status::Unavailable("a").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Status::Internal("a").code(), StatusCode::kInternal);
  EXPECT_FALSE(Status::NotFound("").ok()) << "an empty message is still a failure";
  Status s = Status::NotFound("app \"x\" not found").WithPrefix("listing: ");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "listing: app \"x\" not found");
  EXPECT_EQ(StatusCodeName(StatusCode::kInvalidArgument), "INVALID_ARGUMENT");
}

TEST(StatusTest, ResultIsAValueOrAFailure) {
  Result<int> v = 3;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 3);
  EXPECT_TRUE(v.status().ok()) << "an OK status, not a throw, when there is a value";
  EXPECT_EQ(v.code(), StatusCode::kOk);
  Result<int> e = Status::Conflict("taken");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.code(), StatusCode::kConflict);
  EXPECT_EQ(e.message(), "taken");
  // A programming slip (an OK status as the error) still reads as a failure, never as a value.
  Result<int> slip = Status();
  EXPECT_FALSE(slip.ok());
  EXPECT_EQ(slip.code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace drawbridge::base
