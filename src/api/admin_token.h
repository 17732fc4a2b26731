// The admin API's bearer token (docs/admin-api.md): created once in the data directory, 0600,
// one line of 64 hex digits, and read from there on every start. Called once, at start-up.
#pragma once

#include <string>

#include "base/status.h"

namespace drawbridge::api {

// The token in `path`, created (from 32 random bytes) if the file is missing or too short.
base::Result<std::string> EnsureAdminToken(const std::string& path);

}  // namespace drawbridge::api
