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

}  // namespace drawbridge::base
