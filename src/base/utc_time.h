// Times as every message, record and answer of the project writes them: RFC 3339 in UTC to the
// second, "2026-11-26T10:00:00Z". Pure; any thread.
#pragma once

#include <cstdint>
#include <string>

namespace drawbridge::base {

std::string UtcText(int64_t unix_seconds);

}  // namespace drawbridge::base
