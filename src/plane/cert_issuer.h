// What the control plane needs from a certificate authority, so that the plane links no
// OpenSSL: src/tls/ca_issuer.h implements it over the built-in CA, and src/daemon injects it.
// Implementations must be thread-safe: the admin API thread and main (renewals) call them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "plane/values.h"

namespace drawbridge::plane {

// What Check() learned about a certificate.
struct CertFacts {
  std::vector<std::string> dns_names;
  int64_t not_before = 0;  // Unix seconds
  int64_t not_after = 0;
  std::string issuer;
};

class CertIssuer {
 public:
  virtual ~CertIssuer() = default;

  // False when there is no CA to issue from: the plane then issues nothing.
  virtual bool CanIssue() const = 0;
  // A leaf certificate for `dns_names`, valid for `days`; the PEM holds the leaf, then the chain.
  virtual base::Result<PemPair> Issue(const std::vector<std::string>& dns_names,
                                      int days) const = 0;
  // Checks a chain and key before they are installed for `host` (the PEM parses, the key
  // matches, the leaf is valid now and covers `host`, the chain holds); the first problem is
  // the error, kInvalidArgument.
  virtual base::Result<CertFacts> Check(const std::string& host, const std::string& cert_pem,
                                        const std::string& key_pem) const = 0;
  // The CA's certificate, what clients use as sslrootcert; kNotFound without a CA.
  virtual base::Result<std::string> CaPem() const = 0;
};

}  // namespace drawbridge::plane
