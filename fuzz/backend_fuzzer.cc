// Fuzz target for pg::BackendWatcher: the server's startup replies fed whole, byte by byte and in
// pseudo-random chunks must give the same output, the same status and the same observations;
// memory held back stays bounded; every BackendKeyData before ReadyForQuery is rewritten.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "pg/backend_watcher.h"

namespace drawbridge::fuzz {
namespace {

struct Result {
  bool ok = true;
  base::Bytes out;
  bool done = false;
  bool saw_key = false;
  std::string server_version;
  bool has_error = false;
  std::string error_sqlstate;
  int rewrites = 0;
};

Result Run(base::ByteSpan in, Chunker chunker) {
  Result r;
  // The rewritten key has the server's length, so output and input sizes can be compared.
  pg::BackendWatcher w([&r](const pg::CancelKey& k) {
    ++r.rewrites;
    FUZZ_CHECK(!k.secret.empty() && k.secret.size() <= pg::kMaxCancelKey);
    pg::CancelKey mine{0x7eadbeef, base::Bytes(k.secret.size(), 0xa5)};
    return mine;
  });
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = chunker.Next(in.size() - pos);
    size_t before = r.out.size();
    bool was_done = w.done();
    r.ok = w.Feed(in.subspan(pos, n), &r.out).ok();
    pos += n;
    if (!r.ok) break;
    // Nothing is held back beyond one header or one watched message.
    FUZZ_CHECK(r.out.size() <= pos);
    FUZZ_CHECK(pos - r.out.size() <= 1 + pg::BackendWatcher::kMaxWatched);
    if (was_done) FUZZ_CHECK(r.out.size() - before == n);  // after 'Z', a plain pipe
  }
  r.done = w.done();
  r.saw_key = w.saw_key();
  r.server_version = w.server_version();
  r.has_error = w.error().has_value();
  if (r.has_error) r.error_sqlstate = w.error()->sqlstate;
  if (r.ok) FUZZ_CHECK(r.saw_key == (r.rewrites > 0));
  return r;
}

void CheckSame(const Result& a, const Result& b) {
  FUZZ_CHECK(a.ok == b.ok);
  FUZZ_CHECK(a.out == b.out);
  FUZZ_CHECK(a.done == b.done);
  FUZZ_CHECK(a.saw_key == b.saw_key);
  FUZZ_CHECK(a.server_version == b.server_version);
  FUZZ_CHECK(a.has_error == b.has_error);
  FUZZ_CHECK(a.error_sqlstate == b.error_sqlstate);
  FUZZ_CHECK(a.rewrites == b.rewrites);
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using drawbridge::fuzz::Chunker;
  drawbridge::base::ByteSpan in(data, size);
  uint64_t seed = drawbridge::fuzz::Fnv1a(data, size);
  auto whole = drawbridge::fuzz::Run(in, Chunker(Chunker::Mode::kWhole, seed));
  auto bytes = drawbridge::fuzz::Run(in, Chunker(Chunker::Mode::kByteByByte, seed));
  auto random = drawbridge::fuzz::Run(in, Chunker(Chunker::Mode::kRandom, seed));
  drawbridge::fuzz::CheckSame(whole, bytes);
  drawbridge::fuzz::CheckSame(whole, random);
  return 0;
}
