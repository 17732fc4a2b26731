// Which app a connection reaches (docs/connection.md, "Route choice"). A dedicated address has
// one route per port; a shared address has one per app, and the client says which by the TLS
// server name (SNI) or by `app=<name>` in the startup packet's `options`. Pure: a function of
// the candidates and what the client sent.
#pragma once

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
//   - A shared address refuses a client that named nothing it knows.
RouteChoice ChooseRoute(std::span<const control::Route* const> candidates, std::string_view sni,
                        const std::optional<std::string>& app_option);

}  // namespace drawbridge::net
