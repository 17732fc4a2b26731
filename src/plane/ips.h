// The public IPs aggregate: dedicated IPv4 and IPv6 addresses from the pools, allocated by
// compare-and-set so that no address is ever given twice (also across processes sharing one
// store), and the shared IPv4 address. An app's first address brings it a certificate. Errors
// follow plane.h. Thread-safe: all state lives in the store.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "control/ip_pool.h"
#include "plane/certificates.h"
#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane {

class Ips {
 public:
  // `store` and `certificates` must outlive this.
  Ips(store::Store* store, control::IpPool v4, control::IpPool v6, Certificates* certificates)
      : store_(store), v4_(v4), v6_(v6), certificates_(certificates) {}

  // `type`: "v4", "shared_v4" or "v6".
  base::Result<IpInfo> Allocate(const std::string& app, const std::string& type);
  // By version, then age, then address.
  base::Result<std::vector<IpInfo>> List(const std::string& app);
  base::Result<IpInfo> Release(const std::string& app, const std::string& address);

 private:
  store::Store* store_;
  control::IpPool v4_, v6_;
  Certificates* certificates_;
};

}  // namespace drawbridge::plane
