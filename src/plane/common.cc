#include "plane/common.h"

#include <chrono>
#include <ctime>

#include "plane/apps.h"
#include "plane/records.h"

namespace drawbridge::plane {

std::string Now() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

base::Status AsInternal(const base::Status& s) { return base::Status::Internal(s.message()); }

base::Status RequireApp(store::Store* store, const std::string& app) {
  if (!ValidAppName(app)) return base::Status::InvalidArgument("invalid app name \"" + app + "\"");
  auto kv = store->Get(records::AppKey(app));
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return base::Status::NotFound("app \"" + app + "\" not found");
  return {};
}

}  // namespace drawbridge::plane
