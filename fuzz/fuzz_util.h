// Shared by the fuzz targets: a check that aborts (so libFuzzer and the corpus replay both report
// it), and the chunkings a target feeds its input with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace drawbridge::fuzz {

// FNV-1a of the input: a deterministic seed for chunk sizes, so every mutation of the input also
// re-rolls how it is split while seed files stay plain protocol bytes.
inline uint64_t Fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  return h;
}

// Splits an input into chunks: all at once, one byte at a time, or pseudo-random sizes.
class Chunker {
 public:
  enum class Mode { kWhole, kByteByByte, kRandom };
  Chunker(Mode mode, uint64_t seed) : mode_(mode), state_(seed | 1) {}

  size_t Next(size_t remaining) {
    switch (mode_) {
      case Mode::kWhole:
        return remaining;
      case Mode::kByteByByte:
        return remaining == 0 ? 0 : 1;
      case Mode::kRandom:
        break;
    }
    // xorshift64; sizes mostly small, sometimes up to 4 KiB.
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    size_t max = (state_ & 0x300) == 0 ? 4096 : 16;
    size_t n = 1 + static_cast<size_t>(state_ >> 32) % max;
    return n < remaining ? n : remaining;
  }

 private:
  Mode mode_;
  uint64_t state_;
};

}  // namespace drawbridge::fuzz
