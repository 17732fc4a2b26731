#include "fleet/cancel_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>

namespace drawbridge::fleet {

namespace {
// Keeps this MAC apart from any other use of the same key material.
constexpr char kLabel[] = "drawbridge cancel key v1";
constexpr int kNodeShift = 23;
constexpr uint32_t kRandomPidMask = (1u << kNodeShift) - 1;
}  // namespace

CancelKeys::CancelKeys(int node_id, const std::array<uint8_t, 32>& cancel_key)
    : node_id_(node_id), key_(cancel_key) {
  if (node_id < kMinNodeId || node_id > kMaxNodeId) std::abort();  // a caller's bug
}

int CancelKeys::NodeOfPid(uint32_t pid) { return static_cast<int>((pid >> kNodeShift) & 0xFF); }

size_t CancelKeys::MacLength(size_t secret_len) {
  return std::min<size_t>(32, (secret_len + 1) / 2);
}

std::array<uint8_t, 32> CancelKeys::Mac(uint32_t pid, const uint8_t* random, size_t random_len,
                                        size_t secret_len) const {
  // label, pid (big-endian), secret length (big-endian, 2 bytes), the random part (at most
  // pg::kMaxCancelKey bytes, so the message fits on the stack).
  uint8_t message[sizeof kLabel + 6 + pg::kMaxCancelKey];
  uint8_t* p = std::copy(kLabel, kLabel + sizeof kLabel, message);
  *p++ = static_cast<uint8_t>(pid >> 24);
  *p++ = static_cast<uint8_t>(pid >> 16);
  *p++ = static_cast<uint8_t>(pid >> 8);
  *p++ = static_cast<uint8_t>(pid);
  *p++ = static_cast<uint8_t>(secret_len >> 8);
  *p++ = static_cast<uint8_t>(secret_len);
  p = std::copy(random, random + std::min(random_len, pg::kMaxCancelKey), p);
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), message,
           static_cast<size_t>(p - message), out.data(), &len) == nullptr) {
    // Out of memory: a random MAC, which no check accepts by more than chance.
    RAND_bytes(out.data(), static_cast<int>(out.size()));
  }
  return out;
}

pg::CancelKey CancelKeys::Issue(size_t secret_len) const {
  secret_len = std::clamp<size_t>(secret_len, 1, pg::kMaxCancelKey);
  size_t mac_len = MacLength(secret_len);
  size_t random_len = secret_len - mac_len;
  pg::CancelKey key;
  RAND_bytes(reinterpret_cast<unsigned char*>(&key.pid), sizeof key.pid);
  key.pid = (key.pid & kRandomPidMask) | (static_cast<uint32_t>(node_id_) << kNodeShift);
  key.secret.resize(secret_len);
  if (random_len > 0) RAND_bytes(key.secret.data(), static_cast<int>(random_len));
  auto mac = Mac(key.pid, key.secret.data(), random_len, secret_len);
  std::copy(mac.begin(), mac.begin() + static_cast<std::ptrdiff_t>(mac_len),
            key.secret.begin() + static_cast<std::ptrdiff_t>(random_len));
  return key;
}

std::optional<int> CancelKeys::Owner(const pg::CancelKey& key) const {
  size_t secret_len = key.secret.size();
  if (secret_len < 1 || secret_len > pg::kMaxCancelKey) return std::nullopt;
  if ((key.pid & 0x80000000u) != 0) return std::nullopt;
  int node = NodeOfPid(key.pid);
  if (node < kMinNodeId) return std::nullopt;
  size_t mac_len = MacLength(secret_len);
  size_t random_len = secret_len - mac_len;
  auto mac = Mac(key.pid, key.secret.data(), random_len, secret_len);
  if (CRYPTO_memcmp(mac.data(), key.secret.data() + random_len, mac_len) != 0) {
    return std::nullopt;
  }
  return node;
}

}  // namespace drawbridge::fleet
