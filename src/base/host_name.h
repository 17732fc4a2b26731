// Host names as clients send them (SNI, a Host header, `certs add`) compared the way DNS does:
// ASCII case-insensitively, with one trailing root dot ignored. Pure functions; no locale.
#pragma once

#include <string>
#include <string_view>

namespace drawbridge::base {

// Lower-cased ASCII, without one trailing '.': "MyDB.Example.TEST." -> "mydb.example.test".
std::string NormalizeHost(std::string_view name);

// True if both name the same host after NormalizeHost(); an empty name matches nothing.
bool SameHost(std::string_view a, std::string_view b);

// True if `name` lies strictly under `zone` ("a.b.example" under "example" or "b.example"),
// after NormalizeHost() of both; never for the zone itself or an empty zone.
bool UnderZone(std::string_view name, std::string_view zone);

// True if `name` can name a host in DNS (RFC 1123 section 2.1, RFC 3696 section 2), one
// trailing root dot ignored: at most 253 characters, labels of 1-63 ASCII letters, digits and
// '-' that neither start nor end with '-', and a last label that is not all digits, so that
// "999.1.1.1" is a bad IPv4 address rather than a name. No wildcards, no underscores.
bool IsHostName(std::string_view name);

}  // namespace drawbridge::base
