// The values the control plane's aggregates return (apps, machines, IPs, releases,
// certificates), and the options they share. Plain, immutable once built; how they are stored
// is records.h's business, how the API renders them api/handlers.cc's.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace drawbridge::plane {

struct PlaneOptions {
  std::string domain = "drawbridge.test";
  std::string v4_pool = "127.0.10.0/24";
  std::string v6_pool = "fd5b:d8e0:7a1f::/64";
  int cert_days = 90;          // validity of issued certificates
  int renew_before_days = 30;  // reissue when fewer days remain
  // How long a released dedicated address (`ips release`, `apps destroy`) is kept from the next
  // allocation: clients, poolers and DNS caches keep a resolved address long after it changed
  // hands, and one that reached the next tenant's database at once would be a leak between
  // tenants. 0: reusable at once.
  std::chrono::seconds ip_quarantine = std::chrono::hours(24);
  // The wall clock in Unix seconds that quarantine is measured with; empty: the system clock.
  // Tests inject their own.
  std::function<int64_t()> clock;
};

struct AppInfo {
  std::string name;
  std::string created_at;
  int machines = 0;
  int ips = 0;
  int release = 0;
};

struct MachineInfo {
  std::string id;
  std::string address;
  std::string region;
  std::string role;
  std::string created_at;
};

struct IpInfo {
  std::string address;
  std::string version;  // "v4" or "v6"
  std::string type;     // "v4", "shared_v4", "v6"
  std::string region = "global";
  std::string app;
  std::string created_at;
};

struct ReleaseInfo {
  int version = 0;
  std::string toml;
  std::string file;
  std::string image;
  std::string created_at;
};

struct DeployResult {
  int release = 0;
  std::vector<std::string> warnings;
};

struct ImageInfo {
  std::string registry, repository, tag, version;
  struct MachineVersion {
    std::string id;
    std::string address;
    std::string server_version;  // as observed by the edge; empty until a client connected
    bool operator==(const MachineVersion&) const = default;
  };
  std::vector<MachineVersion> machines;
};

struct CertInfo {
  std::string host;
  std::string app;     // empty for a host that is not <app>.<domain>
  std::string source;  // "ca" (issued by the built-in CA) or "operator" (certs add)
  std::string issuer;
  std::vector<std::string> names;
  int64_t not_after = 0;  // Unix seconds
  std::string created_at;
  std::string cert_pem;  // the chain; never the key
};

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

}  // namespace drawbridge::plane
