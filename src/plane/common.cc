#include "plane/common.h"

#include <chrono>
#include <utility>

#include "base/utc_time.h"
#include "plane/apps.h"
#include "plane/records.h"

namespace drawbridge::plane {

std::string Now() {
  return base::UtcText(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()));
}

base::Status AsInternal(const base::Status& s) { return base::Status::Internal(s.message()); }

base::Status NotFoundError(const std::string& what, const std::string& name,
                           const std::string& app) {
  std::string message = what + " \"" + name + "\" not found";
  if (!app.empty()) message += " in app \"" + app + "\"";
  return base::Status::NotFound(std::move(message));
}

base::Status RequireApp(store::Store* store, const std::string& app) {
  if (!ValidAppName(app)) return base::Status::InvalidArgument("invalid app name \"" + app + "\"");
  auto kv = store->Get(records::AppKey(app));
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return NotFoundError("app", app);
  return {};
}

}  // namespace drawbridge::plane
