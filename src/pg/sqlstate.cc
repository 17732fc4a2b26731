#include "pg/sqlstate.h"

#include "pg/messages.h"

namespace drawbridge::pg {

std::string_view SqlStateFor(base::StatusCode code) {
  using base::StatusCode;
  switch (code) {
    case StatusCode::kOk:
      return "00000";  // successful_completion
    case StatusCode::kInvalidArgument:
      return sqlstate::kProtocolViolation;
    // libpq and drivers treat class 28 as "do not retry with the same parameters", which is
    // right for a name that matches no app.
    case StatusCode::kNotFound:
      return sqlstate::kInvalidAuthorization;
    case StatusCode::kConflict:
      return "55000";  // object_not_in_prerequisite_state
    // Class 08: poolers and drivers retry a connection failure elsewhere or later.
    case StatusCode::kUnavailable:
      return sqlstate::kConnectionFailure;
    case StatusCode::kInternal:
      return "XX000";  // internal_error
  }
  return "XX000";
}

}  // namespace drawbridge::pg
