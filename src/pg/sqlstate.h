// The one mapping from a base::StatusCode to the SQLSTATE of the ErrorResponse the edge sends a
// Postgres client (https://www.postgresql.org/docs/current/errcodes-appendix.html). Pure; the
// edge picks the message, this picks the code, so one kind of failure always gets one code.
#pragma once

#include <string_view>

#include "base/status.h"

namespace drawbridge::pg {

// kInvalidArgument -> 08P01 (the client broke the protocol), kNotFound -> 28000 (no app for
// what the client named: what PostgreSQL says when no pg_hba.conf entry matches), kConflict ->
// 55000, kUnavailable -> 08006 (no machine answered), kInternal -> XX000, kOk -> 00000.
std::string_view SqlStateFor(base::StatusCode code);

}  // namespace drawbridge::pg
