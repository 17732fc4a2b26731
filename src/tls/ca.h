// The built-in certificate authority: an ECDSA P-256 CA created once in a directory (key
// 0600), and leaf certificates it signs for host names. Uses OpenSSL only; no I/O besides the
// files named here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace drawbridge::tls {

struct CaFiles {
  std::string cert_path;  // <dir>/ca.crt, what clients use as sslrootcert
  std::string key_path;   // <dir>/ca.key, mode 0600, never served
};

// Creates the CA in `dir` if it does not exist yet; returns its files.
base::Result<CaFiles> EnsureCa(const std::string& dir, const std::string& common_name);

struct PemPair {
  std::string cert_pem;  // leaf, then the chain
  std::string key_pem;
};

// A leaf certificate (ECDSA P-256, SAN = `dns_names`, serverAuth) signed by the CA, valid for
// `days`; the PEM holds the leaf then the CA.
base::Result<PemPair> IssueLeaf(const CaFiles& ca, const std::vector<std::string>& dns_names,
                                int days);

// What CheckCertificate learned about an operator's certificate.
struct CertFacts {
  std::vector<std::string> dns_names;
  int64_t not_before = 0;  // Unix seconds
  int64_t not_after = 0;
  std::string issuer;
};

// Checks a certificate chain and key before they are installed for `host`: PEM parses, the
// key matches the leaf, the leaf is valid now and covers `host` (SAN), and each certificate of
// the chain is signed by the next. The first problem is the error.
base::Result<CertFacts> CheckCertificate(const std::string& host, const std::string& cert_pem,
                                         const std::string& key_pem);

// Writes `data` to `path` atomically (temp file + rename) with `mode`.
base::Status WriteFileAtomic(const std::string& path, const std::string& data, int mode);

}  // namespace drawbridge::tls
