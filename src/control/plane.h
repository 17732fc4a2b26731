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
  std::vector<std::pair<std::string, std::string>> machines;  // id -> observed server version
};

struct PlaneOptions {
  std::string domain = "drawbridge.test";
  std::string v4_pool = "127.0.10.0/24";
  std::string v6_pool = "fd5b:d8e0:7a1f::/64";
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

  // What the edge learned from a machine's ParameterStatus (server_version).
  void ObserveServerVersion(const std::string& app, const std::string& address,
                            const std::string& version);

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
