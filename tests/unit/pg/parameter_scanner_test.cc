#include "pg/parameter_scanner.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "pg/messages.h"
#include "test_util.h"

namespace drawbridge::pg {
namespace {

using testutil::Cat;
using testutil::Hex;
using testutil::Str;

Bytes Message(char type, const Bytes& body) {
  Bytes out{static_cast<uint8_t>(type), 0, 0, 0, 0};
  base::StoreU32(out.data() + 1, static_cast<uint32_t>(4 + body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes ParameterStatus(std::string_view name, std::string_view value) {
  return Message('S', Cat({Str(name), Hex("00"), Str(value), Hex("00")}));
}

const Bytes kReady = Message('Z', Str("I"));

// What a live session carries: rows, a SET's report, a promotion's report in the middle.
Bytes LiveStream() {
  return Cat({Message('T', Bytes(30, 1)), Message('D', Bytes(500, 2)),
              Message('C', Str("SELECT 1")), kReady, ParameterStatus("application_name", "psql"),
              kReady, ParameterStatus("in_hot_standby", "off"), Message('D', Bytes(70000, 3)),
              kReady});
}

TEST(ParameterScannerTest, ReportsAPromotionInALiveSession) {
  ParameterScanner s;
  EXPECT_FALSE(s.Advance(Cat({Message('D', Bytes(10, 1)), kReady})));
  EXPECT_FALSE(s.in_hot_standby());
  EXPECT_TRUE(s.at_boundary());
  EXPECT_TRUE(s.Advance(ParameterStatus("in_hot_standby", "off")));
  ASSERT_TRUE(s.in_hot_standby());
  EXPECT_FALSE(*s.in_hot_standby());
  EXPECT_TRUE(s.Advance(ParameterStatus("in_hot_standby", "on")));
  EXPECT_TRUE(*s.in_hot_standby());
  EXPECT_FALSE(s.Advance(kReady));
  EXPECT_TRUE(*s.in_hot_standby()) << "kept until the next report";
}

// The verdict and the boundaries must not depend on how the stream is split into reads.
TEST(ParameterScannerTest, SameVerdictWhateverTheSplit) {
  Bytes in = LiveStream();
  for (size_t split = 0; split <= in.size(); split += (split < 700 ? 1 : 997)) {
    ParameterScanner s;
    bool first = s.Advance(ByteSpan(in).first(split));
    bool second = s.Advance(ByteSpan(in).subspan(split));
    EXPECT_TRUE(first || second) << split;
    ASSERT_TRUE(s.in_hot_standby()) << split;
    EXPECT_FALSE(*s.in_hot_standby()) << split;
    EXPECT_TRUE(s.at_boundary()) << split;
  }
}

TEST(ParameterScannerTest, OneByteAtATime) {
  Bytes in = LiveStream();
  ParameterScanner s;
  int reports = 0;
  for (uint8_t b : in) reports += s.Advance(ByteSpan(&b, 1)) ? 1 : 0;
  EXPECT_EQ(reports, 1);
  EXPECT_FALSE(*s.in_hot_standby());
  EXPECT_TRUE(s.at_boundary());
}

TEST(ParameterScannerTest, KnowsTheBoundaries) {
  ParameterScanner s;
  Bytes row = Message('D', Bytes(100, 'x'));
  EXPECT_TRUE(s.at_boundary());
  s.Advance(ByteSpan(row).first(3));
  EXPECT_FALSE(s.at_boundary()) << "inside a header";
  s.Advance(ByteSpan(row).subspan(3, 50));
  EXPECT_FALSE(s.at_boundary()) << "inside a body";
  s.Advance(ByteSpan(row).subspan(53));
  EXPECT_TRUE(s.at_boundary());
  s.Advance(Message('I', {}));  // an empty message
  EXPECT_TRUE(s.at_boundary());
}

TEST(ParameterScannerTest, OtherParametersAndOddValuesSayNothing) {
  ParameterScanner s;
  EXPECT_FALSE(s.Advance(ParameterStatus("in_hot_standbyx", "on")));
  EXPECT_FALSE(s.Advance(ParameterStatus("in_hot_standby", "yes")));
  EXPECT_FALSE(s.Advance(ParameterStatus("TimeZone", "on")));
  EXPECT_FALSE(s.Advance(Message('S', Cat({Str("in_hot_standby"), Hex("00"), Str("on")}))))
      << "no terminating NUL";
  // A long ParameterStatus is skipped by its length, not read.
  EXPECT_FALSE(s.Advance(ParameterStatus("in_hot_standby", std::string(100, 'o'))));
  // Another message type with the same body is not a report.
  EXPECT_FALSE(
      s.Advance(Message('N', Cat({Str("in_hot_standby"), Hex("00"), Str("on"), Hex("00")}))));
  EXPECT_FALSE(s.in_hot_standby());
  EXPECT_TRUE(s.at_boundary());
  EXPECT_TRUE(s.Advance(ParameterStatus("in_hot_standby", "on")));
}

TEST(ParameterScannerTest, ALengthBelowFourEndsWhatIsKnown) {
  ParameterScanner s;
  EXPECT_FALSE(s.Advance(Cat({Hex("53 00 00 00 02"), ParameterStatus("in_hot_standby", "off")})));
  EXPECT_FALSE(s.in_hot_standby());
  EXPECT_FALSE(s.at_boundary());
  EXPECT_FALSE(s.Advance(ParameterStatus("in_hot_standby", "off")));
}

}  // namespace
}  // namespace drawbridge::pg
