#include "health/pick.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace drawbridge::health {
namespace {

using control::TargetSessionAttrs;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

const Clock::time_point kNow = Clock::time_point{} + std::chrono::hours(1);

MachineView M(std::string address, Role role = Role::kUnknown, int sessions = 0,
              milliseconds role_age = milliseconds(0)) {
  MachineView m;
  m.address = std::move(address);
  m.role = role;
  m.role_learned = kNow - role_age;
  m.sessions = sessions;
  return m;
}

std::vector<std::string> Order(const std::vector<MachineView>& machines, const Pick& pick) {
  std::vector<std::string> out;
  for (size_t i : pick.order) out.push_back(machines.at(i).address);
  return out;
}

Pick Choose(const std::vector<MachineView>& machines, PickPolicy policy = {},
            uint64_t rotation = 0) {
  return ChooseMachines(machines, policy, kNow, rotation);
}

PickPolicy Target(TargetSessionAttrs target) {
  PickPolicy p;
  p.target = target;
  p.role_stale = milliseconds(15000);
  return p;
}

using V = std::vector<std::string>;
const milliseconds kFresh(1000);
const milliseconds kStale(20000);

TEST(Pick, NoMachinesIsNoHealthy) {
  Pick p = Choose({});
  EXPECT_EQ(p.outcome, PickOutcome::kNoHealthy);
  EXPECT_TRUE(p.order.empty());
}

TEST(Pick, AnyTakesEveryHealthyMachineInInputOrder) {
  std::vector<MachineView> ms = {M("a", Role::kPrimary, 0, kFresh), M("b", Role::kStandby, 0, kFresh),
                                 M("c")};
  Pick p = Choose(ms, Target(TargetSessionAttrs::kAny));
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"a", "b", "c"}));
}

TEST(Pick, UnhealthyMachinesAreLeftOut) {
  std::vector<MachineView> ms = {M("a"), M("b"), M("c")};
  ms[1].healthy = false;
  Pick p = Choose(ms);
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"a", "c"}));
}

TEST(Pick, NoneHealthyIsNoHealthy) {
  std::vector<MachineView> ms = {M("a"), M("b")};
  for (auto& m : ms) m.healthy = false;
  for (auto t : {TargetSessionAttrs::kAny, TargetSessionAttrs::kReadWrite,
                 TargetSessionAttrs::kStandby}) {
    Pick p = Choose(ms, Target(t));
    EXPECT_EQ(p.outcome, PickOutcome::kNoHealthy);
    EXPECT_TRUE(p.order.empty());
  }
}

TEST(Pick, LastResortComesAfterHealthyAndAloneStillServes) {
  std::vector<MachineView> ms = {M("a"), M("b"), M("c")};
  ms[0].healthy = false;
  ms[0].last_resort = true;
  Pick p = Choose(ms);
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"b", "c", "a"}));

  // Only last-resort machines: they are tried.
  ms[1].healthy = ms[2].healthy = false;
  ms[2].last_resort = true;
  p = Choose(ms);
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"a", "c"}));
}

TEST(Pick, LastResortFlagOnAHealthyMachineMeansNothing) {
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 3), M("b", Role::kUnknown, 1)};
  ms[1].last_resort = true;
  Pick p = Choose(ms);
  EXPECT_EQ(Order(ms, p), (V{"b", "a"}));
}

TEST(Pick, LastResortStaysWithinItsRoleTier) {
  // read-write: a last-resort primary still comes before a healthy unknown machine.
  std::vector<MachineView> ms = {M("u"), M("p", Role::kPrimary, 0, kFresh)};
  ms[1].healthy = false;
  ms[1].last_resort = true;
  Pick p = Choose(ms, Target(TargetSessionAttrs::kReadWrite));
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"p", "u"}));
}

std::vector<MachineView> Mixed(milliseconds age) {
  return {M("s", Role::kStandby, 0, age), M("u"), M("p", Role::kPrimary, 0, age)};
}

TEST(Pick, ReadWriteAndPrimaryWithFreshRoles) {
  for (auto t : {TargetSessionAttrs::kReadWrite, TargetSessionAttrs::kPrimary}) {
    auto ms = Mixed(kFresh);
    Pick p = Choose(ms, Target(t));
    ASSERT_EQ(p.outcome, PickOutcome::kOk) << TargetSessionAttrsName(t);
    // A fresh standby is never tried.
    EXPECT_EQ(Order(ms, p), (V{"p", "u"})) << TargetSessionAttrsName(t);
  }
}

TEST(Pick, ReadWriteAndPrimaryWithStaleRoles) {
  for (auto t : {TargetSessionAttrs::kReadWrite, TargetSessionAttrs::kPrimary}) {
    auto ms = Mixed(kStale);
    Pick p = Choose(ms, Target(t));
    ASSERT_EQ(p.outcome, PickOutcome::kOk);
    // A stale standby may have been promoted: tried last.
    EXPECT_EQ(Order(ms, p), (V{"p", "u", "s"})) << TargetSessionAttrsName(t);
  }
}

TEST(Pick, ReadOnlyAndStandbyWithFreshRoles) {
  for (auto t : {TargetSessionAttrs::kReadOnly, TargetSessionAttrs::kStandby}) {
    auto ms = Mixed(kFresh);
    Pick p = Choose(ms, Target(t));
    ASSERT_EQ(p.outcome, PickOutcome::kOk);
    EXPECT_EQ(Order(ms, p), (V{"s", "u"})) << TargetSessionAttrsName(t);
  }
}

TEST(Pick, ReadOnlyAndStandbyWithStaleRoles) {
  for (auto t : {TargetSessionAttrs::kReadOnly, TargetSessionAttrs::kStandby}) {
    auto ms = Mixed(kStale);
    Pick p = Choose(ms, Target(t));
    ASSERT_EQ(p.outcome, PickOutcome::kOk);
    EXPECT_EQ(Order(ms, p), (V{"s", "u", "p"})) << TargetSessionAttrsName(t);
  }
}

TEST(Pick, PreferStandbyTakesPrimariesLastFreshOrNot) {
  for (auto age : {kFresh, kStale}) {
    auto ms = Mixed(age);
    Pick p = Choose(ms, Target(TargetSessionAttrs::kPreferStandby));
    ASSERT_EQ(p.outcome, PickOutcome::kOk);
    EXPECT_EQ(Order(ms, p), (V{"s", "u", "p"}));
  }
}

TEST(Pick, AnyIgnoresRoles) {
  for (auto age : {kFresh, kStale}) {
    auto ms = Mixed(age);
    Pick p = Choose(ms, Target(TargetSessionAttrs::kAny));
    ASSERT_EQ(p.outcome, PickOutcome::kOk);
    EXPECT_EQ(Order(ms, p), (V{"s", "u", "p"}));
  }
}

TEST(Pick, StalenessFollowsTheRouteInterval) {
  // Learned 20 s ago: stale for a 15 s interval, fresh for a 60 s one.
  std::vector<MachineView> ms = {M("s", Role::kStandby, 0, kStale)};
  PickPolicy policy = Target(TargetSessionAttrs::kReadWrite);
  EXPECT_EQ(Choose(ms, policy).outcome, PickOutcome::kOk);
  policy.role_stale = milliseconds(60000);
  EXPECT_EQ(Choose(ms, policy).outcome, PickOutcome::kNoRole);
  // Exactly one interval old counts as stale.
  policy.role_stale = kStale;
  EXPECT_EQ(Choose(ms, policy).outcome, PickOutcome::kOk);
}

TEST(Pick, NoMachineWithTheRole) {
  std::vector<MachineView> standbys = {M("s1", Role::kStandby, 0, kFresh),
                                       M("s2", Role::kStandby, 0, kFresh)};
  EXPECT_EQ(Choose(standbys, Target(TargetSessionAttrs::kReadWrite)).outcome,
            PickOutcome::kNoRole);
  EXPECT_EQ(Choose(standbys, Target(TargetSessionAttrs::kPrimary)).outcome, PickOutcome::kNoRole);
  std::vector<MachineView> primaries = {M("p", Role::kPrimary, 0, kFresh)};
  EXPECT_EQ(Choose(primaries, Target(TargetSessionAttrs::kReadOnly)).outcome,
            PickOutcome::kNoRole);
  EXPECT_EQ(Choose(primaries, Target(TargetSessionAttrs::kStandby)).outcome,
            PickOutcome::kNoRole);
  EXPECT_EQ(Choose(primaries, Target(TargetSessionAttrs::kPreferStandby)).outcome,
            PickOutcome::kOk);
}

TEST(Pick, TheOnlyRightMachineUnhealthyIsNoRoleNotNoHealthy) {
  // The primary is down, a fresh standby is up: for read-write nothing may serve.
  std::vector<MachineView> ms = {M("p", Role::kPrimary, 0, kFresh),
                                 M("s", Role::kStandby, 0, kFresh)};
  ms[0].healthy = false;
  EXPECT_EQ(Choose(ms, Target(TargetSessionAttrs::kReadWrite)).outcome, PickOutcome::kNoRole);
  EXPECT_EQ(Order(ms, Choose(ms, Target(TargetSessionAttrs::kAny))), (V{"s"}));
}

TEST(Pick, FewestSessionsFirst) {
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 5), M("b", Role::kUnknown, 2),
                                 M("c", Role::kUnknown, 9), M("d", Role::kUnknown, 0)};
  EXPECT_EQ(Order(ms, Choose(ms)), (V{"d", "b", "a", "c"}));
}

TEST(Pick, SoftLimitPutsFullMachinesLast) {
  PickPolicy policy;
  policy.soft_limit = 3;
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 3), M("b", Role::kUnknown, 2),
                                 M("c", Role::kUnknown, 7), M("d", Role::kUnknown, 1)};
  EXPECT_EQ(Order(ms, Choose(ms, policy)), (V{"d", "b", "a", "c"}));
  // Every machine at or over the soft limit: still served, least loaded first.
  ms = {M("a", Role::kUnknown, 4), M("b", Role::kUnknown, 3)};
  Pick p = Choose(ms, policy);
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"b", "a"}));
}

TEST(Pick, HealthyOverSoftLimitBeforeLastResortBelowIt) {
  // A machine over its soft limit still serves; one that failed a connect probably does not.
  PickPolicy policy;
  policy.soft_limit = 2;
  std::vector<MachineView> ms = {M("down", Role::kUnknown, 0), M("busy", Role::kUnknown, 5)};
  ms[0].healthy = false;
  ms[0].last_resort = true;
  EXPECT_EQ(Order(ms, Choose(ms, policy)), (V{"busy", "down"}));
}

TEST(Pick, HardLimitExcludesFullMachines) {
  PickPolicy policy;
  policy.soft_limit = 1;
  policy.hard_limit = 2;
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 2), M("b", Role::kUnknown, 1),
                                 M("c", Role::kUnknown, 5)};
  Pick p = Choose(ms, policy);
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"b"}));
}

TEST(Pick, AllAtHardLimit) {
  PickPolicy policy;
  policy.hard_limit = 2;
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 2), M("b", Role::kUnknown, 3)};
  Pick p = Choose(ms, policy);
  EXPECT_EQ(p.outcome, PickOutcome::kAllAtHardLimit);
  EXPECT_TRUE(p.order.empty());
  // A last-resort machine at the hard limit counts as full too.
  ms[0].healthy = false;
  ms[0].last_resort = true;
  EXPECT_EQ(Choose(ms, policy).outcome, PickOutcome::kAllAtHardLimit);
  // An unhealthy (not eligible) machine below the limit does not help.
  ms.push_back(M("c"));
  ms.back().healthy = false;
  EXPECT_EQ(Choose(ms, policy).outcome, PickOutcome::kAllAtHardLimit);
}

TEST(Pick, HardLimitOnlyCountsMachinesOfTheRole) {
  // read-write: the primary is full; the fresh standby below the limit may not serve.
  PickPolicy policy = Target(TargetSessionAttrs::kReadWrite);
  policy.hard_limit = 1;
  std::vector<MachineView> ms = {M("p", Role::kPrimary, 1, kFresh),
                                 M("s", Role::kStandby, 0, kFresh)};
  EXPECT_EQ(Choose(ms, policy).outcome, PickOutcome::kAllAtHardLimit);
  // With an unknown machine below the limit, that one is tried.
  ms.push_back(M("u"));
  Pick p = Choose(ms, policy);
  ASSERT_EQ(p.outcome, PickOutcome::kOk);
  EXPECT_EQ(Order(ms, p), (V{"u"}));
}

TEST(Pick, ZeroLimitsMeanNone) {
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 100000)};
  EXPECT_EQ(Choose(ms).outcome, PickOutcome::kOk);
}

TEST(Pick, TierBeatsLoad) {
  // read-write: a busy primary before an idle unknown machine.
  std::vector<MachineView> ms = {M("u", Role::kUnknown, 0), M("p", Role::kPrimary, 50, kFresh)};
  EXPECT_EQ(Order(ms, Choose(ms, Target(TargetSessionAttrs::kReadWrite))), (V{"p", "u"}));
}

TEST(Pick, RotationSharesTiesEvenly) {
  std::vector<MachineView> ms = {M("a"), M("b"), M("c")};
  std::map<std::string, int> first;
  for (uint64_t r = 0; r < 300; ++r) {
    Pick p = Choose(ms, {}, r);
    ASSERT_EQ(p.order.size(), 3u);
    std::set<size_t> distinct(p.order.begin(), p.order.end());
    EXPECT_EQ(distinct.size(), 3u);
    first[ms[p.order[0]].address]++;
  }
  EXPECT_EQ(first["a"], 100);
  EXPECT_EQ(first["b"], 100);
  EXPECT_EQ(first["c"], 100);
}

TEST(Pick, RotationOnlyMixesEqualMachines) {
  // a and c are tied (1 session), b has none: b always first, then a/c in turn.
  std::vector<MachineView> ms = {M("a", Role::kUnknown, 1), M("b"), M("c", Role::kUnknown, 1)};
  EXPECT_EQ(Order(ms, Choose(ms, {}, 0)), (V{"b", "a", "c"}));
  EXPECT_EQ(Order(ms, Choose(ms, {}, 1)), (V{"b", "c", "a"}));
  EXPECT_EQ(Order(ms, Choose(ms, {}, 2)), (V{"b", "a", "c"}));
}

TEST(Pick, RotationWithHugeCounter) {
  std::vector<MachineView> ms = {M("a"), M("b")};
  Pick p = Choose(ms, {}, UINT64_MAX);
  EXPECT_EQ(Order(ms, p), (V{"b", "a"}));
}

}  // namespace
}  // namespace drawbridge::health
