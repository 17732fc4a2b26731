// Which app a connection reaches (docs/connection.md, "Route choice"). A dedicated address has
// one route per port; a shared address has one per app, and the client says which by the TLS
// server name (SNI) or by `app=<name>` in the startup packet's `options`. And whether a
// connection already routed may go on once its app no longer holds the address it came to
// (docs/connection.md, "Released addresses and destroyed apps"). Pure: functions of the
// candidates, what the client sent and what the control plane published.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "control/route_table.h"

namespace drawbridge::net {

struct RouteChoice {
  const control::Route* route = nullptr;  // null: refused, and `problem` says why
  std::string problem;                    // for the client's error message
};

// `candidates`: the routes of the dialled address and port, at least one. `sni`: the server
// name the client sent ("" if none or no TLS). `app_option`: the `app=` option, if any.
//   - SNI naming a candidate's host, or `app=` naming a candidate's app, picks it; if both are
//     given they must agree.
//   - `app=` naming no candidate is refused.
//   - A dedicated address (one candidate) takes a client that named nothing, or a name outside
//     our zone (clients connecting by IP literal or through a name of their own), but not
//     another of our apps' names: stale DNS must never hand a client a database other than
//     the one it named.
//   - A shared address (route.shared) refuses a client that named nothing it knows, even
//     with one app there: the next app to arrive must not inherit another's nameless clients.
RouteChoice ChooseRoute(std::span<const control::Route* const> candidates, std::string_view sni,
                        const std::optional<std::string>& app_option);

// Why a connection must end: its log reason (a static string) and what a pg_tls client is told
// with FATAL 57P01.
struct Revocation {
  const char* reason;  // "address_released" or "app_destroyed"
  std::string message;
};
// Whether a connection routed to `app` on `local_ip` by a route table of version
// `table_version` must end because, by `holders`, the app no longer holds that address.
// nullopt while it does, and always when `holders` is null (static mode: nothing is released).
std::optional<Revocation> CheckRevoked(const control::AddressHolders* holders,
                                       const std::string& app, const std::string& local_ip,
                                       uint64_t table_version);

}  // namespace drawbridge::net
