#include "net/route_choice.h"

#include "base/host_name.h"

namespace drawbridge::net {

namespace {

// True if `sni` names another host of the zone that `host` ("<app>.<zone>") belongs to.
bool OtherNameOfZone(std::string_view sni, std::string_view host) {
  auto dot = host.find('.');
  if (sni.empty() || dot == std::string_view::npos || base::SameHost(sni, host)) return false;
  return base::UnderZone(sni, host.substr(dot + 1));
}

RouteChoice Refuse(std::string problem) { return RouteChoice{nullptr, std::move(problem)}; }

}  // namespace

RouteChoice ChooseRoute(std::span<const control::Route* const> candidates, std::string_view sni,
                        const std::optional<std::string>& app_option) {
  const control::Route* by_sni = nullptr;
  const control::Route* by_name = nullptr;
  for (const auto* r : candidates) {
    if (!sni.empty() && base::SameHost(sni, r->host)) by_sni = r;
    if (app_option && *app_option == r->app) by_name = r;
  }
  if (by_sni && app_option && by_name != by_sni) {
    return Refuse("the app named in options (\"" + *app_option +
                  "\") does not match the server name \"" + std::string(sni) + "\"");
  }
  if (by_sni || by_name) return RouteChoice{by_sni ? by_sni : by_name, {}};
  if (app_option) return Refuse("unknown app \"" + *app_option + "\" on this address");
  if (candidates.size() == 1 && !candidates.front()->shared) {
    if (!OtherNameOfZone(sni, candidates.front()->host)) return RouteChoice{candidates.front(), {}};
    return Refuse("the server name \"" + std::string(sni) + "\" does not belong to this address");
  }
  return Refuse("this address is shared by apps and the client did not say which one");
}

std::optional<Revocation> CheckRevoked(const control::AddressHolders* holders,
                                       const std::string& app, const std::string& local_ip,
                                       uint64_t table_version) {
  if (holders == nullptr) return std::nullopt;
  switch (holders->Check(app, local_ip, table_version)) {
    case control::AddressHolders::Verdict::kHeld:
      return std::nullopt;
    case control::AddressHolders::Verdict::kAddressReleased:
      return Revocation{"address_released", "terminating connection: address " + local_ip +
                                                " was released from app \"" + app + "\""};
    case control::AddressHolders::Verdict::kAppDestroyed:
      return Revocation{"app_destroyed",
                        "terminating connection: app \"" + app + "\" was destroyed"};
  }
  return std::nullopt;
}

}  // namespace drawbridge::net
