// Per-thread scratch buffers of the data plane. A connection holds no buffer of its own while
// it waits: it reads into scratch and consumes the bytes (feeds a codec, writes them on, or
// copies what a slow socket would not take) before it waits again, so all connections of a
// thread share these. Each thread (io or relay) has its own; nothing may keep a span of them
// across a wait (a co_await, or a return to the relay loop).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/bytes.h"

namespace drawbridge::net {

inline constexpr size_t kScratchSize = 64 * 1024;

// Plaintext read from a socket or out of a TLS engine.
inline std::span<uint8_t> PlainScratch() {
  thread_local std::vector<uint8_t> buf(kScratchSize);
  return buf;
}
// Ciphertext read from a client's socket, before the TLS engine takes it.
inline std::span<uint8_t> CipherScratch() {
  thread_local std::vector<uint8_t> buf(kScratchSize);
  return buf;
}
// What a TLS engine produced, on its way to the client.
inline base::Bytes& OutScratch() {
  thread_local base::Bytes buf;
  return buf;
}

}  // namespace drawbridge::net
