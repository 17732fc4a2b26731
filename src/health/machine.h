// The names the health library shares with its users (docs/health.md): a machine as the edge
// tracks it, per (app, machine address, internal port), and what a pick needs to know of one.
// Plain values; any thread.
#pragma once

#include <chrono>
#include <compare>
#include <string>

namespace drawbridge::health {

// A machine's Postgres role as the edge last learned it (from `in_hot_standby`); kUnknown until
// a login through the edge reported it.
enum class Role { kUnknown, kPrimary, kStandby };

// "unknown", "primary", "standby".
inline const char* RoleName(Role role) {
  switch (role) {
    case Role::kPrimary:
      return "primary";
    case Role::kStandby:
      return "standby";
    case Role::kUnknown:
      break;
  }
  return "unknown";
}

// One machine of one service: the same address serves several services on several internal
// ports, and each is checked, counted and given a role on its own.
struct MachineKey {
  std::string app;
  std::string address;  // as the route table has it: an IP literal or a host name
  int port = 0;         // the service's internal_port

  auto operator<=>(const MachineKey&) const = default;
};

// What a pick needs of one machine, at one moment (Board::View).
struct MachineView {
  std::string address;
  bool healthy = true;       // every check's last counted result passed, and no passive mark
  bool last_resort = false;  // unhealthy by a passive failure whose backoff has passed
  Role role = Role::kUnknown;
  std::chrono::steady_clock::time_point role_learned{};
  int sessions = 0;
};

}  // namespace drawbridge::health
