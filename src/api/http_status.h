// The one mapping from a base::StatusCode to the HTTP status of an admin API error
// (docs/admin-api.md). Pure.
#pragma once

#include "base/status.h"

namespace drawbridge::api {

// kInvalidArgument 400, kNotFound 404, kConflict 409, kUnavailable 503, kInternal 500, kOk 200.
int HttpStatusFor(base::StatusCode code);

}  // namespace drawbridge::api
