#include "admission/source_key.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>

namespace drawbridge::admission {

namespace {

// inet_pton wants a NUL-terminated string; an address is never longer than this (a
// dotted-quad-suffixed IPv6 address is at most 45 characters).
constexpr size_t kMaxIpText = 64;

enum class Family { kNone, kV4, kV6 };

// Parses `ip` into `v4` (4 bytes) or `v6` (16 bytes); an IPv4-mapped IPv6 address becomes its
// IPv4 address.
Family Parse(std::string_view ip, std::array<uint8_t, 4>* v4, std::array<uint8_t, 16>* v6) {
  if (ip.empty() || ip.size() >= kMaxIpText) return Family::kNone;
  char text[kMaxIpText];
  std::memcpy(text, ip.data(), ip.size());
  text[ip.size()] = '\0';
  if (inet_pton(AF_INET, text, v4->data()) == 1) return Family::kV4;
  if (inet_pton(AF_INET6, text, v6->data()) != 1) return Family::kNone;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6->data(), kMapped, sizeof kMapped) == 0) {
    std::memcpy(v4->data(), v6->data() + 12, 4);
    return Family::kV4;
  }
  return Family::kV6;
}

uint64_t Load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

std::string SourceKey(std::string_view ip) {
  std::array<uint8_t, 4> v4{};
  std::array<uint8_t, 16> v6{};
  char text[INET6_ADDRSTRLEN] = {};
  switch (Parse(ip, &v4, &v6)) {
    case Family::kNone:
      return std::string(ip);
    case Family::kV4:
      inet_ntop(AF_INET, v4.data(), text, sizeof text);
      return text;
    case Family::kV6:
      std::memset(v6.data() + 8, 0, 8);
      inet_ntop(AF_INET6, v6.data(), text, sizeof text);
      return std::string(text) + "/64";
  }
  return std::string(ip);
}

SourceId SourceIdOf(std::string_view ip) {
  std::array<uint8_t, 4> v4{};
  std::array<uint8_t, 16> v6{};
  switch (Parse(ip, &v4, &v6)) {
    case Family::kNone:
      break;
    case Family::kV4:
      return {0, (uint64_t{0xffff} << 32) | (uint64_t{v4[0]} << 24) | (uint64_t{v4[1]} << 16) |
                     (uint64_t{v4[2]} << 8) | uint64_t{v4[3]}};
    case Family::kV6:
      return {Load64(v6.data()), 0};
  }
  return SourceId::Unparsable();
}

size_t HashSourceId(const SourceId& id, uint64_t seed) {
  return static_cast<size_t>(Mix(id.hi ^ seed) ^ Mix(id.lo + (seed | 1) * 0x9e3779b97f4a7c15ULL));
}

}  // namespace drawbridge::admission
