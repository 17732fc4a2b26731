// Public addresses reach this host's wildcard listeners only if the kernel treats them as
// local (docs/architecture.md, "Routing"). 127.0.0.0/8 always is; another pool gets a "local"
// route on lo (`ip route add local <pool> dev lo`) when the process may add one, and the log
// says how to add it by hand when it may not.
//
// Such a route makes every address of the pool this host's, for every program on it, so the
// daemon takes back what it added: the routes it added carry a protocol number of their own
// (kRouteProtocol) and are deleted when it exits (RemoveAdded(), or the destructor). A route for
// the pool that was there already and is not marked is someone else's: it is used and left
// alone. A marked one left by a daemon that could not clean up (kill -9) is taken over and
// removed at exit like one it added.
//
// Owned and used by the main thread of `serve` (not thread-safe); it runs `ip` (iproute2).
#pragma once

#include <string>
#include <vector>

#include "control/ip_pool.h"

namespace drawbridge::net {

// The `proto` of the routes Drawbridge adds: 0xdb, free in iproute2's rt_protos.
inline constexpr int kRouteProtocol = 219;

// True for an IPv4 pool inside 127.0.0.0/8, which needs no route.
bool IsLoopbackV4(const control::IpPool& pool);

class LocalDelivery {
 public:
  LocalDelivery() = default;
  LocalDelivery(const LocalDelivery&) = delete;
  LocalDelivery& operator=(const LocalDelivery&) = delete;
  ~LocalDelivery() { RemoveAdded(); }

  // Makes `pool` locally deliverable (see above); logs what it did or how to do it by hand.
  void MakeLocallyDeliverable(const control::IpPool& pool);
  // Deletes the routes this object added or took over, each once; logs each.
  void RemoveAdded();

 private:
  struct Route {
    bool v6 = false;
    std::string prefix;
  };
  std::vector<Route> added_;
};

}  // namespace drawbridge::net
