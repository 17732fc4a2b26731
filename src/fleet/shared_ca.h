// The fleet's one certificate authority. Every node signs the apps' certificates with the same
// CA, so a client that trusts it (sslrootcert, verify-full) accepts whichever node it lands on.
//
// The CA lives in the store as `ca/cert` and `ca/key` (both sealed by store/sealed_store.h, so
// etcd holds the private key only encrypted under the fleet secret). The first node finds them
// absent and writes its candidate with one compare-and-set on both keys; when several nodes start
// at once against an empty store exactly one write wins, and every other node reads the winner's
// CA. The candidate is the CA already in the node's own directory if it has one (a node that ran
// alone before keeps the CA its clients trust), else a new one.
//
// Each node keeps a copy in its CA directory (ca.crt, ca.key mode 0600), the files the rest of
// the daemon uses (tls::EnsureCa returns them as they are); with the store unreachable the copy
// is what the node serves with.
//
// Runs once at start, on the thread that starts the daemon.
#pragma once

#include <string>

#include "base/status.h"
#include "store/store.h"

namespace drawbridge::fleet {

inline constexpr const char* kCaPrefix = "ca/";
inline constexpr const char* kCaCertKey = "ca/cert";
inline constexpr const char* kCaKeyKey = "ca/key";

// Afterwards `ca_dir` holds the fleet's CA. Errors: the store's (when there is no local copy to
// fall back on), or files that cannot be written.
base::Status ShareCa(store::Store* store, const std::string& ca_dir,
                     const std::string& common_name);

}  // namespace drawbridge::fleet
