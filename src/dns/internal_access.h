// Who may read the `internal` zone (docs/dns.md). <app>.internal answers with the machines'
// private addresses, which nobody on the public side of the edge should learn, while the DNS
// server listens on every address, public ones included. So a query for a name in `internal`
// is answered only when its source address lies in one of the configured networks (by
// default loopback); the server answers any other source REFUSED, exactly as for a name
// outside both zones, so a refusal does not even tell which apps exist.
//
// IPv4 networks are kept in their IPv4-mapped IPv6 form (::ffff:a.b.c.d with the prefix plus
// 96): the dual-stack socket sees an IPv4 client as ::ffff:a.b.c.d, and one comparison then
// covers a source given either way. Consequently ::ffff:0:0/96 written as an IPv6 network
// covers every IPv4 source, and ::/0 every source at all.
//
// Pure: text and addresses in, values out; nothing throws. Safe to call from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace drawbridge::dns {

struct SourceNetwork {
  std::array<uint8_t, 16> address{};  // IPv6 or IPv4-mapped, host bits cleared
  int prefix = 0;                     // 0..128, over the 16 bytes
  bool operator==(const SourceNetwork&) const = default;
};

// "192.0.2.0/24", "2001:db8::/32", or an address alone (one host). Host bits are cleared, as
// for the address pools ("192.0.2.7/24" is 192.0.2.0/24). kInvalidArgument, quoting the text,
// for anything else (a host name, a prefix length past 32 or 128, spaces).
base::Result<SourceNetwork> ParseSourceNetwork(std::string_view text);

// The default set: loopback only, 127.0.0.0/8 and ::1/128 (and so ::ffff:127.0.0.0/104).
std::vector<SourceNetwork> LoopbackNetworks();

// Whether `address` (4 bytes for IPv4, 16 for IPv6 or IPv4-mapped) lies in one of `networks`.
// Any other size is not an address: false.
bool SourceAllowed(std::span<const SourceNetwork> networks, std::span<const uint8_t> address);

}  // namespace drawbridge::dns
