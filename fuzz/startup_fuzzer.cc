// Fuzz target for pg::StartupMachine. Each input is fed three ways (whole, byte by byte, and in
// pseudo-random chunks derived from the input), playing the caller's part as startup.h describes
// it: Feed({}) after kReply, TlsEstablished() after kStartTls. Checks the contract of every
// action, not just the absence of crashes.
#include <algorithm>
#include <cstdint>

#include "fuzz_util.h"
#include "pg/startup.h"

namespace drawbridge::fuzz {
namespace {

using pg::StartupAction;
using Kind = StartupAction::Kind;

bool Equal(base::ByteSpan a, base::ByteSpan b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

void CheckRefusal(const StartupAction& a) {
  FUZZ_CHECK(a.reason != pg::RefuseReason::kNone && a.reason != pg::RefuseReason::kCount);
  bool silent =
      a.reason == pg::RefuseReason::kBadLength || a.reason == pg::RefuseReason::kBadCancel;
  if (silent) {
    FUZZ_CHECK(a.bytes.empty());
    return;
  }
  // One complete ErrorResponse, FATAL, with a SQLSTATE and a message.
  FUZZ_CHECK(a.bytes.size() >= 6 && a.bytes[0] == 'E');
  FUZZ_CHECK(base::LoadU32(a.bytes.data() + 1) == a.bytes.size() - 1);
  auto fields = pg::ParseErrorBody(base::ByteSpan(a.bytes).subspan(5));
  FUZZ_CHECK(fields.has_value());
  FUZZ_CHECK(fields->severity == "FATAL");
  FUZZ_CHECK(fields->sqlstate.size() == 5);
  FUZZ_CHECK(!fields->message.empty());
}

void Run(base::ByteSpan in, bool tls_required, Chunker chunker) {
  pg::StartupMachine::Options options;
  options.tls_required = tls_required;
  pg::StartupMachine m(options);
  size_t pos = 0;
  int replies = 0;
  bool tls = false;
  bool finished = false;
  while (pos < in.size() && !finished) {
    size_t n = chunker.Next(in.size() - pos);
    StartupAction a = m.Feed(in.subspan(pos, n));
    pos += n;
    while (a.kind == Kind::kReply) {
      // Only a GSSENCRequest is answered in place, with 'N', and only once.
      FUZZ_CHECK(a.bytes.size() == 1 && a.bytes[0] == 'N');
      FUZZ_CHECK(++replies == 1);
      FUZZ_CHECK(!tls);
      a = m.Feed({});
    }
    switch (a.kind) {
      case Kind::kNeedMore:
      case Kind::kReply:
        break;
      case Kind::kStartTls:
        FUZZ_CHECK(!tls);
        if (a.direct_tls) {
          // Only the connection's first byte can start direct TLS, and every byte read so far
          // goes to the TLS engine.
          FUZZ_CHECK(a.bytes.empty());
          FUZZ_CHECK(Equal(a.tls_prefix, in.first(pos)));
          FUZZ_CHECK(a.tls_prefix[0] == pg::kTlsHandshakeRecord);
          FUZZ_CHECK(m.direct_tls());
        } else {
          // 'S', with nothing pipelined behind the SSLRequest (CVE-2021-23214).
          FUZZ_CHECK(a.bytes.size() == 1 && a.bytes[0] == 'S');
          FUZZ_CHECK(a.tls_prefix.empty());
          FUZZ_CHECK(Equal(in.subspan(pos - 8, 8),
                           base::AsBytes(std::string_view("\0\0\0\x08\x04\xd2\x16\x2f", 8))));
        }
        m.TlsEstablished();
        tls = true;
        FUZZ_CHECK(m.in_tls());
        break;
      case Kind::kRefuse:
        CheckRefusal(a);
        finished = true;
        break;
      case Kind::kCancel:
        FUZZ_CHECK(a.bytes.empty());
        FUZZ_CHECK(!a.cancel.secret.empty() && a.cancel.secret.size() <= pg::kMaxCancelKey);
        finished = true;
        break;
      case Kind::kStartup: {
        FUZZ_CHECK(!tls_required || tls);
        FUZZ_CHECK(a.bytes.size() >= pg::kMinStartupPacket &&
                   a.bytes.size() <= pg::kMaxStartupPacket);
        FUZZ_CHECK(base::LoadU32(a.bytes.data()) == a.bytes.size());
        FUZZ_CHECK(a.startup.version >> 16 == 3);
        FUZZ_CHECK(base::LoadU32(a.bytes.data() + 4) == a.startup.version);
        FUZZ_CHECK(a.startup.Find("user") != nullptr);
        // The packet and `rest` are exactly the last bytes fed, in order.
        FUZZ_CHECK(a.rest.size() + a.bytes.size() <= pos);
        FUZZ_CHECK(Equal(a.rest, in.subspan(pos - a.rest.size(), a.rest.size())));
        FUZZ_CHECK(
            Equal(a.bytes, in.subspan(pos - a.rest.size() - a.bytes.size(), a.bytes.size())));
        // And the packet rebuilds from its parameters.
        FUZZ_CHECK(pg::BuildStartupMessage(a.startup) == a.bytes);
        finished = true;
        break;
      }
    }
  }
  // After its last action the machine ignores whatever else arrives.
  if (finished) FUZZ_CHECK(m.Feed(in).kind == Kind::kNeedMore);
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using drawbridge::fuzz::Chunker;
  drawbridge::base::ByteSpan in(data, size);
  uint64_t seed = drawbridge::fuzz::Fnv1a(data, size);
  bool tls_required = (seed & 0x30) != 0;  // mostly the pg_tls default
  drawbridge::fuzz::Run(in, tls_required, Chunker(Chunker::Mode::kWhole, seed));
  drawbridge::fuzz::Run(in, tls_required, Chunker(Chunker::Mode::kByteByByte, seed));
  drawbridge::fuzz::Run(in, tls_required, Chunker(Chunker::Mode::kRandom, seed));
  return 0;
}
