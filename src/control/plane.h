// The control plane: apps, machines, IPs, releases, kept in a Store, and the route table the
// data plane serves, rebuilt whenever the store changes. Every operation validates its input
// and returns an Error with an HTTP-ish code the API maps to a status. Thread-safe: all state
// lives in the store; concurrent allocations are settled by compare-and-set transactions.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "control/ip_pool.h"
#include "control/route_table.h"
#include "store/store.h"

namespace drawbridge::control {

enum class ErrorCode { kOk, kInvalid, kNotFound, kConflict, kInternal };

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// A value or an Error.
template <typename T>
struct Outcome {
  Outcome(T v) : value(std::move(v)) {}  // NOLINT
  Outcome(Error e) : error(std::move(e)) {}  // NOLINT
  bool ok() const { return value.has_value(); }
  std::optional<T> value;
  Error error;
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
  std::string cert_pem;   // the chain; never the key
};

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

struct PlaneOptions {
  std::string domain = "drawbridge.test";
  std::string v4_pool = "127.0.10.0/24";
  std::string v6_pool = "fd5b:d8e0:7a1f::/64";
  std::string ca_dir;          // the built-in CA; empty: no certificates are issued
  int cert_days = 90;          // validity of issued certificates
  int renew_before_days = 30;  // reissue when fewer days remain
};

class ControlPlane {
 public:
  static base::Result<std::unique_ptr<ControlPlane>> Create(store::Store* store,
                                                           PlaneOptions options);

  Outcome<AppInfo> CreateApp(const std::string& name);
  Outcome<std::vector<AppInfo>> ListApps();
  Outcome<bool> DestroyApp(const std::string& name);

  Outcome<MachineInfo> AddMachine(const std::string& app, const std::string& address,
                                  const std::string& region, const std::string& role);
  Outcome<std::vector<MachineInfo>> ListMachines(const std::string& app);
  Outcome<bool> RemoveMachine(const std::string& app, const std::string& id);

  Outcome<IpInfo> AllocateIp(const std::string& app, const std::string& type);
  Outcome<std::vector<IpInfo>> ListIps(const std::string& app);
  Outcome<IpInfo> ReleaseIp(const std::string& app, const std::string& address);

  // The current config text: the latest release's, or a default before the first deploy.
  Outcome<ReleaseInfo> CurrentConfig(const std::string& app);
  Outcome<std::vector<std::string>> Validate(const std::string& app, const std::string& toml,
                                             const std::string& file);
  Outcome<DeployResult> Deploy(const std::string& app, const std::string& toml,
                               const std::string& file, const std::string& image);
  Outcome<std::vector<ReleaseInfo>> ListReleases(const std::string& app);
  Outcome<ImageInfo> Image(const std::string& app);
  Outcome<std::string> ConnectionString(const std::string& app, const std::string& internal_url);
  Outcome<AppConfig> CurrentServices(const std::string& app);

  // Certificates: one per app host from the built-in CA when the app gets an address; the
  // operator's own replace it. Keys stay in the store and are never returned.
  Outcome<CertInfo> AddCert(const std::string& host, const std::string& cert_pem,
                            const std::string& key_pem);
  Outcome<std::vector<CertInfo>> ListCerts();
  Outcome<CertInfo> ShowCert(const std::string& host);
  Outcome<std::string> CaPem();
  // Issues the app's certificate if it has none or if it is due for renewal.
  Outcome<bool> EnsureAppCert(const std::string& app);
  // Renews every CA-issued certificate that is due; returns how many were renewed.
  int RenewDueCerts();
  // Every certificate with its key, for the data plane's CertSet.
  std::vector<PemPair> CertPems();

  // What the edge learned from a machine's ParameterStatus (server_version).
  void ObserveServerVersion(const std::string& app, const std::string& address,
                            const std::string& version);

  // Names for the DNS zone: every app with its public addresses and its machines' addresses.
  struct ZoneData {
    int64_t revision = 0;
    std::map<std::string, std::vector<std::string>> public_ips;
    std::map<std::string, std::vector<std::string>> internal_ips;
  };
  base::Result<ZoneData> BuildZoneData();

  // Builds the route table from the store: every deployed app's services on each of its IPs.
  base::Result<std::shared_ptr<const RouteTable>> BuildRouteTable();

  const PlaneOptions& options() const { return options_; }
  const IpPool& v4_pool() const { return v4_; }
  const IpPool& v6_pool() const { return v6_; }
  store::Store* store() const { return store_; }

 private:
  ControlPlane(store::Store* store, PlaneOptions options, IpPool v4, IpPool v6)
      : store_(store), options_(std::move(options)), v4_(v4), v6_(v6) {}
  Outcome<bool> RequireApp(const std::string& app);
  Outcome<std::optional<ReleaseInfo>> LatestRelease(const std::string& app);

  store::Store* store_;
  PlaneOptions options_;
  IpPool v4_, v6_;
  std::mutex observed_mu_;
  std::map<std::pair<std::string, std::string>, std::string> observed_;
};

// Validation of names users send.
bool ValidAppName(const std::string& name);
std::string DefaultConfig(const std::string& app);
// "flyio/postgres:15.4" -> {registry, repository, tag}.
void SplitImage(const std::string& image, std::string* registry, std::string* repository,
                std::string* tag);

}  // namespace drawbridge::control
