// Which "source" a client address belongs to, for the per-source limits of admission control
// (docs/admission.md): an IPv4 address is its own source; an IPv6 address counts as its /64,
// because one customer, host or VM is routinely given a whole /64 and picks addresses in it at
// will, so counting single IPv6 addresses would let one host look like 2^64 sources. An
// IPv4-mapped IPv6 address (::ffff:1.2.3.4, what a dual-stack socket reports for an IPv4
// client) is the IPv4 address. Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace drawbridge::admission {

// The text form: "192.0.2.7", "2001:db8:1:2::/64". An address that does not parse is its own
// key, as given.
std::string SourceKey(std::string_view ip);

// The same grouping in 16 bytes, what the source table stores (no allocation per source). Two
// addresses have equal keys exactly when their SourceKey() texts are equal. IPv4 is stored as
// its IPv4-mapped form and IPv6 as its /64 with the low 64 bits zero, so the two never meet
// (a mapped address has 0xffff in its low half); every unparsable address shares the one key
// Unparsable() (all ones), which no address produces.
struct SourceId {
  uint64_t hi = 0, lo = 0;
  bool operator==(const SourceId&) const = default;
  static SourceId Unparsable() { return {~uint64_t{0}, ~uint64_t{0}}; }
};
SourceId SourceIdOf(std::string_view ip);

// Mixes the id with a per-process random seed, so that a client cannot choose addresses that
// all land in one shard or one hash bucket of the source table.
size_t HashSourceId(const SourceId& id, uint64_t seed);

}  // namespace drawbridge::admission
