// The apps aggregate: creating, listing (with the counts of the other aggregates) and
// destroying an app, which takes its machines, releases, addresses and certificates (the
// CA's and the operator's for its host, with their keys) with it in one transaction, so that
// no key outlives its app in the store. Errors follow plane.h. Thread-safe: all state lives in the store.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "plane/ips.h"
#include "plane/machines.h"
#include "plane/releases.h"
#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane {

class Apps {
 public:
  // Every pointer must outlive this.
  Apps(store::Store* store, Machines* machines, Ips* ips, Releases* releases)
      : store_(store), machines_(machines), ips_(ips), releases_(releases) {}

  base::Result<AppInfo> Create(const std::string& name);
  base::Result<std::vector<AppInfo>> List();
  base::Status Destroy(const std::string& name);

 private:
  store::Store* store_;
  Machines* machines_;
  Ips* ips_;
  Releases* releases_;
};

// 1-63 lower-case letters, digits and '-', starting with a letter and not ending with '-'.
bool ValidAppName(const std::string& name);

}  // namespace drawbridge::plane
