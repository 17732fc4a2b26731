// Networks written as text by an operator (fly.toml's `[drawbridge] allowed_sources`, the
// daemon's `--dns-internal-from`):
// "10.0.0.0/8", "2001:db8::/32", or a bare address meaning that one host. The edge checks a
// client's source address against them once per connection, so the check works on the parsed
// bytes and never allocates more than the address text.
//
// An IPv4 network matches an IPv4 client whether the dual-stack socket reports it as
// "1.2.3.4" or "::ffff:1.2.3.4"; an IPv6 network is compared with the IPv4-mapped form of an
// IPv4 client too, so "::/0" covers every source and "::ffff:0:0/96" every IPv4 one.
//
// Pure: values in, values out; nothing throws. Safe to call from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace drawbridge::base {

struct Cidr {
  // IPv4: the address in bytes[0..3]; IPv6: all 16. Host bits past `prefix` are zero.
  std::array<uint8_t, 16> bytes{};
  int prefix = 0;  // 0..32 (v4) or 0..128 (v6)
  bool v4 = false;
  std::string text;  // canonical: "10.0.0.0/8", "2001:db8::/32"

  bool operator==(const Cidr&) const = default;
};

// "10.0.0.0/8", "::1/128", "127.0.0.2" (a host: /32 or /128). Host bits are cleared
// ("10.1.2.3/8" is 10.0.0.0/8), as for the address pools. kInvalidArgument quoting the text
// for anything else: a host name, a prefix past 32 or 128, a sign, spaces, an empty string.
Result<Cidr> ParseCidr(std::string_view text);

// Whether `ip` (an IP literal: v4, v6, or v4-mapped v6 "::ffff:1.2.3.4", which counts as v4)
// lies in `net`. False when `ip` does not parse.
bool CidrContains(const Cidr& net, std::string_view ip);

// The same for an address in bytes, as a socket gives it: 4 for IPv4, 16 for IPv6 (where the
// IPv4-mapped ::ffff:a.b.c.d counts as IPv4). False for any other size.
bool CidrContainsAddress(const Cidr& net, std::span<const uint8_t> address);

}  // namespace drawbridge::base
