// The authoritative answer to one DNS query, as a pure function of an immutable zone snapshot
// and the query bytes (RFC 1034 §4.3.2 for the algorithm, RFC 2308 for negative answers, RFC
// 6891 for EDNS0). No sockets, no clocks, nothing throws; safe to call from any thread on a
// shared `const Zone`.
//
// Two zones are served from one snapshot:
//   <domain>     SOA and NS at the apex; A/AAAA for <app>.<domain> from `public_ips`; A/AAAA for
//                `ns_name` from `ns_addresses` when `ns_name` is inside <domain>.
//   internal     SOA and NS at the apex "internal"; A/AAAA for <app>.internal from
//                `internal_ips`. Entries that are not IP literals (host-name machines) are
//                skipped.
// An app that is a key of the map is a known name even with no addresses (NODATA, not
// NXDOMAIN). Matching is case-insensitive (ASCII, RFC 4343); the question is echoed with its
// case as sent. Names outside both zones are REFUSED, and so is every name in `internal` when
// the caller says the query's source may not read it (internal_access.h).
//
// Decisions beyond the RFCs' musts:
//   - QTYPE ANY (255) is answered with every RRset the name has: A and AAAA at an app, SOA and
//     NS at an apex. Our RRsets are small and UDP answers are still truncated to the client's
//     size, so this gives no more amplification than A+AAAA queries would.
//   - AXFR/IXFR are REFUSED (no zone transfers); QTYPE OPT is FORMERR; classes other than IN
//     and ANY are REFUSED.
//   - FORMERR and NOTIMP answers are the header alone (ID, opcode and RD echoed, counts 0).
//   - Truncation: when the answer and authority sections do not fit in the limit, both are
//     dropped and TC is set (the client retries over TCP); additional-section glue that does not
//     fit is dropped without TC (RFC 2181 §9).
//   - A zone whose `domain` is empty or not a valid name answers SERVFAIL to every query.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace drawbridge::dns {

struct Zone {                             // immutable snapshot
  std::string domain;                     // e.g. "drawbridge.test"
  std::string ns_name;                    // e.g. "ns1.drawbridge.test"; empty: ns1.<domain>
  std::vector<std::string> ns_addresses;  // glue for ns_name (may be empty)
  uint32_t serial = 1;                    // bumps with the store's revision
  uint32_t ttl = 60;                      // of every record, and the negative-caching TTL
  std::map<std::string, std::vector<std::string>> public_ips;    // app -> IP literals (v4, v6)
  std::map<std::string, std::vector<std::string>> internal_ips;  // app -> machine IP literals
};

// The SOA of both zones: MNAME is ns_name, RNAME hostmaster.<domain>, SERIAL zone.serial,
// MINIMUM zone.ttl, and these timers (nothing transfers the zone, so they are nominal).
inline constexpr uint32_t kSoaRefresh = 3600;
inline constexpr uint32_t kSoaRetry = 600;
inline constexpr uint32_t kSoaExpire = 604800;

// The UDP payload size a server advertises in its OPT record and caps UDP answers at: 1232, the
// DNS Flag Day 2020 value that avoids IP fragmentation.
inline constexpr size_t kDefaultUdpSize = 1232;

// The response to one query message. Empty means send nothing: fewer than 12 bytes (no header
// to answer), or a response (QR=1). `max_udp` is our UDP payload limit when the query came over
// UDP (it is also advertised in the OPT record); 0 over TCP. Over UDP the answer is at most
// min(max_udp, client size) bytes, the client size being 512 without EDNS0 and the OPT's size
// (at least 512) with it; over TCP at most 65535. `internal_allowed` false answers every name
// in `internal` (the apex included) REFUSED, as a name outside both zones: the server passes
// SourceAllowed() of the query's source.
std::vector<uint8_t> Answer(const Zone& zone, std::span<const uint8_t> query, size_t max_udp,
                            bool internal_allowed = true);

}  // namespace drawbridge::dns
