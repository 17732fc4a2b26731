#include "api/http_status.h"

namespace drawbridge::api {

int HttpStatusFor(base::StatusCode code) {
  using base::StatusCode;
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kConflict:
      return 409;
    case StatusCode::kUnavailable:
      return 503;  // the CLI may retry
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

}  // namespace drawbridge::api
