#include "base/cidr.h"

#include <arpa/inet.h>

#include <algorithm>

#include "base/parse_int.h"

namespace drawbridge::base {

namespace {

// The first 12 bytes of an IPv4-mapped IPv6 address, ::ffff:a.b.c.d.
constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// An address's 4 (IPv4) or 16 (IPv6) bytes as 16: IPv4 (and IPv4-mapped IPv6) in
// bytes[0..3] with *v4 set. False for any other size.
bool FromBytes(std::span<const uint8_t> raw, std::array<uint8_t, 16>* out, bool* v4) {
  out->fill(0);
  if (raw.size() == 4) {
    *v4 = true;
  } else if (raw.size() == 16) {
    *v4 = std::equal(raw.begin(), raw.begin() + 12, kMappedPrefix.begin());
    if (*v4) raw = raw.subspan(12);
  } else {
    return false;
  }
  std::copy(raw.begin(), raw.end(), out->begin());
  return true;
}

// An IP literal as FromBytes() gives it.
bool ParseIp(std::string_view ip, std::array<uint8_t, 16>* out, bool* v4) {
  // inet_pton needs a terminated string; an address is at most 45 characters
  // ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255").
  if (ip.empty() || ip.size() > 45 || ip.find('\0') != std::string_view::npos) return false;
  char text[46] = {};
  std::copy(ip.begin(), ip.end(), text);
  uint8_t raw[16] = {};
  if (inet_pton(AF_INET, text, raw) == 1) return FromBytes(std::span(raw, 4), out, v4);
  if (inet_pton(AF_INET6, text, raw) == 1) return FromBytes(std::span(raw, 16), out, v4);
  return false;
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

// Whether an address (in bytes[0..3] with `v4` set, as ParseIp gives it) lies in `net`. An
// IPv6 network is compared with an IPv4 address's mapped form ::ffff:a.b.c.d.
bool Contains(const Cidr& net, const std::array<uint8_t, 16>& a, bool v4) {
  if (net.v4) return v4 && SamePrefix(a, net.bytes, net.prefix);
  if (!v4) return SamePrefix(a, net.bytes, net.prefix);
  std::array<uint8_t, 16> six{};
  std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), six.begin());
  std::copy(a.begin(), a.begin() + 4, six.begin() + 12);
  return SamePrefix(six, net.bytes, net.prefix);
}

std::string Format(const std::array<uint8_t, 16>& bytes, bool v4) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

}  // namespace

Result<Cidr> ParseCidr(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("network \"" + std::string(text) + "\": " + why);
  };
  std::string_view addr = text, length;
  bool has_length = false;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    length = text.substr(slash + 1);
    has_length = true;
  }
  Cidr net;
  if (!ParseIp(addr, &net.bytes, &net.v4)) {
    return bad("expected an IPv4 or IPv6 address, optionally with /LENGTH");
  }
  // "::ffff:10.0.0.0/104" is written in IPv6 bits; "::ffff:10.0.0.1" alone is one v4 host.
  bool mapped = net.v4 && addr.find(':') != std::string_view::npos;
  int bits = net.v4 && !mapped ? 32 : 128;
  int prefix = bits;
  if (has_length) {
    // Digits only, at most three: no sign, no spaces, no "0x".
    bool digits = !length.empty() && length.size() <= 3 &&
                  length.find_first_not_of("0123456789") == std::string_view::npos;
    auto n = ParseInt(length, 0, bits);
    if (!digits || !n.ok()) {
      return bad("the prefix length must be a number from 0 to " + std::to_string(bits));
    }
    prefix = static_cast<int>(*n);
  }
  if (mapped) {
    if (prefix < 96) {
      // Wider than the mapped range: an IPv6 network after all.
      std::array<uint8_t, 16> six{};
      std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), six.begin());
      std::copy(net.bytes.begin(), net.bytes.begin() + 4, six.begin() + 12);
      net.bytes = six;
      net.v4 = false;
    } else {
      prefix -= 96;
    }
  }
  net.prefix = prefix;
  int total = net.v4 ? 32 : 128;
  for (int bit = prefix; bit < total; ++bit) {
    net.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  net.text = Format(net.bytes, net.v4) + "/" + std::to_string(net.prefix);
  return net;
}

bool CidrContains(const Cidr& net, std::string_view ip) {
  std::array<uint8_t, 16> a{};
  bool v4 = false;
  return ParseIp(ip, &a, &v4) && Contains(net, a, v4);
}

bool CidrContainsAddress(const Cidr& net, std::span<const uint8_t> address) {
  std::array<uint8_t, 16> a{};
  bool v4 = false;
  return FromBytes(address, &a, &v4) && Contains(net, a, v4);
}

}  // namespace drawbridge::base
