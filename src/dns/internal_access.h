// Who may read the `internal` zone (docs/dns.md). <app>.internal answers with the machines'
// private addresses, which nobody on the public side of the edge should learn, while the DNS
// server listens on every address, public ones included. So a query for a name in `internal`
// is answered only when its source address lies in one of the configured networks (by
// default loopback); the server answers any other source REFUSED, exactly as for a name
// outside both zones, so a refusal does not even tell which apps exist.
//
// The networks are base::Cidr, parsed by base::ParseCidr() as fly.toml's `allowed_sources`
// are: an IPv4 client seen on the dual-stack socket as ::ffff:a.b.c.d counts as IPv4, so
// "10.0.0.0/8" covers it either way, "::ffff:0:0/96" covers every IPv4 source, and "::/0"
// every source at all.
//
// Pure: addresses in, values out; nothing throws. Safe to call from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/cidr.h"

namespace drawbridge::dns {

// The default set: loopback only, 127.0.0.0/8 and ::1/128 (and so ::ffff:127.0.0.0/104).
std::vector<base::Cidr> LoopbackNetworks();

// Whether `address` (4 bytes for IPv4, 16 for IPv6 or IPv4-mapped) lies in one of `networks`.
// Any other size is not an address: false.
bool SourceAllowed(std::span<const base::Cidr> networks, std::span<const uint8_t> address);

}  // namespace drawbridge::dns
