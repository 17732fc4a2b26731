// The DNS wire codec (RFC 1035 §4.1, RFC 6891 §6): names and their compression pointers, whole
// messages, the writer's compression.
#include "dns/message.h"

#include <gtest/gtest.h>

#include <string>

#include "dns/dns_test_util.h"
#include "test_util.h"

namespace drawbridge::dns {
namespace {

using testutil::Cat;
using testutil::Hex;
using testutil::Str;

// A 12-byte header of zeros, so that offsets in names below start at 12.
const Bytes kHeader(12, 0);

ParseError Read(const Bytes& msg, size_t start, Name* name, size_t* end = nullptr) {
  size_t pos = start;
  ParseError e = ReadName(msg, &pos, name);
  if (end) *end = pos;
  return e;
}

TEST(DnsName, PlainLabels) {
  Bytes msg = Cat({kHeader, testing::WireName("App.Example.test")});
  Name n;
  size_t end = 0;
  ASSERT_EQ(Read(msg, 12, &n, &end), ParseError::kNone);
  EXPECT_EQ(n.ToString(), "App.Example.test");
  EXPECT_EQ(end, msg.size());
  EXPECT_EQ(n.WireSize(), msg.size() - 12);
}

TEST(DnsName, Root) {
  Bytes msg = Cat({kHeader, Hex("00")});
  Name n;
  size_t end = 0;
  ASSERT_EQ(Read(msg, 12, &n, &end), ParseError::kNone);
  EXPECT_TRUE(n.labels.empty());
  EXPECT_EQ(n.ToString(), ".");
  EXPECT_EQ(end, 13u);
}

TEST(DnsName, BackwardPointerChain) {
  // 12: "test" root; 18: "b" -> 12; 22: "a" -> 18. Reading at 22 gives a.b.test and ends
  // after the first pointer.
  Bytes msg = Cat({kHeader, Hex("04"), Str("test"), Hex("00"), Hex("01"), Str("b"), Hex("c0 0c"),
                   Hex("01"), Str("a"), Hex("c0 12")});
  Name n;
  size_t end = 0;
  ASSERT_EQ(Read(msg, 22, &n, &end), ParseError::kNone);
  EXPECT_EQ(n.ToString(), "a.b.test");
  EXPECT_EQ(end, 26u);
  // A name that is only a pointer.
  msg.insert(msg.end(), {0xc0, 22});
  ASSERT_EQ(Read(msg, 26, &n, &end), ParseError::kNone);
  EXPECT_EQ(n.ToString(), "a.b.test");
  EXPECT_EQ(end, 28u);
}

TEST(DnsName, PointerIntoTheMiddleOfAnEarlierName) {
  Bytes msg = Cat({kHeader, testing::WireName("x.example.test"), Hex("c0 0e")});
  Name n;
  ASSERT_EQ(Read(msg, 12 + 16, &n), ParseError::kNone);
  EXPECT_EQ(n.ToString(), "example.test");
}

TEST(DnsName, PointerForwardIsRejected) {
  Bytes msg = Cat({kHeader, Hex("c0 0e"), testing::WireName("a")});
  Name n;
  EXPECT_EQ(Read(msg, 12, &n), ParseError::kBadPointer);
}

TEST(DnsName, PointerToItselfIsRejected) {
  Bytes msg = Cat({kHeader, Hex("c0 0c")});
  Name n;
  EXPECT_EQ(Read(msg, 12, &n), ParseError::kBadPointer);
}

TEST(DnsName, PointerLoopIsRejected) {
  // 12: "a" then a pointer to 15 (forward); 16: a pointer to 12. Reading at 16 jumps back to
  // 12, whose pointer does not go below 12.
  Bytes msg = Cat({kHeader, Hex("01"), Str("a"), Hex("c0 0f"), Hex("c0 0c")});
  Name n;
  EXPECT_EQ(Read(msg, 16, &n), ParseError::kBadPointer);
  // A cycle entered from behind: 18 -> 16 -> 12 ("a") -> 14 -> 16 -> ... Every hop but the
  // one closing the cycle goes backwards.
  Bytes loop = Cat({kHeader, Hex("01"), Str("a"), Hex("c0 10"), Hex("c0 0c"), Hex("c0 10")});
  EXPECT_EQ(Read(loop, 18, &n), ParseError::kBadPointer);
}

TEST(DnsName, PointerIntoTheHeaderIsRejected) {
  Bytes msg = Cat({kHeader, Hex("c0 05")});
  Name n;
  EXPECT_EQ(Read(msg, 12, &n), ParseError::kBadPointer);
}

TEST(DnsName, PointerOutOfRangeIsRejected) {
  Bytes msg = Cat({kHeader, Hex("ff ff")});
  Name n;
  EXPECT_EQ(Read(msg, 12, &n), ParseError::kBadPointer);
}

TEST(DnsName, LabelTypes01And10AreRejected) {
  Name n;
  EXPECT_EQ(Read(Cat({kHeader, Hex("41 00")}), 12, &n), ParseError::kBadLabel);
  EXPECT_EQ(Read(Cat({kHeader, Hex("80 00")}), 12, &n), ParseError::kBadLabel);
  EXPECT_EQ(Read(Cat({kHeader, Hex("40")}), 12, &n), ParseError::kBadLabel);  // a "64-byte" label
}

TEST(DnsName, SixtyThreeByteLabelIsFine) {
  Bytes msg = Cat({kHeader, Hex("3f"), Bytes(63, 'a'), Hex("00")});
  Name n;
  ASSERT_EQ(Read(msg, 12, &n), ParseError::kNone);
  EXPECT_EQ(n.labels.at(0).size(), 63u);
}

// Four labels of 63 and one of `last`: 4*64 + 1 + last + 1 wire bytes.
Bytes LongName(size_t last) {
  Bytes b;
  for (int i = 0; i < 3; ++i) {
    b.push_back(63);
    b.insert(b.end(), 63, 'x');
  }
  b.push_back(static_cast<uint8_t>(last));
  b.insert(b.end(), last, 'y');
  b.push_back(0);
  return b;
}

TEST(DnsName, TwoHundredFiftyFiveBytesIsTheLimit) {
  Name n;
  Bytes ok = Cat({kHeader, LongName(61)});  // 3*64 + 62 + 1 = 255
  ASSERT_EQ(ok.size() - 12, 255u);
  EXPECT_EQ(Read(ok, 12, &n), ParseError::kNone);
  EXPECT_EQ(n.WireSize(), 255u);
  Bytes too_long = Cat({kHeader, LongName(62)});
  EXPECT_EQ(Read(too_long, 12, &n), ParseError::kNameTooLong);
}

TEST(DnsName, LimitCountsLabelsReachedThroughPointers) {
  // 12: 63 x's, 63 x's, 63 x's, root (193 bytes). Then 63 y's -> 12 makes 257.
  Bytes msg = kHeader;
  for (int i = 0; i < 3; ++i) {
    msg.push_back(63);
    msg.insert(msg.end(), 63, 'x');
  }
  msg.push_back(0);
  size_t second = msg.size();
  msg.push_back(63);
  msg.insert(msg.end(), 63, 'y');
  msg.insert(msg.end(), {0xc0, 12});
  Name n;
  EXPECT_EQ(Read(msg, second, &n), ParseError::kNameTooLong);
}

TEST(DnsName, EveryTruncationIsReported) {
  Bytes full = Cat({kHeader, Hex("01"), Str("a"), Hex("00"), Hex("03"), Str("app"), Hex("c0 0c")});
  for (size_t n = 17; n < full.size(); ++n) {
    Bytes cut(full.begin(), full.begin() + n);
    Name name;
    EXPECT_EQ(Read(cut, 15, &name), ParseError::kTruncated) << n;
  }
  Name name;
  EXPECT_EQ(Read(full, 15, &name), ParseError::kNone);
  EXPECT_EQ(name.ToString(), "app.a");
}

TEST(DnsName, ToStringEscapes) {
  Name n{{std::string("a.b"), std::string("c\\d"), std::string("\x01 z", 3)}};
  EXPECT_EQ(n.ToString(), "a\\046b.c\\092d.\\001\\032z");
}

TEST(DnsName, FromString) {
  auto n = NameFromString("App.Example.Test.");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->labels, (std::vector<std::string>{"App", "Example", "Test"}));
  EXPECT_TRUE(NameFromString("")->labels.empty());
  EXPECT_TRUE(NameFromString(".")->labels.empty());
  EXPECT_FALSE(NameFromString(std::string(64, 'a') + ".test").has_value());
  EXPECT_TRUE(NameFromString(std::string(63, 'a') + ".test").has_value());
  std::string long_name;
  for (int i = 0; i < 4; ++i) long_name += std::string(63, 'a') + ".";
  EXPECT_FALSE(NameFromString(long_name).has_value());  // 4*64 + 1 = 257
}

TEST(DnsName, CaseFolding) {
  EXPECT_EQ(Lower("AbC-9\xc3\x89"), "abc-9\xc3\x89");  // ASCII only (RFC 4343)
  EXPECT_TRUE(EqualIgnoreCase(*NameFromString("A.B"), *NameFromString("a.b")));
  EXPECT_FALSE(EqualIgnoreCase(*NameFromString("a.b"), *NameFromString("a.b.c")));
}

TEST(DnsMessage, ParsesAQueryWithEdns) {
  Bytes q = testing::Query("app.test", kTypeAaaa,
                           {.id = 7, .edns_size = 4096, .edns_version = 0, .dnssec_ok = true});
  Message m;
  ASSERT_EQ(ParseMessage(q, &m), ParseError::kNone);
  EXPECT_EQ(m.header.id, 7);
  EXPECT_TRUE(m.header.rd());
  EXPECT_FALSE(m.header.qr());
  EXPECT_EQ(m.header.opcode(), 0);
  ASSERT_EQ(m.questions.size(), 1u);
  EXPECT_EQ(m.questions[0].name.ToString(), "app.test");
  EXPECT_EQ(m.questions[0].type, kTypeAaaa);
  EXPECT_EQ(m.questions[0].klass, kClassIn);
  ASSERT_TRUE(m.edns.has_value());
  EXPECT_EQ(m.edns->udp_size, 4096);
  EXPECT_EQ(m.edns->version, 0);
  EXPECT_TRUE(m.edns->dnssec_ok);
  EXPECT_TRUE(m.additional.empty());  // the OPT is in `edns`, not here
}

TEST(DnsMessage, ParsesRecordsWithCompressedOwners) {
  Bytes q = testing::Query("app.test", kTypeA);
  q[7] = 1;  // ANCOUNT 1: app.test A 60 1.2.3.4, owner compressed
  q = Cat({q, Hex("c0 0c 0001 0001 0000003c 0004 01020304")});
  Message m;
  ASSERT_EQ(ParseMessage(q, &m), ParseError::kNone);
  ASSERT_EQ(m.answers.size(), 1u);
  EXPECT_EQ(m.answers[0].name.ToString(), "app.test");
  EXPECT_EQ(m.answers[0].ttl, 60u);
  EXPECT_EQ(testutil::ToHex(m.answers[0].rdata), "01 02 03 04");
  EXPECT_EQ(m.answers[0].rdata_offset, q.size() - 4);
}

TEST(DnsMessage, Errors) {
  Message m;
  EXPECT_EQ(ParseMessage(Hex("0001 0100 0001 0000 0000"), &m), ParseError::kShortHeader);
  Bytes q = testing::Query("app.test", kTypeA);
  EXPECT_EQ(ParseMessage(Cat({q, Hex("00")}), &m), ParseError::kTrailingBytes);
  Bytes more = q;
  more[5] = 2;  // QDCOUNT 2, one question
  EXPECT_EQ(ParseMessage(more, &m), ParseError::kTruncated);
  more = q;
  more[11] = 0xff;  // ARCOUNT 255, no records
  EXPECT_EQ(ParseMessage(more, &m), ParseError::kTruncated);
  // A record whose RDLENGTH runs past the end.
  Bytes rr = q;
  rr[7] = 1;
  rr = Cat({rr, Hex("c0 0c 0001 0001 0000003c 0005 01020304")});
  EXPECT_EQ(ParseMessage(rr, &m), ParseError::kTruncated);
}

TEST(DnsMessage, OptRules) {
  Message m;
  Bytes opt = Hex("00 0029 1000 00000000 0000");
  Bytes q = testing::Query("app.test", kTypeA);
  auto with = [&](int section, std::initializer_list<ByteSpan> records) {
    Bytes b = q;
    b[6 + 2 * section + 1] = static_cast<uint8_t>(records.size());
    for (ByteSpan r : records) b.insert(b.end(), r.begin(), r.end());
    return b;
  };
  EXPECT_EQ(ParseMessage(with(2, {opt}), &m), ParseError::kNone);
  EXPECT_EQ(ParseMessage(with(2, {opt, opt}), &m), ParseError::kBadOpt);
  EXPECT_EQ(ParseMessage(with(0, {opt}), &m), ParseError::kBadOpt);
  EXPECT_EQ(ParseMessage(with(1, {opt}), &m), ParseError::kBadOpt);
  // Not at the root.
  EXPECT_EQ(ParseMessage(with(2, {Hex("c0 0c 0029 1000 00000000 0000")}), &m), ParseError::kBadOpt);
  // Options: a well-formed cookie, then one whose length runs past RDATA, then a stub.
  EXPECT_EQ(
      ParseMessage(with(2, {Hex("00 0029 1000 00000000 000c 000a 0008 0102030405060708")}), &m),
      ParseError::kNone);
  EXPECT_EQ(ParseMessage(with(2, {Hex("00 0029 1000 00000000 0008 000a 0008 01020304")}), &m),
            ParseError::kBadOpt);
  EXPECT_EQ(ParseMessage(with(2, {Hex("00 0029 1000 00000000 0002 000a")}), &m),
            ParseError::kBadOpt);
}

TEST(DnsWriter, CompressesSuffixesCaseInsensitively) {
  MessageWriter w;
  w.WriteHeader(Header{});
  w.WriteName(*NameFromString("App.Example.test"));  // at 12
  size_t second = w.size();
  w.WriteName(*NameFromString("example.TEST"));  // pointer to 16
  w.WriteName(*NameFromString("ns1.example.test"));
  w.WriteName(*NameFromString("other"));
  Bytes b = w.Take();
  EXPECT_EQ(testutil::ToHex(ByteSpan(b).subspan(second)),
            "c0 10 03 6e 73 31 c0 10 05 6f 74 68 65 72 00");
}

TEST(DnsWriter, TruncateForgetsCompressionTargets) {
  MessageWriter w;
  w.WriteHeader(Header{});
  size_t mark = w.size();
  w.WriteName(*NameFromString("a.test"));
  w.Truncate(mark);
  w.WriteName(*NameFromString("b.test"));  // must not point at the dropped bytes
  Bytes b = w.Take();
  EXPECT_EQ(testutil::ToHex(ByteSpan(b).subspan(12)), "01 62 04 74 65 73 74 00");
}

TEST(DnsWriter, RecordLengthIsPatched) {
  MessageWriter w;
  w.WriteHeader(Header{.id = 1});
  w.BeginRecord(*NameFromString("a"), kTypeNs, kClassIn, 300);
  w.WriteName(*NameFromString("ns.a"));
  w.EndRecord();
  w.SetCounts(0, 1, 0, 0);
  w.SetFlags(kFlagQr | kFlagAa);
  Bytes b = w.Take();
  EXPECT_EQ(testutil::ToHex(b),
            "00 01 84 00 00 00 00 01 00 00 00 00 "
            "01 61 00 00 02 00 01 00 00 01 2c 00 05 02 6e 73 c0 0c");
  Message m;
  ASSERT_EQ(ParseMessage(b, &m), ParseError::kNone);
  ASSERT_EQ(m.answers.size(), 1u);
  size_t pos = m.answers[0].rdata_offset;
  Name target;
  ASSERT_EQ(ReadName(b, &pos, &target), ParseError::kNone);
  EXPECT_EQ(target.ToString(), "ns.a");
}

}  // namespace
}  // namespace drawbridge::dns
