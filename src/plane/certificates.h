// The certificates aggregate: one certificate per app host from the CA when the app gets an
// address, the operator's own (checked first) replacing it; keys stay in the store and are
// never returned. A certificate leaves with its app (apps.h), by `certs remove`, or, for the
// CA's, at start when it no longer names an app of the current domain. Errors follow plane.h. Thread-safe: all state lives in the store, and the
// issuer is thread-safe.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "plane/cert_issuer.h"
#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane {

class Certificates {
 public:
  // `store` and `issuer` must outlive this.
  Certificates(store::Store* store, const PlaneOptions& options, const CertIssuer* issuer)
      : store_(store), options_(options), issuer_(issuer) {}

  base::Result<CertInfo> Add(const std::string& host, const std::string& cert_pem,
                             const std::string& key_pem);
  base::Result<std::vector<CertInfo>> List();
  base::Result<CertInfo> Show(const std::string& host);
  // Removes the certificate (and its key) stored for `host`, whatever its source; the edge
  // stops serving it once the publisher has rebuilt. kNotFound when there is none.
  base::Result<CertInfo> Remove(const std::string& host);
  // Removes the built-in CA's certificates that serve no app any more: those whose host is not
  // `<app>.<domain>` of an existing app under the current domain (left by an earlier --domain,
  // or by apps destroyed before destroy took their certificates along). The operator's own
  // certificates are never touched. Returns what was removed, for the caller to log; the daemon
  // calls it at start.
  base::Result<std::vector<CertInfo>> RemoveOrphanedCaCerts();
  base::Result<std::string> CaPem();
  // Issues the app's certificate if it has none or if it is due for renewal. False when
  // nothing was issued (no CA, not due, the operator's, or another issuer won the race).
  base::Result<bool> EnsureAppCert(const std::string& app);
  // Renews every CA-issued certificate that is due; returns how many were renewed.
  int RenewDue();
  // Every certificate with its key, for the data plane's CertSet.
  std::vector<PemPair> Pems();

 private:
  store::Store* store_;
  PlaneOptions options_;
  const CertIssuer* issuer_;
};

}  // namespace drawbridge::plane
