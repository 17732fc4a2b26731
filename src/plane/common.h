// Helpers every aggregate of the plane shares: the timestamp format, the bound on
// compare-and-set retries, the wording of "not found", and the check that an app exists, which
// most operations start with.
// Pure or over the store; thread-safe.
#pragma once

#include <string>

#include "base/status.h"
#include "store/store.h"

namespace drawbridge::plane {

// Compare-and-set attempts before an operation gives up with kConflict.
inline constexpr int kMaxCasRetries = 32;

// UTC now, as the store records it: "2026-11-26T10:00:00Z".
std::string Now();

// A failure of something the plane itself made (a stored release, its own CA's certificate):
// whatever code it had, it is not the caller's input that was wrong.
base::Status AsInternal(const base::Status& s);

// The one wording of every kNotFound the plane returns, so that the CLI and the API say "not
// found" the same way for each kind of thing: `<what> "<name>" not found`, followed by
// ` in app "<app>"` when `app` is not empty: `app "ghost" not found`,
// `machine "x" not found in app "mydb"`, `certificate for "h.example" not found`.
base::Status NotFoundError(const std::string& what, const std::string& name,
                           const std::string& app = "");

// kInvalidArgument for a name that cannot be an app's, kNotFound for an app not in `store`.
base::Status RequireApp(store::Store* store, const std::string& app);

}  // namespace drawbridge::plane
