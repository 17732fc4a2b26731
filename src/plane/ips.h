// The public IPs aggregate: dedicated IPv4 and IPv6 addresses from the pools, allocated by
// compare-and-set so that no address is ever given twice (also across processes sharing one
// store), and the shared IPv4 address. An app's first address brings it a certificate. Errors
// follow plane.h. Thread-safe: all state lives in the store.
//
// Quarantine: a dedicated address that is released (`ips release`, or `apps destroy` for each
// of the app's addresses) is not allocated again until PlaneOptions::ip_quarantine has passed
// since its release. Clients, connection poolers and DNS caches hold on to a resolved address
// for hours; handing it to the next tenant at once would send them to that tenant's database
// (a client that sends SNI is refused there, one that does not is not). The shared IPv4 address
// is never quarantined: it is never any one app's, and on it the client names the app.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
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
  // `store` and `certificates` must outlive this. Reads ip_quarantine and clock of `options`.
  Ips(store::Store* store, control::IpPool v4, control::IpPool v6, Certificates* certificates,
      const PlaneOptions& options);

  // `type`: "v4", "shared_v4" or "v6". A dedicated address is the pool's first one that is
  // neither allocated nor in quarantine; kConflict when there is none, saying how many are in
  // quarantine and when the first of them ends.
  base::Result<IpInfo> Allocate(const std::string& app, const std::string& type);
  // By version, then age, then address.
  base::Result<std::vector<IpInfo>> List(const std::string& app);
  base::Result<IpInfo> Release(const std::string& app, const std::string& address);
  // Every app, each with the public addresses it holds (dedicated and shared; none for an app
  // without any), read at store revision *revision or later: what the edge checks open
  // connections against (control::AddressHolders). An error if any read fails, so that no
  // connection is ended on a partial view.
  base::Result<std::map<std::string, std::set<std::string>>> Holders(int64_t* revision);
  // Adds to `txn` the writes that release `ip` (as List returned it): its record goes, and a
  // dedicated address enters quarantine from now. For releases done with other writes in one
  // transaction (`apps destroy`).
  void AddReleaseOps(const IpInfo& ip, store::Txn* txn) const;

 private:
  int64_t NowSeconds() const;

  store::Store* store_;
  control::IpPool v4_, v6_;
  Certificates* certificates_;
  std::chrono::seconds quarantine_;
  std::function<int64_t()> clock_;  // Unix seconds; empty: the system clock
};

}  // namespace drawbridge::plane
