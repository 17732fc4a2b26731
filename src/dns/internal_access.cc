#include "dns/internal_access.h"

#include <arpa/inet.h>

#include <algorithm>
#include <string>

#include "base/parse_int.h"

namespace drawbridge::dns {

namespace {

constexpr int kMappedPrefix = 96;  // ::ffff:0:0/96 holds the IPv4-mapped addresses

std::array<uint8_t, 16> Mapped(std::span<const uint8_t> v4) {
  std::array<uint8_t, 16> out{};
  out[10] = 0xff;
  out[11] = 0xff;
  for (size_t i = 0; i < 4; ++i) out[12 + i] = v4[i];
  return out;
}

// Whether the first `prefix` bits of `a` and `b` are equal.
bool SamePrefix(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int prefix) {
  int whole = prefix / 8;
  for (int i = 0; i < whole; ++i) {
    if (a[i] != b[i]) return false;
  }
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

base::Result<SourceNetwork> ParseSourceNetwork(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return base::Status::InvalidArgument("network \"" + std::string(text) + "\": " + why);
  };
  std::string_view addr = text, length;
  bool has_length = false;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    length = text.substr(slash + 1);
    has_length = true;
  }
  std::string addr_text(addr);
  SourceNetwork net;
  int bits = 0;
  uint8_t raw[16] = {};
  if (inet_pton(AF_INET, addr_text.c_str(), raw) == 1) {
    net.address = Mapped(std::span(raw, 4));
    bits = 32;
  } else if (inet_pton(AF_INET6, addr_text.c_str(), raw) == 1) {
    std::copy(raw, raw + 16, net.address.begin());
    bits = 128;
  } else {
    return bad("expected an IPv4 or IPv6 address, optionally with /LENGTH");
  }
  int prefix = bits;
  if (has_length) {
    // Digits only: ParseInt alone would take "-0".
    bool digits = !length.empty() && length.size() <= 3 &&
                  length.find_first_not_of("0123456789") == std::string_view::npos;
    auto n = base::ParseInt(length, 0, bits);
    if (!digits || !n.ok()) {
      return bad("the prefix length must be a number from 0 to " + std::to_string(bits));
    }
    prefix = static_cast<int>(*n);
  }
  net.prefix = bits == 32 ? prefix + kMappedPrefix : prefix;
  for (int bit = net.prefix; bit < 128; ++bit) {
    net.address[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  return net;
}

std::vector<SourceNetwork> LoopbackNetworks() {
  return {*ParseSourceNetwork("127.0.0.0/8"), *ParseSourceNetwork("::1/128")};
}

bool SourceAllowed(std::span<const SourceNetwork> networks, std::span<const uint8_t> address) {
  std::array<uint8_t, 16> a{};
  if (address.size() == 4) {
    a = Mapped(address);
  } else if (address.size() == 16) {
    std::copy(address.begin(), address.end(), a.begin());
  } else {
    return false;
  }
  for (const SourceNetwork& n : networks) {
    if (SamePrefix(a, n.address, n.prefix)) return true;
  }
  return false;
}

}  // namespace drawbridge::dns
