#include "plane/plane.h"

#include <utility>

#include "config/fly_toml.h"
#include "plane/records.h"

namespace drawbridge::plane {

using base::Result;
using base::Status;

Result<std::unique_ptr<ControlPlane>> ControlPlane::Create(store::Store* store,
                                                           PlaneOptions options,
                                                           const CertIssuer* issuer) {
  auto v4 = control::IpPool::Parse(options.v4_pool);
  if (!v4.ok()) return v4.status();
  auto v6 = control::IpPool::Parse(options.v6_pool);
  if (!v6.ok()) return v6.status();
  if (v4->v6() || !v6->v6()) {
    return Status::InvalidArgument("the v4 pool must be IPv4 and the v6 pool IPv6");
  }
  if (issuer == nullptr) return Status::InvalidArgument("the control plane needs a CertIssuer");
  return std::unique_ptr<ControlPlane>(
      new ControlPlane(store, std::move(options), *v4, *v6, issuer));
}

ControlPlane::ControlPlane(store::Store* store, PlaneOptions options, control::IpPool v4,
                           control::IpPool v6, const CertIssuer* issuer)
    : store_(store),
      options_(std::move(options)),
      v4_(v4),
      v6_(v6),
      certificates_(store, options_, issuer),
      machines_(store),
      ips_(store, v4, v6, &certificates_, options_),
      releases_(store, options_, &machines_),
      apps_(store, &machines_, &ips_, &releases_) {}

Result<ControlPlane::ZoneData> ControlPlane::BuildZoneData() {
  ZoneData zone;
  auto revision = store_->Revision();
  if (!revision.ok()) return revision.status();
  zone.revision = *revision;
  auto apps = store_->List(records::kAppPrefix);
  if (!apps.ok()) return apps.status();
  for (const auto& kv : *apps) {
    std::string app = records::AppFrom(kv).name;
    auto& pub = zone.public_ips[app];
    auto& internal = zone.internal_ips[app];
    if (auto ips = ips_.List(app); ips.ok()) {
      for (const auto& ip : *ips) pub.push_back(ip.address);
    }
    if (auto machines = machines_.List(app); machines.ok()) {
      for (const auto& m : *machines) {
        if (!control::CanonicalIp(m.address).empty()) internal.push_back(m.address);
      }
    }
  }
  return zone;
}

Result<std::shared_ptr<const control::RouteTable>> ControlPlane::BuildRouteTable(
    const ReleaseParser& parse) {
  auto revision = store_->Revision();
  if (!revision.ok()) return revision.status();
  auto apps = store_->List(records::kAppPrefix);
  if (!apps.ok()) return apps.status();
  std::vector<control::RouteTable::Entry> entries;
  for (const auto& kv : *apps) {
    std::string app = records::AppFrom(kv).name;
    auto latest = releases_.Latest(app);
    if (!latest.ok() || !*latest) continue;  // nothing deployed: nothing exposed
    Result<control::AppConfig> parsed = control::AppConfig{};
    if (parse) {
      parsed = parse(app, **latest);
    } else if (auto p = config::ParseFlyToml((*latest)->toml, (*latest)->file); p.ok()) {
      parsed = std::move(p->config);
    } else {
      parsed = p.status();
    }
    if (!parsed.ok()) continue;
    parsed->app = app;
    auto machines = machines_.List(app);
    auto ips = ips_.List(app);
    if (!machines.ok() || !ips.ok()) continue;
    std::vector<control::Machine> ms;
    for (const auto& m : *machines) ms.push_back({m.id, m.address});
    for (const auto& ip : *ips) {
      for (auto& e : control::RoutesForApp(*parsed, ms)) {
        e.local_ip = ip.address;
        e.route.host = app + "." + options_.domain;
        e.route.shared = ip.type == "shared_v4";
        entries.push_back(std::move(e));
      }
    }
  }
  return std::make_shared<const control::RouteTable>(static_cast<uint64_t>(*revision),
                                                     std::move(entries));
}

}  // namespace drawbridge::plane
