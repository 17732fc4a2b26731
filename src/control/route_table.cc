#include "control/route_table.h"

#include <algorithm>
#include <utility>

namespace drawbridge::control {

bool ServicePort::HasHandler(const std::string& h) const {
  return std::find(handlers.begin(), handlers.end(), h) != handlers.end();
}

std::vector<int> ServicePort::PublicPorts() const {
  if (port) return {*port};
  std::vector<int> out;
  if (start_port && end_port) {
    for (int p = *start_port; p <= *end_port; ++p) out.push_back(p);
  }
  return out;
}

const char* TargetSessionAttrsName(TargetSessionAttrs attrs) {
  switch (attrs) {
    case TargetSessionAttrs::kAny:
      return "any";
    case TargetSessionAttrs::kReadWrite:
      return "read-write";
    case TargetSessionAttrs::kReadOnly:
      return "read-only";
    case TargetSessionAttrs::kPrimary:
      return "primary";
    case TargetSessionAttrs::kStandby:
      return "standby";
    case TargetSessionAttrs::kPreferStandby:
      return "prefer-standby";
  }
  return "any";
}

std::string Route::HandlerName() const {
  std::string name = pg_tls ? "pg_tls" : tls ? "tls" : "tcp";
  if (proxy_proto != 0) name += "+proxy_proto";
  return name;
}

RouteTable::RouteTable(uint64_t version, std::vector<Entry> entries)
    : version_(version), entries_(std::move(entries)) {}

const Route* RouteTable::Find(const std::string& local_ip, int port) const {
  const Route* any = nullptr;
  for (const auto& e : entries_) {
    if (e.route.public_port != port) continue;
    if (e.local_ip == local_ip) return &e.route;
    if (e.local_ip.empty() && any == nullptr) any = &e.route;
  }
  return any;
}

std::vector<const Route*> RouteTable::FindAll(const std::string& local_ip, int port) const {
  std::vector<const Route*> bound, any;
  for (const auto& e : entries_) {
    if (e.route.public_port != port) continue;
    if (e.local_ip == local_ip) bound.push_back(&e.route);
    if (e.local_ip.empty()) any.push_back(&e.route);
  }
  return bound.empty() ? any : bound;
}

std::vector<int> RouteTable::Ports() const {
  std::vector<int> ports;
  for (const auto& e : entries_) ports.push_back(e.route.public_port);
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

AddressHolders::AddressHolders(uint64_t revision, std::map<std::string, std::set<std::string>> apps)
    : revision_(revision), apps_(std::move(apps)) {}

AddressHolders::Verdict AddressHolders::Check(const std::string& app, const std::string& local_ip,
                                              uint64_t table_version) const {
  if (table_version > revision_) return Verdict::kHeld;
  auto it = apps_.find(app);
  if (it == apps_.end()) return Verdict::kAppDestroyed;
  return it->second.count(local_ip) ? Verdict::kHeld : Verdict::kAddressReleased;
}

std::vector<RouteTable::Entry> RoutesForApp(const AppConfig& config,
                                            const std::vector<Machine>& machines) {
  std::vector<RouteTable::Entry> out;
  // Checked when the config was parsed (config::ParseFlyToml). Should one not parse anyway (a
  // stored release edited by hand), it becomes "::/128", the unspecified address, which is
  // never a client's source: an allowlist fails closed, never widened to "anyone".
  std::vector<base::Cidr> allowed;
  for (const auto& text : config.allowed_sources) {
    auto net = base::ParseCidr(text);
    allowed.push_back(net.ok() ? std::move(*net) : *base::ParseCidr("::/128"));
  }
  for (const auto& service : config.services) {
    if (service.protocol != "tcp") continue;
    for (const auto& port : service.ports) {
      if (port.HasHandler("http")) continue;  // not served yet; deploy warns about it
      for (int public_port : port.PublicPorts()) {
        Route r;
        r.app = config.app;
        r.public_port = public_port;
        r.internal_port = service.internal_port;
        r.pg_tls = port.HasHandler("pg_tls");
        r.tls = port.HasHandler("tls");
        if (port.HasHandler("proxy_proto")) {
          r.proxy_proto =
              port.proxy_proto_options && port.proxy_proto_options->version == "v2" ? 2 : 1;
        }
        if (port.tls_options) r.tls_options = *port.tls_options;
        r.machines = machines;
        r.checks =
            service.tcp_checks.empty() ? std::vector<TcpCheck>{TcpCheck{}} : service.tcp_checks;
        if (service.concurrency) {
          r.soft_limit = service.concurrency->soft_limit.value_or(0);
          r.hard_limit = service.concurrency->hard_limit.value_or(0);
        }
        r.target = service.target_session_attrs.value_or(TargetSessionAttrs::kAny);
        r.allowed_sources = allowed;
        out.push_back({"", std::move(r)});
      }
    }
  }
  return out;
}

}  // namespace drawbridge::control
