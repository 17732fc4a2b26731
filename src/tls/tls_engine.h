// One TLS server session over memory BIOs: ciphertext in, plaintext out, and the reverse. No
// sockets: the caller moves ciphertext between the engine and the network. Not thread-safe;
// one connection's coroutine owns it.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "base/bytes.h"
#include "tls/cert_store.h"

namespace drawbridge::tls {

// What the session accepts for ALPN (RFC 7301).
enum class AlpnPolicy {
  kPostgres,  // pg_tls: select "postgresql" when offered; a list without it gets alert 120
  kList,      // tls handler: select the first of `alpn` that the client offers; else no ALPN
};

struct SessionPolicy {
  AlpnPolicy alpn_policy = AlpnPolicy::kPostgres;
  std::vector<std::string> alpn;  // for kList
  int min_version = TLS1_2_VERSION;
  int max_version = 0;  // 0: newest
  // The certificate for clients that send no SNI (an IP literal): the one for this host name,
  // e.g. the app that owns the dialled address. Empty: the set's default.
  std::string default_host;
};

class TlsEngine {
 public:
  enum class Io { kOk, kWantRead, kClosed, kError };

  // `certs` must outlive nothing: the engine keeps its own reference.
  static base::Result<std::unique_ptr<TlsEngine>> NewServer(std::shared_ptr<const CertSet> certs,
                                                            SessionPolicy policy);
  ~TlsEngine();

  void FeedCiphertext(base::ByteSpan data);
  bool HasOutput() const;
  // Appends pending ciphertext to `out`.
  void TakeOutput(base::Bytes* out);

  Io Handshake();
  // Decrypts into `buf`; *n is the count on kOk. kClosed: the peer sent close_notify.
  Io Read(std::span<uint8_t> buf, size_t* n);
  // Encrypts all of `data` into the output buffer.
  Io Write(base::ByteSpan data);
  // Queues close_notify.
  void Shutdown();

  std::string version() const;
  std::string cipher() const;
  std::string server_name() const;
  std::string alpn() const;
  const std::string& error() const { return error_; }

 private:
  TlsEngine() = default;
  Io Classify(int ret);
  // Memory BIOs keep the capacity of the largest burst; an idle session should not. Replaces
  // a drained BIO whose buffer has grown past a few KiB.
  void TrimInput();
  void TrimOutput();

  std::shared_ptr<const CertSet> certs_;
  SessionPolicy policy_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  size_t fed_since_trim_ = 0;
  std::string error_;

  friend int SelectAlpn(SSL*, const unsigned char**, unsigned char*, const unsigned char*,
                        unsigned int, void*);
  friend int SelectCertificate(SSL*, int*, void*);
};

}  // namespace drawbridge::tls
