// Fuzz target for the DNS codec: dns::Answer() on a fixed zone, over TCP and over UDP with two
// limits, and dns::ParseMessage()/MessageWriter. Checks the contract of zone.h and message.h,
// not just the absence of crashes:
//   - nothing is sent for fewer than 12 bytes or a response; everything else gets an answer
//     that parses, with the query's ID, QR set, opcode and RD echoed, within the size limit;
//   - FORMERR and NOTIMP are the header alone; other answers echo the question byte for byte;
//   - TC means empty answer and authority sections; an OPT comes back only for an OPT;
//   - a query the parser accepts is never FORMERR unless its OPT or QTYPE make it so;
//   - names re-encoded with compression parse back to the same names;
//   - the answer is a pure function of its input.
// A prefix of each input, cut at a point derived from it, is checked the same way.
#include <algorithm>
#include <cstdint>

#include "dns/message.h"
#include "dns/zone.h"
#include "fuzz_util.h"

namespace drawbridge::fuzz {
namespace {

using base::ByteSpan;
using dns::Message;
using dns::ParseError;

const dns::Zone& TestZone() {
  static const dns::Zone* zone = [] {
    auto* z = new dns::Zone;
    z->domain = "drawbridge.test";
    z->ns_name = "ns1.drawbridge.test";
    z->ns_addresses = {"127.0.0.53", "fd00::53"};
    z->serial = 7;
    z->ttl = 60;
    z->public_ips["pgapp"] = {"127.0.10.1", "fd5b:d8e0:7a1f::1"};
    z->public_ips["v4"] = {"127.0.10.2"};
    z->public_ips["empty"] = {};
    for (int i = 0; i < 40; ++i) z->public_ips["many"].push_back("10.1.0." + std::to_string(i));
    z->internal_ips["pgapp"] = {"10.0.0.5", "fd00::5", "db.example.com"};
    return z;
  }();
  return *zone;
}

// The question's name as it sits in the query, uncompressed: the answer must echo these bytes.
void CheckQuestionEcho(const Message& query, const Message& answer) {
  FUZZ_CHECK(answer.questions.size() == 1);
  FUZZ_CHECK(answer.questions[0].name == query.questions[0].name);
  FUZZ_CHECK(answer.questions[0].type == query.questions[0].type);
  FUZZ_CHECK(answer.questions[0].klass == query.questions[0].klass);
}

void CheckAnswer(ByteSpan in, size_t max_udp, bool internal_allowed = true) {
  std::vector<uint8_t> out = dns::Answer(TestZone(), in, max_udp, internal_allowed);
  FUZZ_CHECK(out == dns::Answer(TestZone(), in, max_udp, internal_allowed));
  dns::Header qh;
  if (!dns::ParseHeader(in, &qh) || qh.qr()) {
    FUZZ_CHECK(out.empty());
    return;
  }
  FUZZ_CHECK(!out.empty());
  FUZZ_CHECK(out.size() <= (max_udp ? max_udp : dns::kMaxMessage));
  Message a;
  FUZZ_CHECK(dns::ParseMessage(out, &a) == ParseError::kNone);
  FUZZ_CHECK(a.header.id == qh.id);
  FUZZ_CHECK(a.header.qr());
  FUZZ_CHECK(a.header.opcode() == qh.opcode());
  FUZZ_CHECK(a.header.rd() == qh.rd());
  FUZZ_CHECK((a.header.flags & (dns::kFlagRa | dns::kFlagAd | 0x0040)) == 0);
  auto rcode = static_cast<dns::Rcode>(a.header.rcode());
  if (rcode == dns::Rcode::kFormErr || rcode == dns::Rcode::kNotImp) {
    FUZZ_CHECK(out.size() == dns::kHeaderSize);
    FUZZ_CHECK(!a.header.aa());
    FUZZ_CHECK((rcode == dns::Rcode::kNotImp) == (qh.opcode() != dns::kOpcodeQuery));
    return;
  }
  FUZZ_CHECK(rcode == dns::Rcode::kNoError || rcode == dns::Rcode::kServFail ||
             rcode == dns::Rcode::kNxDomain || rcode == dns::Rcode::kRefused);
  FUZZ_CHECK(qh.opcode() == dns::kOpcodeQuery && qh.qdcount == 1);
  Message q;
  FUZZ_CHECK(dns::ParseMessage(in, &q) == ParseError::kNone);
  CheckQuestionEcho(q, a);
  FUZZ_CHECK(a.edns.has_value() == q.edns.has_value());
  if (max_udp && !q.edns) FUZZ_CHECK(out.size() <= dns::kMinUdpPayload);
  if (a.header.tc()) FUZZ_CHECK(a.answers.empty() && a.authority.empty());
  if (rcode == dns::Rcode::kRefused) FUZZ_CHECK(!a.header.aa() && a.answers.empty());
  if (rcode == dns::Rcode::kNxDomain) {
    FUZZ_CHECK(a.header.aa() && a.answers.empty());
    FUZZ_CHECK(a.header.tc() || a.authority.size() == 1);
  }
  if (q.edns && q.edns->version != 0) {
    FUZZ_CHECK(a.edns->extended_rcode == 1 && a.answers.empty());  // BADVERS
  }
  for (const auto& section : {a.answers, a.authority, a.additional}) {
    for (const auto& rr : section) {
      FUZZ_CHECK(rr.klass == dns::kClassIn);
      FUZZ_CHECK(rr.ttl == TestZone().ttl);
      if (rr.type == dns::kTypeA) FUZZ_CHECK(rr.rdata.size() == 4);
      if (rr.type == dns::kTypeAaaa) FUZZ_CHECK(rr.rdata.size() == 16);
    }
  }
}

// Parsed names, written again with compression, parse back the same (up to case: compression
// may borrow an earlier spelling).
void CheckWriterRoundTrip(ByteSpan in) {
  Message m;
  if (dns::ParseMessage(in, &m) != ParseError::kNone) return;
  std::vector<const dns::Name*> names;
  for (const auto& q : m.questions) names.push_back(&q.name);
  for (const auto& section : {&m.answers, &m.authority, &m.additional}) {
    for (const auto& rr : *section) names.push_back(&rr.name);
  }
  dns::MessageWriter w;
  w.WriteHeader(dns::Header{});
  for (const auto* n : names) w.WriteName(*n);
  ByteSpan out = w.bytes();
  size_t pos = dns::kHeaderSize;
  for (const auto* n : names) {
    dns::Name back;
    FUZZ_CHECK(dns::ReadName(out, &pos, &back) == ParseError::kNone);
    FUZZ_CHECK(dns::EqualIgnoreCase(back, *n));
  }
  FUZZ_CHECK(pos == out.size());
}

void CheckAll(ByteSpan in) {
  CheckAnswer(in, 0);
  CheckAnswer(in, dns::kMinUdpPayload);
  CheckAnswer(in, dns::kDefaultUdpSize);
  CheckAnswer(in, dns::kDefaultUdpSize, /*internal_allowed=*/false);
  CheckWriterRoundTrip(in);

  // A source outside gets the same answer as one inside, or a bare REFUSED (for `internal`
  // names): never an answer of its own, so nothing about `internal` reaches it.
  {
    std::vector<uint8_t> inside = dns::Answer(TestZone(), in, 0, true);
    std::vector<uint8_t> outside = dns::Answer(TestZone(), in, 0, false);
    if (outside != inside) {
      Message a;
      FUZZ_CHECK(dns::ParseMessage(outside, &a) == ParseError::kNone);
      FUZZ_CHECK(a.header.rcode() == static_cast<uint8_t>(dns::Rcode::kRefused));
      FUZZ_CHECK(!a.header.aa() && a.answers.empty() && a.authority.empty());
    }
  }

  // A well-formed standard query is FORMERR only for its OPT or QTYPE OPT.
  Message m;
  if (dns::ParseMessage(in, &m) == ParseError::kNone && !m.header.qr() &&
      m.header.opcode() == dns::kOpcodeQuery && m.header.qdcount == 1 &&
      m.questions[0].type != dns::kTypeOpt) {
    Message a;
    FUZZ_CHECK(dns::ParseMessage(dns::Answer(TestZone(), in, 0), &a) == ParseError::kNone);
    FUZZ_CHECK(a.header.rcode() != static_cast<uint8_t>(dns::Rcode::kFormErr));
  }
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  drawbridge::base::ByteSpan in(data, size);
  drawbridge::fuzz::CheckAll(in);
  if (size > 0) {
    uint64_t seed = drawbridge::fuzz::Fnv1a(data, size);
    drawbridge::fuzz::CheckAll(in.first(static_cast<size_t>(seed % size)));
  }
  return 0;
}
