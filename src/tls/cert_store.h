// Server certificates for TLS termination, chosen by SNI. A CertSet is immutable once loaded;
// CertStore holds the current set and swaps it atomically, so certificates can change while
// connections are open (each TLS session keeps a reference to the SSL_CTX it started with).
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include "base/snapshot.h"
#include "base/status.h"

namespace drawbridge::tls {

struct CtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxDeleter>;

struct CertFiles {
  std::string cert_path;  // PEM: leaf first, then the chain
  std::string key_path;   // PEM private key
};

class CertSet {
 public:
  CertSet() = default;
  // Loads every pair; the first is the default for clients that send no or an unknown SNI.
  static base::Result<std::shared_ptr<const CertSet>> Load(const std::vector<CertFiles>& files);
  // The same from PEM text in memory. A pair that does not load is skipped and reported in
  // `errors` (one bad certificate must not take the others down); fails only if none loads.
  struct Pem {
    std::string cert_pem;
    std::string key_pem;
  };
  static base::Result<std::shared_ptr<const CertSet>> FromPem(const std::vector<Pem>& pems,
                                                              std::vector<std::string>* errors);
  // A set of contexts built earlier (NewServerContextFromPem), in order, the first being the
  // default. Each is shared, not copied (a reference is taken), so a caller that keeps parsed
  // contexts re-parses only the certificates that changed. Fails if `contexts` is empty.
  static base::Result<std::shared_ptr<const CertSet>> FromContexts(
      const std::vector<SSL_CTX*>& contexts);

  // The context for `server_name` (case-insensitive, trailing dot ignored, "*.zone" SANs match
  // one label); nullptr if no certificate covers it.
  SSL_CTX* Find(std::string_view server_name) const;
  SSL_CTX* default_ctx() const { return contexts_.front().get(); }

 private:
  void Add(CtxPtr ctx);

 public:
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<CtxPtr> contexts_;
  std::map<std::string, SSL_CTX*> by_name_;  // lower-case SAN -> context
  std::vector<std::string> names_;
};

// The certificate set new TLS sessions use; swapped when certificates change.
using CertStore = base::Snapshot<CertSet>;

// A server SSL_CTX with the edge's settings: TLS 1.2 minimum, Mozilla "intermediate" ciphers
// and groups, no compression, no renegotiation, no tickets, no session cache, no early data.
base::Result<CtxPtr> NewServerContext(const CertFiles& files);
base::Result<CtxPtr> NewServerContextFromPem(const std::string& cert_pem, const std::string& key_pem);

// The last OpenSSL error as text, and the error queue cleared.
std::string TakeOpenSslError();

}  // namespace drawbridge::tls
