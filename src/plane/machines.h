// The machines aggregate: the private-network addresses an app's connections are relayed to.
// Errors follow plane.h. Thread-safe: all state lives in the store.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane {

class Machines {
 public:
  // `store` must outlive this.
  explicit Machines(store::Store* store) : store_(store) {}

  base::Result<MachineInfo> Add(const std::string& app, const std::string& address,
                                const std::string& region, const std::string& role);
  // Oldest first.
  base::Result<std::vector<MachineInfo>> List(const std::string& app);
  base::Status Remove(const std::string& app, const std::string& id);

 private:
  store::Store* store_;
};

}  // namespace drawbridge::plane
