// Domain types of the control plane: an app's services as fly.toml describes them
// (docs/fly-toml.md), and its machines. Plain values; validation lives where they are parsed.
#pragma once

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

struct Service {
  int internal_port = 0;
  std::string protocol = "tcp";
  std::vector<ServicePort> ports;
  std::optional<Concurrency> concurrency;

  bool operator==(const Service&) const = default;
};

struct AppConfig {
  std::string app;
  std::vector<Service> services;

  bool operator==(const AppConfig&) const = default;
};

struct Machine {
  std::string id;
  std::string address;  // IP literal or host name on the private network

  bool operator==(const Machine&) const = default;
};

}  // namespace drawbridge::control
