// The releases aggregate: an app's fly.toml as deployed (config, validate, deploy, the release
// history), the image it names, the server versions the edge observed on its machines, and
// what follows from the current release (its services, the public connection string). Errors
// follow plane.h. Thread-safe: releases live in the store; the observed versions, which are
// not persisted, behind a mutex.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "control/types.h"
#include "plane/machines.h"
#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane {

class Releases {
 public:
  // `store` and `machines` must outlive this.
  Releases(store::Store* store, const PlaneOptions& options, Machines* machines)
      : store_(store), options_(options), machines_(machines) {}

  // The current config text: the latest release's, or a default before the first deploy.
  base::Result<ReleaseInfo> CurrentConfig(const std::string& app);
  base::Result<std::vector<std::string>> Validate(const std::string& app, const std::string& toml,
                                                  const std::string& file);
  base::Result<DeployResult> Deploy(const std::string& app, const std::string& toml,
                                    const std::string& file, const std::string& image);
  // Newest first.
  base::Result<std::vector<ReleaseInfo>> List(const std::string& app);
  // The newest release, none before the first deploy; does not check that the app exists.
  base::Result<std::optional<ReleaseInfo>> Latest(const std::string& app);
  base::Result<ImageInfo> Image(const std::string& app);
  base::Result<std::string> ConnectionString(const std::string& app,
                                             const std::string& internal_url);
  base::Result<control::AppConfig> CurrentServices(const std::string& app);

  // What the edge learned from a machine's ParameterStatus (server_version). A version whose
  // major number is not a number in int range (a broken or hostile machine) is not recorded:
  // kInvalidArgument, for the caller to log.
  base::Status ObserveServerVersion(const std::string& app, const std::string& address,
                                    const std::string& version);

 private:
  store::Store* store_;
  PlaneOptions options_;
  Machines* machines_;
  std::mutex observed_mu_;
  // (app, machine address) -> server_version.
  std::map<std::pair<std::string, std::string>, std::string> observed_;
};

std::string DefaultConfig(const std::string& app);
// "flyio/postgres:15.4" -> {registry, repository, tag}.
void SplitImage(const std::string& image, std::string* registry, std::string* repository,
                std::string* tag);

}  // namespace drawbridge::plane
