// Which machines a new connection tries, in which order (docs/health.md, "Choosing a machine").
// Pure: the caller takes a Board::View and a rotation counter, and tries the machines in the
// order given until one connects. Any thread.
//
// The order:
//  1. Only eligible machines: healthy ones, and last-resort ones (a passive failure whose
//     backoff has passed). Nothing eligible: kNoHealthy.
//  2. Role tiers by the route's target_session_attrs. A role is "stale" once it is older than
//     `role_stale` (the route's shortest check interval): the machine may have been promoted or
//     demoted since, so a stale wrong role is tried last, after the right role and unknown ones,
//     while a fresh wrong role is never tried.
//       any:                       every machine, one tier
//       read-write, primary:       primaries | unknown | stale standbys
//       read-only, standby:        standbys  | unknown | stale primaries
//       prefer-standby:            standbys  | unknown | primaries
//     Eligible machines but none in a tier: kNoRole.
//  3. Machines at or over the hard limit are left out; if that leaves none: kAllAtHardLimit.
//  4. Within a tier: healthy before last resort, then machines below the soft limit before
//     those at or over it, then fewest open sessions first; machines equal on all of these
//     are rotated by `rotation`, so that equal machines share the load across picks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "control/types.h"
#include "health/machine.h"

namespace drawbridge::health {

struct PickPolicy {
  control::TargetSessionAttrs target = control::TargetSessionAttrs::kAny;
  int soft_limit = 0;  // 0: none
  int hard_limit = 0;  // 0: none
  std::chrono::milliseconds role_stale{15000};  // the route's (shortest) check interval
};

enum class PickOutcome {
  kOk,              // `order` lists the machines to try
  kNoHealthy,       // no machine is eligible (none healthy, none a last resort); also no machines
  kNoRole,          // eligible machines, but none may serve the target
  kAllAtHardLimit,  // some may serve it, every one of them at the hard limit
};

struct Pick {
  PickOutcome outcome = PickOutcome::kOk;
  std::vector<size_t> order;  // indexes into the machines given; empty unless kOk
};

// `rotation`: a counter the caller increments per pick (any value; 0 keeps ties in input order).
Pick ChooseMachines(std::span<const MachineView> machines, const PickPolicy& policy,
                    std::chrono::steady_clock::time_point now, uint64_t rotation = 0);

}  // namespace drawbridge::health
