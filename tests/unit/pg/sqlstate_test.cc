#include "pg/sqlstate.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "pg/messages.h"

namespace drawbridge::pg {
namespace {

using base::StatusCode;

TEST(SqlStateTest, EachCodeHasItsSqlState) {
  EXPECT_EQ(SqlStateFor(StatusCode::kOk), "00000");
  // The codes the edge already sends for these failures, so clients see no change.
  EXPECT_EQ(SqlStateFor(StatusCode::kInvalidArgument), sqlstate::kProtocolViolation);
  EXPECT_EQ(SqlStateFor(StatusCode::kNotFound), sqlstate::kInvalidAuthorization);
  EXPECT_EQ(SqlStateFor(StatusCode::kUnavailable), sqlstate::kConnectionFailure);
  EXPECT_EQ(SqlStateFor(StatusCode::kConflict), "55000");
  EXPECT_EQ(SqlStateFor(StatusCode::kInternal), "XX000");
}

TEST(SqlStateTest, EveryCodeIsFiveCharactersAndFailuresAreNotSuccess) {
  std::set<std::string> seen;
  for (auto code : {StatusCode::kOk, StatusCode::kInvalidArgument, StatusCode::kNotFound,
                    StatusCode::kConflict, StatusCode::kUnavailable, StatusCode::kInternal}) {
    std::string_view s = SqlStateFor(code);
    ASSERT_EQ(s.size(), 5u) << base::StatusCodeName(code);
    for (char c : s) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')) << s;
    if (code != StatusCode::kOk) {
      EXPECT_NE(s.substr(0, 2), "00") << base::StatusCodeName(code);
    }
    seen.insert(std::string(s));
  }
  EXPECT_EQ(seen.size(), 6u) << "one SQLSTATE per code";
  // A value outside the enum (a cast from a newer peer) is an internal error, not a success.
  EXPECT_EQ(SqlStateFor(static_cast<StatusCode>(99)), "XX000");
}

}  // namespace
}  // namespace drawbridge::pg
