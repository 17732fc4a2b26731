#include "publish/base_certs.h"

#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <fstream>
#include <sstream>

namespace drawbridge::publish {

namespace {

// The file's bytes; empty if it cannot be read (the certificate loader then says which failed).
std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr int kDefaultCertDays = 825;
// Reissued this long before it expires, as the store's certificates are (plane/certificates.h).
constexpr int64_t kRenewBeforeSeconds = 30 * 24 * 3600;

// Whether the apex certificate on disk may be served again: it exists, its key matches, and it
// covers `domain` for at least the renewal margin. A --domain changed since it was issued, an
// expiry near, or a file cut short by a crash all mean a new one.
bool StillServes(const std::string& crt, const std::string& key, const std::string& domain) {
  if (::access(crt.c_str(), F_OK) != 0) return false;
  auto facts = tls::CheckCertificate(domain, ReadWholeFile(crt), ReadWholeFile(key));
  return facts.ok() && facts->not_after - static_cast<int64_t>(std::time(nullptr)) >
                           kRenewBeforeSeconds;
}

}  // namespace

base::Result<std::vector<BaseCert>> LoadBaseCerts(const std::vector<std::string>& cert_paths,
                                                  const std::vector<std::string>& key_paths,
                                                  const std::string& certs_dir,
                                                  const tls::CaFiles& ca,
                                                  const std::string& domain) {
  if (cert_paths.size() != key_paths.size()) {
    return base::Status::InvalidArgument("give one --key for each --cert");
  }
  std::vector<BaseCert> out;
  for (size_t i = 0; i < cert_paths.size(); ++i) {
    out.push_back({cert_paths[i] + " / " + key_paths[i], ReadWholeFile(cert_paths[i]),
                   ReadWholeFile(key_paths[i])});
  }
  if (!out.empty()) return out;
  std::string crt = certs_dir + "/default.crt", key = certs_dir + "/default.key";
  if (!StillServes(crt, key, domain)) {
    auto pem = tls::IssueLeaf(ca, {domain}, kDefaultCertDays);
    if (!pem.ok()) return pem.status().WithPrefix("certificate: ");
    // The key first: a crash between the two leaves no certificate without its key.
    if (auto s = tls::WriteFileAtomic(key, pem->key_pem, 0600); !s.ok()) return s;
    if (auto s = tls::WriteFileAtomic(crt, pem->cert_pem, 0644); !s.ok()) return s;
  }
  out.push_back({crt + " / " + key, ReadWholeFile(crt), ReadWholeFile(key)});
  return out;
}

}  // namespace drawbridge::publish
