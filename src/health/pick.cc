#include "health/pick.h"

#include <algorithm>
#include <optional>
#include <tuple>

namespace drawbridge::health {
namespace {

using control::TargetSessionAttrs;

// The tier of `m` for `target` (0 is tried first), or nullopt when it may not serve it.
std::optional<int> Tier(const MachineView& m, TargetSessionAttrs target,
                        std::chrono::milliseconds role_stale,
                        std::chrono::steady_clock::time_point now) {
  const bool stale = now - m.role_learned >= role_stale;
  Role wanted = Role::kPrimary;
  switch (target) {
    case TargetSessionAttrs::kAny:
      return 0;
    case TargetSessionAttrs::kReadWrite:
    case TargetSessionAttrs::kPrimary:
      wanted = Role::kPrimary;
      break;
    case TargetSessionAttrs::kReadOnly:
    case TargetSessionAttrs::kStandby:
      wanted = Role::kStandby;
      break;
    case TargetSessionAttrs::kPreferStandby:
      if (m.role == Role::kStandby) return 0;
      if (m.role == Role::kUnknown) return 1;
      return 2;
  }
  if (m.role == wanted) return 0;
  if (m.role == Role::kUnknown) return 1;
  if (stale) return 2;
  return std::nullopt;
}

}  // namespace

Pick ChooseMachines(std::span<const MachineView> machines, const PickPolicy& policy,
                    std::chrono::steady_clock::time_point now, uint64_t rotation) {
  struct Candidate {
    int tier;
    bool last_resort;
    bool over_soft;
    int sessions;
    size_t index;
    auto Rank() const { return std::tie(tier, last_resort, over_soft, sessions); }
  };
  bool any_eligible = false;
  bool any_role = false;
  std::vector<Candidate> candidates;
  for (size_t i = 0; i < machines.size(); ++i) {
    const MachineView& m = machines[i];
    const bool last_resort = !m.healthy && m.last_resort;
    if (!m.healthy && !last_resort) continue;
    any_eligible = true;
    auto tier = Tier(m, policy.target, policy.role_stale, now);
    if (!tier) continue;
    any_role = true;
    if (policy.hard_limit > 0 && m.sessions >= policy.hard_limit) continue;
    const bool over_soft = policy.soft_limit > 0 && m.sessions >= policy.soft_limit;
    candidates.push_back({*tier, last_resort, over_soft, m.sessions, i});
  }
  Pick pick;
  if (!any_eligible) {
    pick.outcome = PickOutcome::kNoHealthy;
    return pick;
  }
  if (!any_role) {
    pick.outcome = PickOutcome::kNoRole;
    return pick;
  }
  if (candidates.empty()) {
    pick.outcome = PickOutcome::kAllAtHardLimit;
    return pick;
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.Rank() < b.Rank(); });
  // Rotate each run of equal machines by the counter.
  for (size_t begin = 0; begin < candidates.size();) {
    size_t end = begin + 1;
    while (end < candidates.size() && candidates[end].Rank() == candidates[begin].Rank()) ++end;
    const size_t run = end - begin;
    if (run > 1) {
      std::rotate(candidates.begin() + static_cast<ptrdiff_t>(begin),
                  candidates.begin() + static_cast<ptrdiff_t>(begin + rotation % run),
                  candidates.begin() + static_cast<ptrdiff_t>(end));
    }
    begin = end;
  }
  pick.order.reserve(candidates.size());
  for (const auto& c : candidates) pick.order.push_back(c.index);
  return pick;
}

}  // namespace drawbridge::health
