// The control plane's CertIssuer over the built-in CA (ca.h): leaf certificates signed by the
// CA, checks of operator certificates, and the CA's own certificate. Without a CA it issues
// nothing and still checks. A library of its own (db_tls_issuer), so that db_tls stays below
// the plane and the plane links no OpenSSL. Immutable; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "plane/cert_issuer.h"
#include "tls/ca.h"

namespace drawbridge::tls {

class CaCertIssuer : public plane::CertIssuer {
 public:
  // `ca`: the CA's files (EnsureCa), or none: nothing is issued.
  explicit CaCertIssuer(std::optional<CaFiles> ca) : ca_(std::move(ca)) {}

  bool CanIssue() const override { return ca_.has_value(); }
  base::Result<plane::PemPair> Issue(const std::vector<std::string>& dns_names,
                                     int days) const override;
  base::Result<plane::CertFacts> Check(const std::string& host, const std::string& cert_pem,
                                       const std::string& key_pem) const override;
  base::Result<std::string> CaPem() const override;

 private:
  std::optional<CaFiles> ca_;
};

}  // namespace drawbridge::tls
