// StartupMachine against docs/protocol.md, "Checklist" and "Startup state machine". Every test
// runs twice: with the input in one Feed() and with one Feed() per byte, and expects the same
// actions.
#include "pg/startup.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "test_util.h"

namespace drawbridge::pg {
namespace {

using Kind = StartupAction::Kind;
using testutil::Cat;
using testutil::Hex;
using testutil::Str;

// docs/protocol.md, "Byte constants".
const Bytes kSslRequest = Hex("00 00 00 08 04 d2 16 2f");
const Bytes kGssEncRequest = Hex("00 00 00 08 04 d2 16 30");
// The first bytes of a TLS 1.3 ClientHello record (record header, handshake header, version,
// part of the random).
const Bytes kClientHello = Hex("16 03 01 00 f8 01 00 00 f4 03 03 5a 6b 7c 8d 9e af b0 c1 d2");
// A Query message a client might pipeline behind its StartupMessage.
const Bytes kQuery = Cat({Hex("51 00 00 00 0d"), Str("select 1"), Hex("00")});

Bytes Startup(uint32_t version, std::vector<std::pair<std::string, std::string>> params) {
  StartupMessage m;
  m.version = version;
  m.params = std::move(params);
  return BuildStartupMessage(m);
}

Bytes AliceStartup() { return Startup(kProtocol30, {{"user", "alice"}, {"database", "app"}}); }

Bytes U32(uint32_t v) {
  Bytes b(4);
  base::StoreU32(b.data(), v);
  return b;
}

enum class Chunking { kWhole, kByteByByte };

struct Outcome {
  std::vector<StartupAction> actions;  // every action but kNeedMore, in order
  // What the caller still holds after the last action: its tls_prefix (kStartTls) or rest
  // (kStartup), followed by the input not yet fed. The same whatever the chunking.
  Bytes tail;
};

// Feeds `input` as the header of startup.h says a caller does: after kReply it calls Feed({});
// it stops at the first action that ends the machine's turn (kStartTls, kRefuse, kCancel,
// kStartup).
Outcome Drive(StartupMachine& m, ByteSpan input, Chunking chunking) {
  Outcome out;
  size_t step = chunking == Chunking::kWhole ? std::max<size_t>(input.size(), 1) : 1;
  size_t pos = 0;
  while (pos < input.size()) {
    size_t n = std::min(step, input.size() - pos);
    StartupAction a = m.Feed(input.subspan(pos, n));
    pos += n;
    while (a.kind == Kind::kReply) {
      out.actions.push_back(a);
      a = m.Feed({});
    }
    if (a.kind == Kind::kNeedMore) continue;
    out.actions.push_back(a);
    if (a.kind == Kind::kStartTls) out.tail = a.tls_prefix;
    if (a.kind == Kind::kStartup) out.tail = a.rest;
    out.tail.insert(out.tail.end(), input.begin() + pos, input.end());
    break;
  }
  return out;
}

// The fields of an ErrorResponse by code ('S' and 'V' apart), after checking its framing.
std::map<char, std::string> ErrorFieldsOf(const Bytes& msg) {
  std::map<char, std::string> fields;
  if (msg.size() < 6 || msg[0] != 'E' || base::LoadU32(msg.data() + 1) != msg.size() - 1) {
    ADD_FAILURE() << "not a framed ErrorResponse: " << testutil::ToHex(msg);
    return fields;
  }
  base::ByteReader r(ByteSpan(msg).subspan(5));
  uint8_t code = 0;
  while (r.ReadU8(&code) && code != 0) {
    std::string_view v;
    if (!r.ReadCString(&v)) break;
    fields[static_cast<char>(code)] = std::string(v);
  }
  EXPECT_FALSE(r.failed());
  EXPECT_EQ(r.remaining(), 0u);
  return fields;
}

// One kRefuse carrying FATAL `sqlstate` with `message` (a prefix of the 'M' field is enough).
void ExpectFatal(const Outcome& o, RefuseReason reason, std::string_view sqlstate,
                 std::string_view message) {
  ASSERT_EQ(o.actions.size(), 1u);
  const StartupAction& a = o.actions[0];
  EXPECT_EQ(a.kind, Kind::kRefuse);
  EXPECT_EQ(a.reason, reason) << RefuseReasonName(a.reason);
  auto raw = ErrorFieldsOf(a.bytes);
  EXPECT_EQ(raw['S'], "FATAL");
  EXPECT_EQ(raw['V'], "FATAL");
  EXPECT_EQ(raw['C'], sqlstate);
  EXPECT_EQ(raw['M'].substr(0, message.size()), message) << raw['M'];
  auto parsed = ParseErrorBody(ByteSpan(a.bytes).subspan(5));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->severity, "FATAL");
  EXPECT_EQ(parsed->sqlstate, sqlstate);
}

// One kRefuse that writes nothing: the peer may not speak PostgreSQL at all.
void ExpectSilentRefusal(const Outcome& o, RefuseReason reason) {
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kRefuse);
  EXPECT_EQ(o.actions[0].reason, reason) << RefuseReasonName(o.actions[0].reason);
  EXPECT_TRUE(o.actions[0].bytes.empty()) << testutil::ToHex(o.actions[0].bytes);
}

class StartupMachineTest : public ::testing::TestWithParam<Chunking> {
 protected:
  Outcome Run(ByteSpan input) { return Drive(machine_, input, GetParam()); }
  Outcome Run(StartupMachine& m, ByteSpan input) { return Drive(m, input, GetParam()); }

  // SSLRequest, 'S', then the handshake as the caller would report it.
  void EnterTls() {
    Outcome o = Run(kSslRequest);
    ASSERT_EQ(o.actions.size(), 1u);
    ASSERT_EQ(o.actions[0].kind, Kind::kStartTls);
    machine_.TlsEstablished();
    ASSERT_TRUE(machine_.in_tls());
  }

  // Feeds an 8-byte negotiation request whose last byte arrives in the same Feed() as
  // `trailing`: at once (kWhole), or after the first seven bytes one by one (kByteByByte).
  StartupAction FeedWithTrailing(const Bytes& request, const Bytes& trailing) {
    if (GetParam() == Chunking::kWhole) return machine_.Feed(Cat({request, trailing}));
    for (size_t i = 0; i + 1 < request.size(); ++i) {
      StartupAction a = machine_.Feed(ByteSpan(request).subspan(i, 1));
      EXPECT_EQ(a.kind, Kind::kNeedMore) << i;
    }
    return machine_.Feed(Cat({ByteSpan(request).last(1), trailing}));
  }

  // After a terminal action the machine ignores input.
  void ExpectFinished() { EXPECT_EQ(machine_.Feed(AliceStartup()).kind, Kind::kNeedMore); }

  StartupMachine machine_;
};

// Checklist row 2: SSLRequest gets one plaintext 'S' and the TLS handshake.
TEST_P(StartupMachineTest, SslRequestStartsTls) {
  Outcome o = Run(kSslRequest);
  ASSERT_EQ(o.actions.size(), 1u);
  const StartupAction& a = o.actions[0];
  EXPECT_EQ(a.kind, Kind::kStartTls);
  EXPECT_EQ(a.bytes, Bytes{'S'});
  EXPECT_FALSE(a.direct_tls);
  EXPECT_TRUE(a.tls_prefix.empty());
  EXPECT_TRUE(o.tail.empty());
  EXPECT_FALSE(machine_.in_tls());
  machine_.TlsEstablished();
  EXPECT_TRUE(machine_.in_tls());
  EXPECT_FALSE(machine_.direct_tls());
}

// Checklist row 2, CVE-2021-23214: plaintext pipelined behind the SSLRequest is refused.
TEST_P(StartupMachineTest, SslRequestWithTrailingBytesInTheSameFeedIsRefused) {
  for (const Bytes& trailing : {kQuery, kClientHello, Hex("00")}) {
    machine_ = StartupMachine();
    Outcome o;
    o.actions.push_back(FeedWithTrailing(kSslRequest, trailing));
    ExpectFatal(o, RefuseReason::kUnencryptedAfterSsl, "08P01",
                "received unencrypted data after SSL request");
    ExpectFinished();
  }
}

// Checklist row 3: GSSENCRequest gets 'N'; an SSLRequest on the same connection is then accepted.
TEST_P(StartupMachineTest, GssEncRequestGetsNThenSslRequestIsAccepted) {
  Outcome o = Run(kGssEncRequest);
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kReply);
  EXPECT_EQ(o.actions[0].bytes, Bytes{'N'});
  EXPECT_TRUE(o.tail.empty());

  o = Run(kSslRequest);
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kStartTls);
  EXPECT_EQ(o.actions[0].bytes, Bytes{'S'});
  machine_.TlsEstablished();

  o = Run(AliceStartup());
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kStartup);
}

TEST_P(StartupMachineTest, PlaintextStartupAfterGssRefusalStillNeedsTls) {
  ASSERT_EQ(Run(kGssEncRequest).actions.size(), 1u);
  ExpectFatal(Run(AliceStartup()), RefuseReason::kTlsRequired, "28000", "SSL/TLS is required");
}

TEST_P(StartupMachineTest, SecondGssEncRequestIsRefused) {
  ASSERT_EQ(Run(kGssEncRequest).actions.size(), 1u);
  ExpectFatal(Run(kGssEncRequest), RefuseReason::kRepeatedNegotiation, "08P01",
              "unexpected GSSAPI encryption request");
  ExpectFinished();
}

TEST_P(StartupMachineTest, GssEncRequestWithTrailingBytesIsRefused) {
  Outcome o;
  o.actions.push_back(FeedWithTrailing(kGssEncRequest, kSslRequest));
  ExpectFatal(o, RefuseReason::kUnencryptedAfterGss, "08P01",
              "received unencrypted data after GSSAPI encryption request");
}

TEST_P(StartupMachineTest, GssEncRequestInsideTlsIsRefused) {
  EnterTls();
  ExpectFatal(Run(kGssEncRequest), RefuseReason::kRepeatedNegotiation, "08P01",
              "unexpected GSSAPI encryption request");
}

TEST_P(StartupMachineTest, SslRequestInsideTlsIsRefused) {
  EnterTls();
  ExpectFatal(Run(kSslRequest), RefuseReason::kRepeatedNegotiation, "08P01",
              "unexpected SSL request");
  ExpectFinished();
}

// Checklist row 1 and "Direct TLS and ALPN": a first byte 0x16 starts TLS directly, with
// nothing written and every byte read so far handed to the TLS engine.
TEST_P(StartupMachineTest, TlsRecordStartsDirectTls) {
  Outcome o = Run(kClientHello);
  ASSERT_EQ(o.actions.size(), 1u);
  const StartupAction& a = o.actions[0];
  EXPECT_EQ(a.kind, Kind::kStartTls);
  EXPECT_TRUE(a.direct_tls);
  EXPECT_TRUE(a.bytes.empty()) << "no 'S' in direct TLS";
  EXPECT_EQ(o.tail, kClientHello);
  if (GetParam() == Chunking::kWhole) {
    EXPECT_EQ(a.tls_prefix, kClientHello);
  }
  EXPECT_TRUE(machine_.direct_tls());

  machine_.TlsEstablished();
  o = Run(AliceStartup());
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kStartup);
}

TEST_P(StartupMachineTest, SslRequestInsideDirectTlsIsRefused) {
  ASSERT_EQ(Run(kClientHello).actions.size(), 1u);
  machine_.TlsEstablished();
  ExpectFatal(Run(kSslRequest), RefuseReason::kRepeatedNegotiation, "08P01",
              "unexpected SSL request");
}

// Checklist row 1: 8 <= len <= 10004, else a silent close.
TEST_P(StartupMachineTest, BadLengthsAreRefusedSilently) {
  for (uint32_t len : {0u, 4u, 7u, 10005u, 0x7fffffffu, 0xffffffffu}) {
    SCOPED_TRACE(len);
    StartupMachine m;
    ExpectSilentRefusal(Run(m, Cat({U32(len), Hex("00 03 00 00")})), RefuseReason::kBadLength);
  }
  StartupMachine http;
  ExpectSilentRefusal(Run(http, Str("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
                      RefuseReason::kBadLength);
}

TEST_P(StartupMachineTest, BadLengthInsideTlsIsRefusedSilently) {
  EnterTls();
  ExpectSilentRefusal(Run(Cat({U32(7), Hex("00 03 00")})), RefuseReason::kBadLength);
}

TEST_P(StartupMachineTest, LengthOf10004IsAcceptedAnd10005IsNot) {
  Bytes base = Startup(kProtocol30, {{"user", "alice"}, {"application_name", ""}});
  Bytes max = Startup(kProtocol30, {{"user", "alice"},
                                    {"application_name", std::string(10004 - base.size(), 'x')}});
  ASSERT_EQ(max.size(), 10004u);
  EnterTls();
  Outcome o = Run(max);
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kStartup);
  EXPECT_EQ(o.actions[0].bytes, max);

  Bytes over = Startup(kProtocol30, {{"user", "alice"},
                                     {"application_name", std::string(10005 - base.size(), 'x')}});
  ASSERT_EQ(over.size(), 10005u);
  StartupMachine plain;
  ExpectSilentRefusal(Run(plain, over), RefuseReason::kBadLength);
  // In plaintext the 10004-byte packet is read, then refused for want of TLS.
  StartupMachine plain_max;
  ExpectFatal(Run(plain_max, max), RefuseReason::kTlsRequired, "28000", "SSL/TLS is required");
}

// Checklist row 5: CancelRequest in plaintext and inside TLS, keys of 1..256 bytes, no reply.
TEST_P(StartupMachineTest, CancelRequestIsForwardedWithItsKey) {
  for (size_t key_len : {size_t{1}, size_t{4}, size_t{32}, size_t{256}}) {
    for (bool tls : {false, true}) {
      SCOPED_TRACE(std::to_string(key_len) + (tls ? " in TLS" : " in plaintext"));
      CancelKey key;
      key.pid = 0x7fff0000u + static_cast<uint32_t>(key_len);
      for (size_t i = 0; i < key_len; ++i) key.secret.push_back(static_cast<uint8_t>(i * 7 + 1));
      machine_ = StartupMachine();
      if (tls) EnterTls();
      Outcome o = Run(BuildCancelRequest(key));
      ASSERT_EQ(o.actions.size(), 1u);
      EXPECT_EQ(o.actions[0].kind, Kind::kCancel);
      EXPECT_EQ(o.actions[0].cancel, key);
      EXPECT_TRUE(o.actions[0].bytes.empty()) << "a cancel is never answered";
      ExpectFinished();
    }
  }
}

TEST_P(StartupMachineTest, CancelRequestExampleFromTheReference) {
  Outcome o = Run(Hex("00 00 00 10 04 d2 16 2e 00 00 12 34 de ad be ef"));
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kCancel);
  EXPECT_EQ(o.actions[0].cancel.pid, 0x1234u);
  EXPECT_EQ(o.actions[0].cancel.secret, Hex("de ad be ef"));
}

TEST_P(StartupMachineTest, CancelRequestWithTrailingTerminateIsStillACancel) {
  // Go clients sent a Terminate on the cancel socket (pgbouncer#928).
  Bytes wire = Cat({BuildCancelRequest({42, Hex("01020304")}), Hex("58 00 00 00 04")});
  Outcome o = Run(wire);
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kCancel);
  EXPECT_EQ(o.actions[0].cancel.pid, 42u);
}

TEST_P(StartupMachineTest, CancelKeyOf0Or257BytesIsRefusedSilently) {
  for (size_t key_len : {size_t{0}, size_t{257}}) {
    SCOPED_TRACE(key_len);
    StartupMachine m;
    ExpectSilentRefusal(Run(m, BuildCancelRequest({1, Bytes(key_len, 0xaa)})),
                        RefuseReason::kBadCancel);
  }
  // Shorter than the pid itself.
  StartupMachine m;
  ExpectSilentRefusal(Run(m, Hex("00 00 00 0a 04 d2 16 2e 00 00")), RefuseReason::kBadCancel);
}

// Checklist row 7: a plaintext StartupMessage on a TLS-only port gets a real FATAL 28000.
TEST_P(StartupMachineTest, PlaintextStartupIsRefusedWith28000) {
  Outcome o = Run(AliceStartup());
  ASSERT_EQ(o.actions.size(), 1u);
  const StartupAction& a = o.actions[0];
  EXPECT_EQ(a.kind, Kind::kRefuse);
  EXPECT_EQ(a.reason, RefuseReason::kTlsRequired);
  auto raw = ErrorFieldsOf(a.bytes);
  EXPECT_EQ(raw['S'], "FATAL");
  EXPECT_EQ(raw['V'], "FATAL");
  EXPECT_EQ(raw['C'], "28000");
  EXPECT_NE(raw['M'].find("SSL/TLS is required"), std::string::npos) << raw['M'];
  EXPECT_NE(raw['M'].find("sslmode=require"), std::string::npos) << raw['M'];
  auto parsed = ParseErrorBody(ByteSpan(a.bytes).subspan(5));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->severity, "FATAL");
  EXPECT_EQ(parsed->sqlstate, "28000");
  EXPECT_EQ(parsed->message, raw['M']);
  ExpectFinished();
}

TEST_P(StartupMachineTest, PlaintextStartupIsRoutedWhenTlsIsNotRequired) {
  StartupMachine::Options options;
  options.tls_required = false;
  StartupMachine m(options);
  Outcome o = Run(m, AliceStartup());
  ASSERT_EQ(o.actions.size(), 1u);
  EXPECT_EQ(o.actions[0].kind, Kind::kStartup);
}

TEST_P(StartupMachineTest, StartupInsideTlsIsRoutedWithParamsBytesAndRest) {
  EnterTls();
  Bytes startup = AliceStartup();
  Outcome o = Run(Cat({startup, kQuery}));
  ASSERT_EQ(o.actions.size(), 1u);
  const StartupAction& a = o.actions[0];
  EXPECT_EQ(a.kind, Kind::kStartup);
  EXPECT_EQ(a.startup.version, kProtocol30);
  std::vector<std::pair<std::string, std::string>> want = {{"user", "alice"}, {"database", "app"}};
  EXPECT_EQ(a.startup.params, want);
  EXPECT_EQ(a.bytes, startup);
  EXPECT_EQ(o.tail, kQuery);
  if (GetParam() == Chunking::kWhole) {
    EXPECT_EQ(a.rest, kQuery);
  }
  ExpectFinished();
}

// Checklist row 6 ("StartupMessage and protocol versions"): 3.2 and GREASE versions with _pq_
// options go through, never refused.
TEST_P(StartupMachineTest, Protocol32WithPqOptionIsRouted) {
  for (uint32_t minor : {2u, 9999u}) {
    SCOPED_TRACE(minor);
    machine_ = StartupMachine();
    EnterTls();
    Bytes startup = Startup(ProtocolVersion(3, minor),
                            {{"user", "alice"}, {"_pq_.x", "1"}, {"database", "app"}});
    Outcome o = Run(startup);
    ASSERT_EQ(o.actions.size(), 1u);
    EXPECT_EQ(o.actions[0].kind, Kind::kStartup);
    EXPECT_EQ(o.actions[0].startup.version, ProtocolVersion(3, minor));
    ASSERT_NE(o.actions[0].startup.Find("_pq_.x"), nullptr);
    EXPECT_EQ(*o.actions[0].startup.Find("_pq_.x"), "1");
    EXPECT_EQ(o.actions[0].bytes, startup);
  }
}

TEST_P(StartupMachineTest, Protocol40IsRefusedWith0A000) {
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls);
    machine_ = StartupMachine();
    if (tls) EnterTls();
    Outcome o = Run(Startup(ProtocolVersion(4, 0), {{"user", "alice"}}));
    ExpectFatal(o, RefuseReason::kUnsupportedProtocol, "0A000",
                "unsupported frontend protocol 4.0: server supports 3.0 to 3.2");
    ASSERT_EQ(o.actions.size(), 1u);
    // docs/protocol.md, "ErrorResponse": 90 bytes, length field 00 00 00 59.
    EXPECT_EQ(o.actions[0].bytes.size(), 90u);
  }
  StartupMachine old;
  ExpectFatal(Run(old, Startup(ProtocolVersion(2, 0), {{"user", "alice"}})),
              RefuseReason::kUnsupportedProtocol, "0A000", "unsupported frontend protocol 2.0");
}

TEST_P(StartupMachineTest, MissingUserIsRefusedWith28000) {
  EnterTls();
  ExpectFatal(Run(Startup(kProtocol30, {{"database", "app"}})), RefuseReason::kNoUser, "28000",
              "no PostgreSQL user name specified in startup packet");
}

TEST_P(StartupMachineTest, MissingTerminatorIsRefusedWith08P01) {
  Bytes body = Cat({Hex("00 03 00 00"), Str("user"), Hex("00"), Str("alice")});
  Bytes packet = Cat({U32(static_cast<uint32_t>(4 + body.size())), body});
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls);
    machine_ = StartupMachine();
    if (tls) EnterTls();
    ExpectFatal(Run(packet), RefuseReason::kBadLayout, "08P01",
                "invalid startup packet layout: expected terminator as last byte");
  }
}

TEST_P(StartupMachineTest, EmptyParameterNameIsRefusedWith08P01) {
  EnterTls();
  Bytes body = Cat({Hex("00 03 00 00 00"), Str("x"), Hex("00 00")});
  ExpectFatal(Run(Cat({U32(static_cast<uint32_t>(4 + body.size())), body})),
              RefuseReason::kBadLayout, "08P01", "invalid startup packet layout");
}

TEST_P(StartupMachineTest, NegotiationCodeWithWrongLengthIsAnUnknownProtocol) {
  // 1234.5679 in a 12-byte packet is not an SSLRequest; PostgreSQL refuses it as a version.
  ExpectFatal(Run(Hex("00 00 00 0c 04 d2 16 2f 00 00 00 00")), RefuseReason::kUnsupportedProtocol,
              "0A000", "unsupported frontend protocol 1234.5679");
}

std::string ChunkingName(const ::testing::TestParamInfo<Chunking>& info) {
  return info.param == Chunking::kWhole ? "Whole" : "ByteByByte";
}

INSTANTIATE_TEST_SUITE_P(Feeds, StartupMachineTest,
                         ::testing::Values(Chunking::kWhole, Chunking::kByteByByte), ChunkingName);

// TakeAppOption: "app=NAME" in the `options` startup parameter names the app for clients
// without SNI, and is removed before the packet reaches the server.
StartupMessage WithOptions(std::string options) {
  StartupMessage m;
  m.params = {{"user", "alice"}, {"options", std::move(options)}, {"database", "app"}};
  return m;
}

TEST(TakeAppOptionTest, AloneRemovesTheParameter) {
  StartupMessage m = WithOptions("app=my-pg");
  EXPECT_EQ(TakeAppOption(&m), "my-pg");
  EXPECT_EQ(m.Find("options"), nullptr);
  std::vector<std::pair<std::string, std::string>> want = {{"user", "alice"}, {"database", "app"}};
  EXPECT_EQ(m.params, want);
}

TEST(TakeAppOptionTest, OtherOptionsAreKept) {
  StartupMessage m = WithOptions("-c search_path=x  app=my-pg -c work_mem=64MB");
  EXPECT_EQ(TakeAppOption(&m), "my-pg");
  ASSERT_NE(m.Find("options"), nullptr);
  EXPECT_EQ(*m.Find("options"), "-c search_path=x -c work_mem=64MB");
  EXPECT_EQ(m.params[0].first, "user") << "parameter order is kept";
  EXPECT_EQ(m.params[2].first, "database");
}

TEST(TakeAppOptionTest, BackslashEscapedSpaceStaysInItsToken) {
  StartupMessage m = WithOptions("-c search_path=a\\ b app=x");
  EXPECT_EQ(TakeAppOption(&m), "x");
  EXPECT_EQ(*m.Find("options"), "-c search_path=a\\ b");
}

TEST(TakeAppOptionTest, OnlyTheFirstAppTokenIsTaken) {
  StartupMessage m = WithOptions("app=a app=b");
  EXPECT_EQ(TakeAppOption(&m), "a");
  EXPECT_EQ(*m.Find("options"), "app=b");
}

TEST(TakeAppOptionTest, NothingToTakeLeavesTheMessageAlone) {
  StartupMessage none;
  none.params = {{"user", "alice"}};
  EXPECT_EQ(TakeAppOption(&none), std::nullopt);
  EXPECT_EQ(none.params.size(), 1u);

  StartupMessage other = WithOptions("  -c application=x  ");
  EXPECT_EQ(TakeAppOption(&other), std::nullopt);
  EXPECT_EQ(*other.Find("options"), "  -c application=x  ") << "untouched, spacing included";

  StartupMessage empty = WithOptions("");
  EXPECT_EQ(TakeAppOption(&empty), std::nullopt);
  EXPECT_NE(empty.Find("options"), nullptr);
}

TEST(RefuseReasonTest, EveryReasonHasAName) {
  for (int r = 0; r < static_cast<int>(RefuseReason::kCount); ++r) {
    EXPECT_STRNE(RefuseReasonName(static_cast<RefuseReason>(r)), "unknown") << r;
  }
}

}  // namespace
}  // namespace drawbridge::pg
