// Domain types of the control plane: an app's services as fly.toml describes them
// (docs/fly-toml.md), and its machines. Plain values; validation lives where they are parsed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace drawbridge::control {

struct TlsOptions {
  std::vector<std::string> alpn;
  std::vector<std::string> versions;  // "TLSv1.2", "TLSv1.3"
  std::optional<bool> default_self_signed;

  bool operator==(const TlsOptions&) const = default;
};

struct ProxyProtoOptions {
  std::string version = "v1";  // "v1" or "v2"

  bool operator==(const ProxyProtoOptions&) const = default;
};

struct ServicePort {
  std::optional<int> port;
  std::optional<int> start_port;
  std::optional<int> end_port;
  std::vector<std::string> handlers;  // "tls", "pg_tls", "proxy_proto", "http"
  std::optional<bool> force_https;
  std::optional<TlsOptions> tls_options;
  std::optional<ProxyProtoOptions> proxy_proto_options;

  bool HasHandler(const std::string& h) const;
  // The public ports this entry covers: `port`, or `start_port..end_port`.
  std::vector<int> PublicPorts() const;

  bool operator==(const ServicePort&) const = default;
};

struct Concurrency {
  std::string type = "connections";
  std::optional<int> hard_limit;
  std::optional<int> soft_limit;

  bool operator==(const Concurrency&) const = default;
};

// libpq's target_session_attrs words, which a service's `[services.drawbridge]` section uses to
// say which member of a primary/standby set it wants (docs/fly-toml.md).
enum class TargetSessionAttrs { kAny, kReadWrite, kReadOnly, kPrimary, kStandby, kPreferStandby };

// "any", "read-write", "read-only", "primary", "standby", "prefer-standby".
const char* TargetSessionAttrsName(TargetSessionAttrs attrs);

// One `[[services.tcp_checks]]` entry: a TCP connect to the machine's internal port every
// `interval`, failed when it does not complete within `timeout`; failures within
// `grace_period` after the machine first appeared do not count. Fly's defaults.
struct TcpCheck {
  std::chrono::milliseconds interval{15000};
  std::chrono::milliseconds timeout{2000};
  std::chrono::milliseconds grace_period{1000};

  bool operator==(const TcpCheck&) const = default;
};

struct Service {
  int internal_port = 0;
  std::string protocol = "tcp";
  std::vector<ServicePort> ports;
  std::optional<Concurrency> concurrency;
  std::vector<TcpCheck> tcp_checks;  // as written; empty: Fly's defaults apply (RoutesForApp)
  // `[services.drawbridge] target_session_attrs`; unset: any.
  std::optional<TargetSessionAttrs> target_session_attrs;

  bool operator==(const Service&) const = default;
};

struct AppConfig {
  std::string app;
  std::vector<Service> services;
  // `[drawbridge] allowed_sources`, as written (each a CIDR or an address, checked by the
  // parser with base::ParseCidr); empty: every source.
  std::vector<std::string> allowed_sources;

  bool operator==(const AppConfig&) const = default;
};

struct Machine {
  std::string id;
  std::string address;  // IP literal or host name on the private network

  bool operator==(const Machine&) const = default;
};

}  // namespace drawbridge::control
