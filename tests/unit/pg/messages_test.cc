#include "pg/messages.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "test_util.h"

namespace drawbridge::pg {
namespace {

using testutil::Cat;
using testutil::Hex;
using testutil::Str;

// The fields of an ErrorResponse by code, read independently of ParseErrorBody so that 'S' and
// 'V' can be told apart. Also checks the framing: 'E', then a length that counts itself and the
// body but not the type byte (docs/protocol.md, "ErrorResponse").
std::map<char, std::string> RawErrorFields(const Bytes& msg) {
  std::map<char, std::string> fields;
  EXPECT_GE(msg.size(), 6u);
  if (msg.size() < 6) return fields;
  EXPECT_EQ(msg[0], 'E');
  EXPECT_EQ(base::LoadU32(msg.data() + 1), msg.size() - 1);
  EXPECT_EQ(msg.back(), 0);
  size_t i = 5;
  while (i < msg.size() && msg[i] != 0) {
    char code = static_cast<char>(msg[i++]);
    std::string value;
    while (i < msg.size() && msg[i] != 0) value.push_back(static_cast<char>(msg[i++]));
    ++i;
    fields[code] = value;
  }
  EXPECT_EQ(i + 1, msg.size()) << "exactly one terminating zero after the last field";
  return fields;
}

ByteSpan Body(const Bytes& typed_message) { return ByteSpan(typed_message).subspan(5); }

// docs/protocol.md, "ErrorResponse": FATAL 28000 "SSL/TLS is required on this port", 61 bytes.
TEST(ErrorResponseTest, MatchesTheWorkedExampleByteForByte) {
  Bytes expected =
      Hex("45 00 00 00 3c 53 46 41 54 41 4c 00 56 46 41 54"
          "41 4c 00 43 32 38 30 30 30 00 4d 53 53 4c 2f 54"
          "4c 53 20 69 73 20 72 65 71 75 69 72 65 64 20 6f"
          "6e 20 74 68 69 73 20 70 6f 72 74 00 00");
  Bytes got = BuildFatal(sqlstate::kInvalidAuthorization, "SSL/TLS is required on this port");
  EXPECT_EQ(testutil::ToHex(got), testutil::ToHex(expected));
  EXPECT_EQ(got.size(), 61u);
}

TEST(ErrorResponseTest, LengthExcludesTheTypeByte) {
  Bytes too_many = BuildFatal(sqlstate::kTooManyConnections, "sorry, too many clients already");
  EXPECT_EQ(too_many.size(), 60u);
  EXPECT_EQ(Bytes(too_many.begin(), too_many.begin() + 5), Hex("45 00 00 00 3b"));

  Bytes unsupported = BuildFatal(sqlstate::kFeatureNotSupported,
                                 "unsupported frontend protocol 4.0: server supports 3.0 to 3.2");
  EXPECT_EQ(unsupported.size(), 90u);
  EXPECT_EQ(Bytes(unsupported.begin(), unsupported.begin() + 5), Hex("45 00 00 00 59"));

  // stunnel's hard-coded packet, built here without 'V': 62 bytes, length 61.
  Bytes stunnel = Cat({Hex("45 00 00 00 3d"), Str("SERROR"), Hex("00"), Str("CXX000"), Hex("00"),
                       Str("MSSL expected but not requested by client"), Hex("00 00")});
  EXPECT_EQ(stunnel.size(), 62u);
  auto f = ParseErrorBody(Body(stunnel));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->severity, "ERROR") << "'S' stands in when 'V' is missing";
  EXPECT_EQ(f->sqlstate, "XX000");
}

TEST(ErrorResponseTest, DetailAndHintAreOptionalFields) {
  Bytes plain = BuildFatal("08P01", "m");
  auto raw = RawErrorFields(plain);
  EXPECT_EQ(raw.count('D'), 0u);
  EXPECT_EQ(raw.count('H'), 0u);

  Bytes full = BuildErrorResponse("ERROR", "42P01", "msg", "the detail", "the hint");
  raw = RawErrorFields(full);
  EXPECT_EQ(raw['S'], "ERROR");
  EXPECT_EQ(raw['V'], "ERROR");
  EXPECT_EQ(raw['C'], "42P01");
  EXPECT_EQ(raw['M'], "msg");
  EXPECT_EQ(raw['D'], "the detail");
  EXPECT_EQ(raw['H'], "the hint");
  auto f = ParseErrorBody(Body(full));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->severity, "ERROR");
  EXPECT_EQ(f->sqlstate, "42P01");
  EXPECT_EQ(f->message, "msg");
  EXPECT_EQ(f->detail, "the detail");
  EXPECT_EQ(f->hint, "the hint");
}

TEST(ErrorResponseTest, UnencryptedAfterSslUsesPostgresWording) {
  Bytes e = BuildUnencryptedAfterSslError();
  auto raw = RawErrorFields(e);
  EXPECT_EQ(raw['S'], "FATAL");
  EXPECT_EQ(raw['V'], "FATAL");
  EXPECT_EQ(raw['C'], "08P01");
  EXPECT_EQ(raw['M'], "received unencrypted data after SSL request");
  EXPECT_NE(raw['D'].find("man-in-the-middle"), std::string::npos);
}

TEST(ParseErrorBodyTest, PrefersVAndIgnoresUnknownFields) {
  Bytes body =
      Cat({Str("SFEHLER"), Hex("00"), Str("VERROR"), Hex("00"), Str("P12"), Hex("00"),
           Str("C42601"), Hex("00"), Str("Msyntax"), Hex("00"), Str("Rscanner.l"), Hex("00 00")});
  auto f = ParseErrorBody(body);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->severity, "ERROR");
  EXPECT_EQ(f->sqlstate, "42601");
  EXPECT_EQ(f->message, "syntax");
}

TEST(ParseErrorBodyTest, EveryStrictPrefixIsRejected) {
  Bytes msg = BuildErrorResponse("FATAL", "28000", "no", "d", "h");
  ByteSpan body = Body(msg);
  ASSERT_TRUE(ParseErrorBody(body));
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(ParseErrorBody(body.first(n))) << "prefix of " << n << " bytes";
  }
}

TEST(ParseErrorBodyTest, EmptyFieldListParses) {
  Bytes body = Hex("00");
  auto f = ParseErrorBody(body);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->severity, "");
}

TEST(NegotiateProtocolVersionTest, MatchesTheWorkedExample) {
  // docs/protocol.md, "StartupMessage and protocol versions": 3.0 only, _pq_.foo unknown.
  Bytes expected = Hex("76 00 00 00 15 00 03 00 00 00 00 00 01 5f 70 71 5f 2e 66 6f 6f 00");
  EXPECT_EQ(BuildNegotiateProtocolVersion(0, {"_pq_.foo"}), expected);
  EXPECT_EQ(BuildNegotiateProtocolVersion(2, {}), Hex("76 00 00 00 0c 00 03 00 02 00 00 00 00"));
}

TEST(StartupMessageTest, BuildsTheWorkedExample) {
  // docs/protocol.md, "StartupMessage and protocol versions": 3.0, user=alice, database=app.
  Bytes expected = Cat({Hex("00 00 00 21 00 03 00 00"), Str("user"), Hex("00"), Str("alice"),
                        Hex("00"), Str("database"), Hex("00"), Str("app"), Hex("00 00")});
  StartupMessage msg;
  msg.params = {{"user", "alice"}, {"database", "app"}};
  EXPECT_EQ(BuildStartupMessage(msg), expected);
}

TEST(StartupMessageTest, ParseRoundTripsAndFinds) {
  StartupMessage msg;
  msg.version = ProtocolVersion(3, 2);
  msg.params = {{"user", "bob"}, {"options", "-c x=1"}, {"_pq_.y", ""}};
  Bytes wire = BuildStartupMessage(msg);
  std::string error;
  auto parsed = ParseStartupBody(ByteSpan(wire).subspan(8), base::LoadU32(wire.data() + 4), &error);
  ASSERT_TRUE(parsed) << error;
  EXPECT_EQ(parsed->version, 196610u);
  EXPECT_EQ(parsed->params, msg.params);
  ASSERT_NE(parsed->Find("options"), nullptr);
  EXPECT_EQ(*parsed->Find("options"), "-c x=1");
  EXPECT_EQ(parsed->Find("database"), nullptr);
}

TEST(StartupMessageTest, EveryStrictPrefixIsRejected) {
  StartupMessage msg;
  msg.params = {{"user", "alice"}, {"database", "app"}};
  Bytes wire = BuildStartupMessage(msg);
  ByteSpan body = ByteSpan(wire).subspan(8);
  for (size_t n = 0; n < body.size(); ++n) {
    std::string error;
    auto parsed = ParseStartupBody(body.first(n), kProtocol30, &error);
    // A prefix that happens to end on a complete pair plus a zero is a valid, shorter packet;
    // anything else must be a layout error.
    if (parsed) {
      EXPECT_EQ(body[n - 1], 0);
      continue;
    }
    EXPECT_NE(error.find("invalid startup packet layout"), std::string::npos) << n;
  }
}

TEST(StartupMessageTest, LayoutErrors) {
  std::string error;
  // "user\0alice\0" ends in a zero, but that zero closes the value: taken as the list's
  // terminator it leaves "alice" without a NUL.
  Bytes no_terminator = Cat({Str("user"), Hex("00"), Str("alice"), Hex("00")});
  Bytes missing_value = Cat({Str("user"), Hex("00 00")});
  Bytes empty_name = Cat({Hex("00"), Str("x"), Hex("00 00")});
  Bytes unterminated = Str("user");
  EXPECT_FALSE(ParseStartupBody(Bytes{}, kProtocol30, &error));
  EXPECT_EQ(error, "invalid startup packet layout: expected terminator as last byte");
  EXPECT_FALSE(ParseStartupBody(unterminated, kProtocol30, &error));
  EXPECT_FALSE(ParseStartupBody(missing_value, kProtocol30, &error));
  EXPECT_FALSE(ParseStartupBody(empty_name, kProtocol30, &error));
  EXPECT_EQ(error, "invalid startup packet layout: empty parameter name");
  EXPECT_FALSE(ParseStartupBody(no_terminator, kProtocol30, &error));
  // Only the terminator: a valid packet without parameters (the caller refuses the missing user).
  auto none = ParseStartupBody(Hex("00"), kProtocol30, &error);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->params.empty());
}

TEST(CancelRequestTest, MatchesTheWorkedExample) {
  // docs/protocol.md, "CancelRequest and BackendKeyData".
  CancelKey key{0x1234, Hex("de ad be ef")};
  EXPECT_EQ(BuildCancelRequest(key), Hex("00 00 00 10 04 d2 16 2e 00 00 12 34 de ad be ef"));
  CancelKey long_key{7, Bytes(32, 0xab)};
  Bytes wire = BuildCancelRequest(long_key);
  EXPECT_EQ(wire.size(), 12u + 32u);
  EXPECT_EQ(base::LoadU32(wire.data()), 44u);
}

TEST(BackendKeyDataTest, BuildAndParse) {
  CancelKey key{4242, Hex("01 02 03 04")};
  Bytes wire = BuildBackendKeyData(key);
  EXPECT_EQ(wire, Hex("4b 00 00 00 0c 00 00 10 92 01 02 03 04"));
  auto parsed = ParseBackendKeyDataBody(Body(wire));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, key);
}

TEST(BackendKeyDataTest, KeyLengthBounds) {
  for (size_t len : {size_t{1}, size_t{4}, size_t{32}, size_t{256}}) {
    CancelKey key{1, Bytes(len, 0x5a)};
    auto parsed = ParseBackendKeyDataBody(Body(BuildBackendKeyData(key)));
    ASSERT_TRUE(parsed) << len;
    EXPECT_EQ(parsed->secret.size(), len);
  }
  EXPECT_FALSE(ParseBackendKeyDataBody(Bytes(4, 0))) << "a pid without a key";
  EXPECT_FALSE(ParseBackendKeyDataBody(Bytes(4 + 257, 0)));
  for (size_t n = 0; n < 5; ++n) EXPECT_FALSE(ParseBackendKeyDataBody(Bytes(n, 1))) << n;
}

TEST(ParameterStatusTest, ParsesOnePair) {
  Bytes body = Cat({Str("server_version"), Hex("00"), Str("15.4 (Debian 15.4-1)"), Hex("00")});
  auto p = ParseParameterStatusBody(body);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->first, "server_version");
  EXPECT_EQ(p->second, "15.4 (Debian 15.4-1)");
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(ParseParameterStatusBody(ByteSpan(body).first(n))) << n;
  }
  Bytes trailing = Cat({body, Hex("00")});
  EXPECT_FALSE(ParseParameterStatusBody(trailing));
}

TEST(ParameterStatusTest, EmptySpanIsRejected) {
  // A default span has a null data pointer; the parser must not pass it to memchr.
  EXPECT_FALSE(ParseParameterStatusBody(ByteSpan{}));
  std::string_view s;
  base::ByteReader r{ByteSpan{}};
  EXPECT_FALSE(r.ReadCString(&s));
}

// Three messages as a server sends them: a DataRow (body 6), an ErrorResponse, ReadyForQuery.
Bytes ThreeMessages() {
  Bytes d = {'D', 0, 0, 0, 10, 0, 1, 0, 0, 0, 0};
  Bytes c = BuildErrorResponse("ERROR", "42P01", "no such table");
  Bytes z = {'Z', 0, 0, 0, 5, 'I'};
  Bytes all;
  all.reserve(d.size() + c.size() + z.size());  // GCC 12 -O3 warns falsely on growing copies
  for (const Bytes* part : {&d, &c, &z}) all.insert(all.end(), part->begin(), part->end());
  return all;
}

TEST(MessageCursorTest, BoundariesInOneChunk) {
  MessageCursor cur;
  EXPECT_TRUE(cur.at_boundary());
  cur.Advance(ThreeMessages());
  EXPECT_TRUE(cur.at_boundary());
}

// The stream cut into chunks of every size: after each chunk the cursor is at a boundary
// exactly when the chunk ended a message, however the headers and bodies were cut.
TEST(MessageCursorTest, BoundariesAcrossEverySplit) {
  Bytes all = ThreeMessages();
  std::set<size_t> ends = {11, all.size() - 6, all.size()};
  for (size_t chunk = 1; chunk <= all.size(); ++chunk) {
    MessageCursor cur;
    for (size_t at = 0; at < all.size(); at += chunk) {
      size_t n = std::min(chunk, all.size() - at);
      cur.Advance(ByteSpan(all).subspan(at, n));
      EXPECT_EQ(cur.at_boundary(), ends.count(at + n) == 1)
          << "chunk " << chunk << " to " << at + n;
    }
  }
}

TEST(MessageCursorTest, LengthBelowFourLosesTheBoundaryForGood) {
  MessageCursor cur;
  cur.Advance(Bytes{'X', 0, 0, 0, 3});
  EXPECT_FALSE(cur.at_boundary());
  cur.Advance(Bytes{'Z', 0, 0, 0, 5, 'I'});
  EXPECT_FALSE(cur.at_boundary());
}

TEST(MessageCursorTest, LargeLengthIsSkippedWithoutBuffering) {
  MessageCursor cur;
  cur.Advance(Bytes{'d', 0x7f, 0xff, 0xff, 0xff});  // a 2 GiB CopyData, of which none comes
  EXPECT_FALSE(cur.at_boundary());
  Bytes mib(1 << 20, 'x');
  cur.Advance(mib);
  EXPECT_FALSE(cur.at_boundary());
}

}  // namespace
}  // namespace drawbridge::pg
