// The control plane: apps, machines, IPs, releases and certificates kept in a Store, one
// aggregate each (apps.h, machines.h, ips.h, releases.h, certificates.h), and the views the
// publisher builds from all of them (the DNS zone's names, the route table). Every operation
// validates its input and fails with a base::Status whose code the API maps to an HTTP status
// (api/http_status.h): kInvalidArgument for bad input, kNotFound, kConflict (taken, full, or
// lost a race), kInternal for the store or for what the plane itself made. How each record is
// stored is records.h's. Certificates come from a CertIssuer (cert_issuer.h), so the plane
// links no OpenSSL.
//
// Thread-safe: all state lives in the store (concurrent allocations are settled by
// compare-and-set transactions), except the server versions Releases keeps behind a mutex.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "control/ip_pool.h"
#include "control/route_table.h"
#include "control/types.h"
#include "plane/apps.h"
#include "plane/cert_issuer.h"
#include "plane/certificates.h"
#include "plane/ips.h"
#include "plane/machines.h"
#include "plane/releases.h"
#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane {

class ControlPlane {
 public:
  // `store` and `issuer` must outlive the plane. kInvalidArgument for a pool that does not
  // parse or is of the wrong family.
  static base::Result<std::unique_ptr<ControlPlane>> Create(store::Store* store,
                                                            PlaneOptions options,
                                                            const CertIssuer* issuer);
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  Apps& apps() { return apps_; }
  Machines& machines() { return machines_; }
  Ips& ips() { return ips_; }
  Releases& releases() { return releases_; }
  Certificates& certificates() { return certificates_; }

  // Names for the DNS zone: every app with its public addresses and its machines' addresses.
  struct ZoneData {
    int64_t revision = 0;
    std::map<std::string, std::vector<std::string>> public_ips;
    std::map<std::string, std::vector<std::string>> internal_ips;
  };
  base::Result<ZoneData> BuildZoneData();

  // Parses an app's latest release for BuildRouteTable. Without one, every build parses every
  // app's fly.toml; the publisher passes one that keeps parsed configs across builds.
  using ReleaseParser = std::function<base::Result<control::AppConfig>(const std::string& app,
                                                                       const ReleaseInfo& release)>;
  // Builds the route table from the store: every deployed app's services on each of its IPs.
  base::Result<std::shared_ptr<const control::RouteTable>> BuildRouteTable(
      const ReleaseParser& parse = nullptr);

  const PlaneOptions& options() const { return options_; }
  const control::IpPool& v4_pool() const { return v4_; }
  const control::IpPool& v6_pool() const { return v6_; }
  store::Store* store() const { return store_; }

 private:
  ControlPlane(store::Store* store, PlaneOptions options, control::IpPool v4, control::IpPool v6,
               const CertIssuer* issuer);

  store::Store* store_;
  PlaneOptions options_;
  control::IpPool v4_, v6_;
  // In dependency order: each aggregate is built after those it reads.
  Certificates certificates_;
  Machines machines_;
  Ips ips_;
  Releases releases_;
  Apps apps_;
};

}  // namespace drawbridge::plane
