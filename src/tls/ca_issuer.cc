#include "tls/ca_issuer.h"

#include <fstream>
#include <sstream>

namespace drawbridge::tls {

base::Result<plane::PemPair> CaCertIssuer::Issue(const std::vector<std::string>& dns_names,
                                                 int days) const {
  if (!ca_) return base::Status::NotFound("built-in CA not found: this daemon has none");
  auto pem = IssueLeaf(*ca_, dns_names, days);
  if (!pem.ok()) return pem.status();
  return plane::PemPair{std::move(pem->cert_pem), std::move(pem->key_pem)};
}

base::Result<plane::CertFacts> CaCertIssuer::Check(const std::string& host,
                                                   const std::string& cert_pem,
                                                   const std::string& key_pem) const {
  auto facts = CheckCertificate(host, cert_pem, key_pem);
  if (!facts.ok()) return facts.status();
  return plane::CertFacts{std::move(facts->dns_names), facts->not_before, facts->not_after,
                          std::move(facts->issuer)};
}

base::Result<std::string> CaCertIssuer::CaPem() const {
  if (!ca_) return base::Status::NotFound("built-in CA not found: this daemon has none");
  std::ifstream in(ca_->cert_path);
  if (!in) return base::Status::Internal(ca_->cert_path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace drawbridge::tls
