// Public addresses reach this host's wildcard listeners only if the kernel treats them as
// local (docs/architecture.md, "Routing"). 127.0.0.0/8 always is; another pool gets a "local"
// route on lo (`ip route replace local <pool> dev lo`) when the process may add one, and the
// log says how to add it by hand when it may not. Called once per pool, at start-up.
#pragma once

#include "control/ip_pool.h"

namespace drawbridge::net {

void MakeLocallyDeliverable(const control::IpPool& pool);

}  // namespace drawbridge::net
