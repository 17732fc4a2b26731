// The built-in certificate authority: an ECDSA P-256 CA created once in a directory (key
// 0600), and leaf certificates it signs for host names. Uses OpenSSL only; no I/O besides the
// files named here.
#pragma once

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

// Writes a leaf certificate (chain: leaf then CA) and its key (0600) for `dns_names`, signed by
// the CA, valid for `days`.
base::Status IssueLeaf(const CaFiles& ca, const std::vector<std::string>& dns_names, int days,
                       const std::string& cert_path, const std::string& key_path);

}  // namespace drawbridge::tls
