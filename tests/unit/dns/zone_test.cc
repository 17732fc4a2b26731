// dns::Answer(): the authoritative answers of docs/architecture.md, "DNS", and the error
// answers, every field checked with an independent decoder (dns_test_util.h), and malformed or
// truncated queries fed at every length.
#include "dns/zone.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/dns_test_util.h"
#include "dns/message.h"
#include "test_util.h"

namespace drawbridge::dns {
namespace {

using testing::Decode;
using testing::Query;
using testing::QuerySpec;
using testing::Response;
using testutil::Cat;
using testutil::Hex;

constexpr uint16_t kTypeTxt = 16;
constexpr uint16_t kTypeMx = 15;
constexpr uint16_t kClassCh = 3;

Zone TestZone() {
  Zone z;
  z.domain = "drawbridge.test";
  z.ns_name = "ns1.drawbridge.test";
  z.ns_addresses = {"127.0.0.53", "fd00::53"};
  z.serial = 42;
  z.ttl = 60;
  z.public_ips["pgapp"] = {"127.0.10.1", "fd5b:d8e0:7a1f::1"};
  z.public_ips["v4only"] = {"127.0.10.2", "127.0.10.2"};  // duplicates collapse
  z.public_ips["v6only"] = {"fd5b:d8e0:7a1f::6"};
  z.public_ips["noips"] = {};
  z.public_ips["junk"] = {"not-an-ip", "127.0.10.9"};
  for (int i = 0; i < 40; ++i) z.public_ips["many"].push_back("10.1.0." + std::to_string(i + 1));
  z.internal_ips["pgapp"] = {"10.0.0.5", "db.example.com", "fd00::5"};
  z.internal_ips["hostonly"] = {"db.local"};
  return z;
}

// The response over UDP with our default limit.
Response Ask(const Zone& z, std::string_view name, uint16_t type, const QuerySpec& spec = {},
             size_t max_udp = kDefaultUdpSize) {
  Bytes q = Query(name, type, spec);
  Bytes out = Answer(z, q, max_udp);
  EXPECT_FALSE(out.empty());
  if (max_udp) {
    size_t client = spec.edns_size ? std::max<size_t>(*spec.edns_size, 512) : 512;
    EXPECT_LE(out.size(), std::min(client, max_udp));
  }
  return Decode(out);
}

void ExpectHeaderEcho(const Response& r, const QuerySpec& spec = {}) {
  EXPECT_EQ(r.id, spec.id);
  EXPECT_TRUE(r.qr());
  EXPECT_EQ(r.opcode(), 0);
  EXPECT_EQ(r.rd(), (spec.flags & 0x0100) != 0);
  EXPECT_FALSE(r.ra());            // authoritative only, no recursion
  EXPECT_EQ(r.flags & 0x0060, 0);  // Z and AD clear
}

void ExpectSoa(const testing::Rr& rr, const std::string& apex, uint32_t serial = 42,
               uint32_t ttl = 60) {
  EXPECT_EQ(rr.name, apex);
  EXPECT_EQ(rr.type, kTypeSoa);
  EXPECT_EQ(rr.klass, kClassIn);
  EXPECT_EQ(rr.ttl, ttl);
  EXPECT_EQ(rr.soa.mname, "ns1.drawbridge.test");
  EXPECT_EQ(rr.soa.rname, "hostmaster.drawbridge.test");
  EXPECT_EQ(rr.soa.serial, serial);
  EXPECT_EQ(rr.soa.refresh, kSoaRefresh);
  EXPECT_EQ(rr.soa.retry, kSoaRetry);
  EXPECT_EQ(rr.soa.expire, kSoaExpire);
  EXPECT_EQ(rr.soa.minimum, ttl);  // the negative-caching TTL (RFC 2308 §4)
}

std::vector<std::string> Addresses(const std::vector<testing::Rr>& rrs, uint16_t type) {
  std::vector<std::string> out;
  for (const auto& rr : rrs) {
    if (rr.type == type) out.push_back(rr.address);
  }
  return out;
}

TEST(DnsAnswer, ExactBytesOfAnARecord) {
  Bytes q = Query("pgapp.drawbridge.test", kTypeA, {.id = 0x1234});
  Bytes out = Answer(TestZone(), q, kDefaultUdpSize);
  EXPECT_EQ(testutil::ToHex(out),
            testutil::ToHex(Cat({Hex("1234 8500 0001 0001 0000 0000"),  // QR AA RD, NOERROR
                                 testing::WireName("pgapp.drawbridge.test"), Hex("0001 0001"),
                                 Hex("c00c 0001 0001 0000003c 0004 7f000a01")})));
}

TEST(DnsAnswer, AForAnApp) {
  Response r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA);
  ExpectHeaderEcho(r);
  EXPECT_TRUE(r.aa());
  EXPECT_FALSE(r.tc());
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.qd, 1);
  EXPECT_EQ(r.qname, "pgapp.drawbridge.test");
  EXPECT_EQ(r.qtype, kTypeA);
  EXPECT_EQ(r.qclass, kClassIn);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].name, "pgapp.drawbridge.test");
  EXPECT_EQ(r.answer[0].type, kTypeA);
  EXPECT_EQ(r.answer[0].klass, kClassIn);
  EXPECT_EQ(r.answer[0].ttl, 60u);
  EXPECT_EQ(r.answer[0].address, "127.0.10.1");
  EXPECT_EQ(r.ns, 0);
  EXPECT_EQ(r.ar, 0);
}

TEST(DnsAnswer, AaaaForAnApp) {
  Response r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeAaaa);
  EXPECT_TRUE(r.aa());
  EXPECT_EQ(r.rcode(), 0);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].type, kTypeAaaa);
  EXPECT_EQ(r.answer[0].address, "fd5b:d8e0:7a1f::1");
  EXPECT_EQ(r.answer[0].rdlength, 16u);
}

TEST(DnsAnswer, DuplicatesAndNonLiteralsAreSkipped) {
  Response r = Ask(TestZone(), "v4only.drawbridge.test", kTypeA);
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"127.0.10.2"});
  r = Ask(TestZone(), "junk.drawbridge.test", kTypeA);
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"127.0.10.9"});
}

TEST(DnsAnswer, AnyGivesAAndAaaa) {
  Response r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeAny);
  EXPECT_TRUE(r.aa());
  EXPECT_EQ(r.rcode(), 0);
  ASSERT_EQ(r.an, 2);
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"127.0.10.1"});
  EXPECT_EQ(Addresses(r.answer, kTypeAaaa), std::vector<std::string>{"fd5b:d8e0:7a1f::1"});
  // At the apex: SOA and NS.
  r = Ask(TestZone(), "drawbridge.test", kTypeAny);
  ASSERT_EQ(r.an, 2);
  EXPECT_EQ(r.answer[0].type, kTypeSoa);
  EXPECT_EQ(r.answer[1].type, kTypeNs);
}

TEST(DnsAnswer, NoDataWithSoaForAMissingType) {
  for (auto [name, type] :
       std::vector<std::pair<std::string, uint16_t>>{{"v4only.drawbridge.test", kTypeAaaa},
                                                     {"v6only.drawbridge.test", kTypeA},
                                                     {"noips.drawbridge.test", kTypeA},
                                                     {"pgapp.drawbridge.test", kTypeTxt},
                                                     {"pgapp.drawbridge.test", kTypeSoa},
                                                     {"pgapp.drawbridge.test", kTypeNs},
                                                     {"drawbridge.test", kTypeA},
                                                     {"drawbridge.test", kTypeMx},
                                                     {"ns1.drawbridge.test", kTypeTxt}}) {
    SCOPED_TRACE(name + " type " + std::to_string(type));
    Response r = Ask(TestZone(), name, type);
    ExpectHeaderEcho(r);
    EXPECT_TRUE(r.aa());
    EXPECT_EQ(r.rcode(), 0);
    EXPECT_EQ(r.an, 0);
    ASSERT_EQ(r.ns, 1);
    ExpectSoa(r.authority[0], "drawbridge.test");
    EXPECT_EQ(r.ar, 0);
  }
}

TEST(DnsAnswer, NxDomainWithSoa) {
  for (std::string name : {"nope.drawbridge.test", "x.pgapp.drawbridge.test",
                           "a.b.c.drawbridge.test", "ns2.drawbridge.test"}) {
    SCOPED_TRACE(name);
    Response r = Ask(TestZone(), name, kTypeA);
    ExpectHeaderEcho(r);
    EXPECT_TRUE(r.aa());
    EXPECT_EQ(r.rcode(), 3);
    EXPECT_EQ(r.qname, name);
    EXPECT_EQ(r.an, 0);
    ASSERT_EQ(r.ns, 1);
    ExpectSoa(r.authority[0], "drawbridge.test");
  }
}

TEST(DnsAnswer, SoaAtTheApex) {
  Response r = Ask(TestZone(), "drawbridge.test", kTypeSoa);
  EXPECT_TRUE(r.aa());
  EXPECT_EQ(r.rcode(), 0);
  ASSERT_EQ(r.an, 1);
  ExpectSoa(r.answer[0], "drawbridge.test");
  EXPECT_EQ(r.ns, 0);
}

TEST(DnsAnswer, NsAtTheApexWithGlue) {
  Response r = Ask(TestZone(), "drawbridge.test", kTypeNs);
  EXPECT_TRUE(r.aa());
  EXPECT_EQ(r.rcode(), 0);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].name, "drawbridge.test");
  EXPECT_EQ(r.answer[0].type, kTypeNs);
  EXPECT_EQ(r.answer[0].ttl, 60u);
  EXPECT_EQ(r.answer[0].target, "ns1.drawbridge.test");
  ASSERT_EQ(r.ar, 2);
  EXPECT_EQ(r.additional[0].name, "ns1.drawbridge.test");
  EXPECT_EQ(r.additional[0].address, "127.0.0.53");
  EXPECT_EQ(r.additional[1].address, "fd00::53");
}

TEST(DnsAnswer, NameServerAddresses) {
  Response r = Ask(TestZone(), "NS1.drawbridge.test", kTypeA);
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"127.0.0.53"});
  r = Ask(TestZone(), "ns1.drawbridge.test", kTypeAaaa);
  EXPECT_EQ(Addresses(r.answer, kTypeAaaa), std::vector<std::string>{"fd00::53"});
}

TEST(DnsAnswer, NameServerOutsideTheZoneHasNoGlue) {
  Zone z = TestZone();
  z.ns_name = "ns.example.net";
  Response r = Ask(z, "drawbridge.test", kTypeNs);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].target, "ns.example.net");
  EXPECT_EQ(r.ar, 0);
  EXPECT_EQ(Ask(z, "ns1.drawbridge.test", kTypeA).rcode(), 3);
}

TEST(DnsAnswer, EmptyNsNameDefaultsToNs1) {
  Zone z = TestZone();
  z.ns_name.clear();
  Response r = Ask(z, "drawbridge.test", kTypeNs);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].target, "ns1.drawbridge.test");
}

TEST(DnsAnswer, EmptyNonTerminalAboveTheNameServerIsNoData) {
  Zone z = TestZone();
  z.ns_name = "ns1.sub.drawbridge.test";
  Response r = Ask(z, "sub.drawbridge.test", kTypeA);
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.an, 0);
  EXPECT_EQ(r.ns, 1);
}

TEST(DnsAnswer, RefusedOutsideTheZone) {
  for (std::string name : {"example.com", "", "test", "xdrawbridge.test", "drawbridge.test.evil",
                           "pgapp.drawbridge.testx", "internal.example"}) {
    SCOPED_TRACE(name);
    Response r = Ask(TestZone(), name, kTypeA);
    ExpectHeaderEcho(r);
    EXPECT_FALSE(r.aa());
    EXPECT_EQ(r.rcode(), 5);
    EXPECT_EQ(r.qd, 1);
    EXPECT_EQ(r.qname, name);
    EXPECT_EQ(r.an + r.ns + r.ar, 0);
  }
}

TEST(DnsAnswer, CaseInsensitiveAndTheQuestionKeepsItsCase) {
  Bytes q = Query("PgApp.DrawBridge.TEST", kTypeA);
  Bytes out = Answer(TestZone(), q, kDefaultUdpSize);
  Response r = Decode(out);
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.qname, "PgApp.DrawBridge.TEST");
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].address, "127.0.10.1");
  // The owner is a pointer to the question's name.
  size_t owner = 12 + testing::WireName("PgApp.DrawBridge.TEST").size() + 4;
  EXPECT_EQ(out[owner], 0xc0);
  EXPECT_EQ(out[owner + 1], 12);
  // And the negative answer's SOA owner points into the question too.
  r = Ask(TestZone(), "NOPE.DRAWBRIDGE.TEST", kTypeA);
  EXPECT_EQ(r.rcode(), 3);
  ASSERT_EQ(r.ns, 1);
  EXPECT_EQ(Lower(r.authority[0].name), "drawbridge.test");
}

TEST(DnsAnswer, ZoneNamesMayHaveATrailingDotOrCapitals) {
  Zone z = TestZone();
  z.domain = "DrawBridge.Test.";
  z.ns_name = "NS1.drawbridge.test.";
  z.public_ips["UPPER"] = {"192.0.2.1"};
  Response r = Ask(z, "pgapp.drawbridge.test", kTypeA);
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.an, 1);
  EXPECT_EQ(Ask(z, "upper.drawbridge.test", kTypeA).an, 1);
  r = Ask(z, "drawbridge.test.", kTypeSoa);
  ASSERT_EQ(r.an, 1);
  ExpectSoa(r.answer[0], "drawbridge.test");
}

TEST(DnsAnswer, InternalNames) {
  Response r = Ask(TestZone(), "pgapp.internal", kTypeA);
  EXPECT_TRUE(r.aa());
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"10.0.0.5"});
  EXPECT_EQ(r.answer.size(), 1u);  // the host-name machine is skipped
  r = Ask(TestZone(), "PGAPP.Internal.", kTypeAaaa);
  EXPECT_EQ(Addresses(r.answer, kTypeAaaa), std::vector<std::string>{"fd00::5"});
  r = Ask(TestZone(), "pgapp.internal", kTypeAny);
  EXPECT_EQ(r.an, 2);
  // Only host-name machines: a known name with no addresses.
  r = Ask(TestZone(), "hostonly.internal", kTypeA);
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.an, 0);
  ASSERT_EQ(r.ns, 1);
  ExpectSoa(r.authority[0], "internal");
  // An app with public addresses only is unknown inside.
  r = Ask(TestZone(), "v4only.internal", kTypeA);
  EXPECT_EQ(r.rcode(), 3);
  ASSERT_EQ(r.ns, 1);
  ExpectSoa(r.authority[0], "internal");
  r = Ask(TestZone(), "internal", kTypeSoa);
  ASSERT_EQ(r.an, 1);
  ExpectSoa(r.answer[0], "internal");
  // Public names are not internal ones.
  EXPECT_EQ(Ask(TestZone(), "pgapp.internal.drawbridge.test", kTypeA).rcode(), 3);
}

// A source that may not read `internal` gets, for every name in it, known or not, exactly the
// answer a name outside both zones gets: nothing tells which apps exist. The public zone is
// unaffected.
TEST(DnsAnswer, InternalNamesRefusedToOutsiders) {
  for (auto [name, type] : std::vector<std::pair<std::string, uint16_t>>{
           {"pgapp.internal", kTypeA},
           {"PGAPP.Internal.", kTypeAaaa},
           {"pgapp.internal", kTypeAny},
           {"hostonly.internal", kTypeA},
           {"nope.internal", kTypeA},
           {"a.b.internal", kTypeA},
           {"internal", kTypeSoa},
           {"internal", kTypeNs}}) {
    SCOPED_TRACE(name);
    Bytes out = Answer(TestZone(), Query(name, type), kDefaultUdpSize, false);
    Response r = Decode(out);
    ExpectHeaderEcho(r);
    EXPECT_FALSE(r.aa());
    EXPECT_EQ(r.rcode(), 5);
    EXPECT_EQ(r.qname + (name.ends_with('.') ? "." : ""), name);
    EXPECT_EQ(r.an + r.ns + r.ar, 0);
    // Byte for byte what example.com gets, but for the question.
    Bytes outside = Answer(TestZone(), Query("example.com", type), kDefaultUdpSize, false);
    EXPECT_EQ(out.size() - testing::WireName(name).size(),
              outside.size() - testing::WireName("example.com").size());
    EXPECT_EQ(Bytes(out.begin(), out.begin() + 12), Bytes(outside.begin(), outside.begin() + 12));
  }
  Response r = Decode(Answer(TestZone(), Query("pgapp.drawbridge.test", kTypeA), kDefaultUdpSize,
                             false));
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"127.0.10.1"});
  // Allowed (the default): answered as before.
  r = Decode(Answer(TestZone(), Query("pgapp.internal", kTypeA), kDefaultUdpSize, true));
  EXPECT_EQ(Addresses(r.answer, kTypeA), std::vector<std::string>{"10.0.0.5"});
}

TEST(DnsAnswer, SerialAndTtlComeFromTheSnapshot) {
  Zone z = TestZone();
  z.serial = 4000000000u;
  z.ttl = 0;
  Response r = Ask(z, "nope.drawbridge.test", kTypeA);
  ASSERT_EQ(r.ns, 1);
  ExpectSoa(r.authority[0], "drawbridge.test", 4000000000u, 0);
  r = Ask(z, "pgapp.drawbridge.test", kTypeA);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].ttl, 0u);
}

TEST(DnsAnswer, ClassAnyIsAnsweredOtherClassesRefused) {
  Response r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, {.klass = kClassAny});
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.qclass, kClassAny);
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].klass, kClassIn);
  r = Ask(TestZone(), "version.bind", kTypeTxt, {.klass = kClassCh});
  EXPECT_EQ(r.rcode(), 5);
  r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, {.klass = kClassCh});
  EXPECT_EQ(r.rcode(), 5);
  EXPECT_FALSE(r.aa());
}

TEST(DnsAnswer, ZoneTransfersAreRefused) {
  EXPECT_EQ(Ask(TestZone(), "drawbridge.test", kTypeAxfr).rcode(), 5);
  EXPECT_EQ(Ask(TestZone(), "drawbridge.test", kTypeIxfr).rcode(), 5);
}

TEST(DnsAnswer, FlagsCopiedAndIgnored) {
  // RD and CD are copied; AA, TC, RA, AD and a nonzero RCODE in the query are ignored.
  QuerySpec spec{.id = 9, .flags = 0x0100 | 0x0010 | 0x0400 | 0x0200 | 0x0080 | 0x0020 | 0x0005};
  Bytes out = Answer(TestZone(), Query("pgapp.drawbridge.test", kTypeA, spec), kDefaultUdpSize);
  Response r = Decode(out);
  EXPECT_EQ(r.flags, 0x8000 | 0x0400 | 0x0100 | 0x0010);
  EXPECT_EQ(r.an, 1);
  spec.flags = 0;
  r = Decode(Answer(TestZone(), Query("pgapp.drawbridge.test", kTypeA, spec), 512));
  EXPECT_EQ(r.flags, 0x8000 | 0x0400);
}

TEST(DnsAnswer, ServFailWithoutAUsableDomain) {
  for (std::string domain : {std::string(), std::string("."), std::string(64, 'x') + ".test"}) {
    Zone z = TestZone();
    z.domain = domain;
    Response r = Ask(z, "pgapp.drawbridge.test", kTypeA);
    EXPECT_EQ(r.rcode(), 2);
    EXPECT_FALSE(r.aa());
    EXPECT_EQ(r.qd, 1);
    EXPECT_EQ(r.an + r.ns + r.ar, 0);
  }
}

// ---- EDNS0 ----------------------------------------------------------------------------------

TEST(DnsEdns, OptIsEchoedWithOurSize) {
  QuerySpec spec{.edns_size = 4096};
  Response r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, spec);
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.an, 1);
  ASSERT_EQ(r.ar, 1);
  const testing::Rr* opt = r.opt();
  ASSERT_NE(opt, nullptr);
  EXPECT_EQ(opt->name, "");
  EXPECT_EQ(opt->klass, kDefaultUdpSize);  // our size, not the client's
  EXPECT_EQ(opt->ttl, 0u);                 // extended RCODE 0, version 0, DO clear
  EXPECT_EQ(opt->rdlength, 0u);
  // The advertised size follows max_udp.
  r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, spec, 4000);
  ASSERT_NE(r.opt(), nullptr);
  EXPECT_EQ(r.opt()->klass, 4000);
  // The DO bit is copied (RFC 3225 §3).
  spec.dnssec_ok = true;
  r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, spec);
  ASSERT_NE(r.opt(), nullptr);
  EXPECT_EQ(r.opt()->ttl, 0x8000u);
}

TEST(DnsEdns, NoOptWithoutOne) {
  Response r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA);
  EXPECT_EQ(r.opt(), nullptr);
  EXPECT_EQ(r.ar, 0);
}

TEST(DnsEdns, OptComesAfterGlue) {
  Response r = Ask(TestZone(), "drawbridge.test", kTypeNs, {.edns_size = 1232});
  ASSERT_EQ(r.ar, 3);
  EXPECT_EQ(r.additional[0].type, kTypeA);
  EXPECT_EQ(r.additional[1].type, kTypeAaaa);
  EXPECT_EQ(r.additional[2].type, kTypeOpt);
}

TEST(DnsEdns, OptInNegativeAndRefusedAnswers) {
  Response r = Ask(TestZone(), "nope.drawbridge.test", kTypeA, {.edns_size = 1232});
  EXPECT_EQ(r.rcode(), 3);
  EXPECT_EQ(r.ns, 1);
  EXPECT_NE(r.opt(), nullptr);
  r = Ask(TestZone(), "example.com", kTypeA, {.edns_size = 1232});
  EXPECT_EQ(r.rcode(), 5);
  EXPECT_NE(r.opt(), nullptr);
}

TEST(DnsEdns, UnknownVersionIsBadVers) {
  Response r =
      Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, {.edns_size = 1232, .edns_version = 1});
  EXPECT_EQ(r.rcode(), 0);  // the low 4 bits of 16
  EXPECT_EQ(r.an, 0);
  EXPECT_EQ(r.qd, 1);
  ASSERT_EQ(r.ar, 1);
  ASSERT_NE(r.opt(), nullptr);
  EXPECT_EQ(r.opt()->ttl >> 24, 1u);           // extended RCODE 16 = BADVERS (RFC 6891 §6.1.3)
  EXPECT_EQ((r.opt()->ttl >> 16) & 0xff, 0u);  // we speak version 0
}

// ---- truncation -----------------------------------------------------------------------------

TEST(DnsTruncation, AnswerOverFiveHundredTwelveWithoutEdnsSetsTc) {
  // 40 A records: 12 + 26 (question) + 40 * 16 = 678 bytes.
  Response r = Ask(TestZone(), "many.drawbridge.test", kTypeA);
  EXPECT_TRUE(r.tc());
  EXPECT_TRUE(r.aa());
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.qd, 1);
  EXPECT_EQ(r.an + r.ns + r.ar, 0);
  // Over TCP it all fits.
  Bytes out = Answer(TestZone(), Query("many.drawbridge.test", kTypeA), 0);
  EXPECT_EQ(out.size(), 678u);
  r = Decode(out);
  EXPECT_FALSE(r.tc());
  EXPECT_EQ(r.an, 40);
}

TEST(DnsTruncation, ClientSizeFromEdns) {
  Response r = Ask(TestZone(), "many.drawbridge.test", kTypeA, {.edns_size = 1232});
  EXPECT_FALSE(r.tc());
  EXPECT_EQ(r.an, 40);
  EXPECT_NE(r.opt(), nullptr);
  // 678 + 11 (OPT) = 689 bytes: a client size of 688 is one byte short.
  r = Ask(TestZone(), "many.drawbridge.test", kTypeA, {.edns_size = 689});
  EXPECT_FALSE(r.tc());
  r = Ask(TestZone(), "many.drawbridge.test", kTypeA, {.edns_size = 688});
  EXPECT_TRUE(r.tc());
  EXPECT_EQ(r.an, 0);
  ASSERT_EQ(r.ar, 1);  // the OPT stays
  EXPECT_NE(r.opt(), nullptr);
  // Sizes below 512 count as 512.
  r = Ask(TestZone(), "many.drawbridge.test", kTypeA, {.edns_size = 100});
  EXPECT_TRUE(r.tc());
  r = Ask(TestZone(), "pgapp.drawbridge.test", kTypeA, {.edns_size = 0});
  EXPECT_FALSE(r.tc());
  EXPECT_EQ(r.an, 1);
}

TEST(DnsTruncation, OurLimitCapsTheClients) {
  Response r = Ask(TestZone(), "many.drawbridge.test", kTypeA, {.edns_size = 65535}, 600);
  EXPECT_TRUE(r.tc());
}

TEST(DnsTruncation, GlueThatDoesNotFitIsDroppedWithoutTc) {
  Zone z = TestZone();
  z.ns_addresses.clear();
  for (int i = 0; i < 40; ++i) z.ns_addresses.push_back("10.9.0." + std::to_string(i + 1));
  Response r = Ask(z, "drawbridge.test", kTypeNs);
  EXPECT_FALSE(r.tc());
  EXPECT_EQ(r.an, 1);
  EXPECT_GT(r.ar, 0);
  EXPECT_LT(r.ar, 40);
  r = Ask(z, "drawbridge.test", kTypeNs, {}, 0);
  EXPECT_EQ(r.ar, 40);
}

// ---- malformed queries ----------------------------------------------------------------------

// FORMERR/NOTIMP: the header alone, ID, opcode and RD echoed.
void ExpectHeaderOnly(const Bytes& query, int rcode) {
  Bytes out = Answer(TestZone(), query, kDefaultUdpSize);
  ASSERT_EQ(out.size(), 12u) << testutil::ToHex(query);
  Response r = Decode(out);
  EXPECT_EQ(r.id, static_cast<uint16_t>(query[0] << 8 | query[1]));
  EXPECT_TRUE(r.qr());
  EXPECT_EQ(r.opcode(), (query[2] >> 3) & 0xf);
  EXPECT_EQ(r.rd(), (query[2] & 1) != 0);
  EXPECT_FALSE(r.aa());
  EXPECT_EQ(r.rcode(), rcode);
  EXPECT_EQ(r.qd + r.an + r.ns + r.ar, 0);
}

Bytes WithCount(Bytes q, int index, uint16_t v) {
  q[4 + 2 * index] = static_cast<uint8_t>(v >> 8);
  q[5 + 2 * index] = static_cast<uint8_t>(v);
  return q;
}

TEST(DnsMalformed, QuestionCountMustBeOne) {
  Bytes q = Query("pgapp.drawbridge.test", kTypeA);
  ExpectHeaderOnly(WithCount(q, 0, 0), 1);
  ExpectHeaderOnly(Hex("abcd 0100 0000 0000 0000 0000"), 1);
  Bytes two = WithCount(Cat({q, testing::WireName("x.drawbridge.test"), Hex("0001 0001")}), 0, 2);
  ExpectHeaderOnly(two, 1);
  ExpectHeaderOnly(WithCount(q, 0, 0xffff), 1);
}

TEST(DnsMalformed, BadNames) {
  Bytes header = Hex("abcd 0100 0001 0000 0000 0000");
  Bytes tail = Hex("0001 0001");
  std::vector<Bytes> names = {
      Cat({Hex("40"), Bytes(64, 'a'), Hex("00")}),  // a 64-byte label
      Hex("41 00"),
      Hex("80 00"),
      Hex("c0 0c"),            // pointer to itself
      Hex("c0 12 0001 0001"),  // forward
      Hex("c0 03"),            // into the header
      Hex("ff ff"),            // out of range
      Hex("01 61 c0 0c"),      // loop back to the start
  };
  Bytes long_name;
  for (int i = 0; i < 5; ++i) long_name = Cat({long_name, Hex("3f"), Bytes(63, 'x')});
  names.push_back(Cat({long_name, Hex("00")}));  // 321 bytes
  for (const Bytes& name : names) {
    SCOPED_TRACE(testutil::ToHex(name));
    ExpectHeaderOnly(Cat({header, name, tail}), 1);
  }
}

TEST(DnsMalformed, TrailingBytesAndShortSections) {
  Bytes q = Query("pgapp.drawbridge.test", kTypeA);
  ExpectHeaderOnly(Cat({q, Hex("00")}), 1);
  ExpectHeaderOnly(WithCount(q, 1, 1), 1);
  ExpectHeaderOnly(WithCount(q, 2, 1), 1);
  ExpectHeaderOnly(WithCount(q, 3, 1), 1);
}

TEST(DnsMalformed, BadOpt) {
  Bytes q = Query("pgapp.drawbridge.test", kTypeA);
  Bytes opt = Hex("00 0029 1000 00000000 0000");
  ExpectHeaderOnly(WithCount(Cat({q, opt, opt}), 3, 2), 1);  // two OPTs
  ExpectHeaderOnly(WithCount(Cat({q, opt}), 1, 1), 1);       // in the answer section
  ExpectHeaderOnly(WithCount(Cat({q, Hex("c0 0c 0029 1000 00000000 0000")}), 3, 1), 1);
  ExpectHeaderOnly(WithCount(Cat({q, Hex("00 0029 1000 00000000 0003 000a 00")}), 3, 1), 1);
  // QTYPE OPT.
  ExpectHeaderOnly(Query("pgapp.drawbridge.test", kTypeOpt), 1);
}

TEST(DnsMalformed, OtherOpcodesAreNotImplemented) {
  for (int opcode : {1, 2, 4, 5, 15}) {
    SCOPED_TRACE(opcode);
    Bytes q = Query("pgapp.drawbridge.test", kTypeSoa,
                    {.flags = static_cast<uint16_t>(opcode << 11 | 0x0100)});
    ExpectHeaderOnly(q, 4);
    // Even without a parsable question.
    ExpectHeaderOnly(Bytes(q.begin(), q.begin() + 12), 4);
  }
}

TEST(DnsMalformed, ResponsesAndRuntsAreDropped) {
  Bytes q = Query("pgapp.drawbridge.test", kTypeA, {.flags = 0x8100});
  EXPECT_TRUE(Answer(TestZone(), q, kDefaultUdpSize).empty());
  EXPECT_TRUE(Answer(TestZone(), q, 0).empty());
  for (size_t n = 0; n < 12; ++n) {
    EXPECT_TRUE(Answer(TestZone(), Bytes(n, 0), kDefaultUdpSize).empty()) << n;
  }
}

TEST(DnsMalformed, CompressedRecordsInAQueryAreFine) {
  // A query carrying an answer record whose owner points at the question (as some clients do
  // for notify-like queries): well-formed, so answered.
  Bytes q = WithCount(
      Cat({Query("pgapp.drawbridge.test", kTypeA), Hex("c0 0c 0001 0001 0000003c 0004 01020304")}),
      1, 1);
  Response r = Decode(Answer(TestZone(), q, kDefaultUdpSize));
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.an, 1);
}

// Every prefix of a well-formed query: nothing under 12 bytes, FORMERR up to the last byte,
// then the answer. Feeding the bytes one at a time is exactly this for a datagram codec.
TEST(DnsMalformed, EveryPrefixOfAQuery) {
  std::vector<Bytes> queries = {
      Query("pgapp.drawbridge.test", kTypeA),
      Query("PgApp.Internal.", kTypeAaaa, {.edns_size = 4096, .dnssec_ok = true}),
      Query("drawbridge.test", kTypeNs, {.edns_size = 1232}),
      WithCount(Cat({Query("pgapp.drawbridge.test", kTypeA),
                     Hex("c0 0c 0001 0001 0000003c 0004 01020304")}),
                1, 1),
  };
  for (const Bytes& full : queries) {
    Bytes complete = Answer(TestZone(), full, kDefaultUdpSize);
    ASSERT_GT(complete.size(), 12u);
    EXPECT_EQ(Decode(complete).rcode(), 0);
    for (size_t n = 0; n < full.size(); ++n) {
      SCOPED_TRACE(n);
      Bytes prefix(full.begin(), full.begin() + n);
      Bytes out = Answer(TestZone(), prefix, kDefaultUdpSize);
      if (n < 12) {
        EXPECT_TRUE(out.empty());
        continue;
      }
      ASSERT_EQ(out.size(), 12u);
      EXPECT_EQ(Decode(out).rcode(), 1);
    }
  }
}

// Every byte of a query replaced by values that matter to the parser: the answer is nothing, or
// a well-formed response with the query's ID, never over the limit.
TEST(DnsMalformed, EveryByteMutated) {
  Bytes full = Query("pgapp.drawbridge.test", kTypeA, {.edns_size = 600});
  for (size_t i = 0; i < full.size(); ++i) {
    for (uint8_t v : {0x00, 0x01, 0x0c, 0x3f, 0x40, 0x80, 0xc0, 0xff}) {
      Bytes q = full;
      q[i] = v;
      for (size_t max_udp : {size_t{0}, size_t{512}, kDefaultUdpSize}) {
        Bytes out = Answer(TestZone(), q, max_udp);
        if (out.empty()) {
          EXPECT_TRUE(q[2] & 0x80) << "dropped a query: byte " << i << " = " << int(v);
          continue;
        }
        EXPECT_LE(out.size(), max_udp ? max_udp : 65535u);
        Message m;
        ASSERT_EQ(ParseMessage(out, &m), ParseError::kNone) << i << " " << int(v);
        EXPECT_EQ(m.header.id, q[0] << 8 | q[1]);
        EXPECT_TRUE(m.header.qr());
      }
    }
  }
}

}  // namespace
}  // namespace drawbridge::dns
