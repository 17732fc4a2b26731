// One TLS server session: ciphertext in, plaintext out, and the reverse. No sockets: the caller
// moves ciphertext between the engine and the network. Not thread-safe; one connection's
// coroutine owns it.
//
// The session's BIO holds no buffer. Ciphertext to decrypt is lent to Handshake() and Read()
// for the length of the call (what the engine has not consumed when the call returns is
// copied and read first next time); Write() encrypts straight into the caller's buffer. So
// between calls an idle session owns no ciphertext, and bytes are copied once each way.
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

  // Copies ciphertext in, to be read before any that a later call lends.
  void FeedCiphertext(base::ByteSpan data);
  // Ciphertext the engine produced outside Write() (handshake flights, alerts, close_notify),
  // which the caller must send before anything else.
  bool HasOutput() const;
  // Appends that ciphertext to `out` and frees the engine's copy.
  void TakeOutput(base::Bytes* out);

  // `input` (possibly empty) is lent for this call only; see above.
  Io Handshake(base::ByteSpan input = {});
  // Decrypts as much as is complete and fits into `buf`; *n is the count on kOk. kWantRead:
  // no whole record yet (`input` was consumed). kClosed: the peer sent close_notify.
  Io Read(base::ByteSpan input, std::span<uint8_t> buf, size_t* n);
  // Whether the last Read() stopped because no whole record was left (rather than because
  // `buf` was full, or at a close or an error it reports next): if so, another Read() without
  // new input would only say kWantRead. When a record used up the input and OpenSSL holds
  // nothing more, Read() knows this without asking OpenSSL for another record (a call that
  // would only say it wants more).
  bool read_drained() const { return read_drained_; }
  // Encrypts all of `data`, appending to `out` the pending output (see HasOutput) and then
  // the new records.
  Io Write(base::ByteSpan data, base::Bytes* out);
  // Queues close_notify (see HasOutput).
  void Shutdown();
  // Shutdown(), then TakeOutput(out): the last bytes of the session, ready to send.
  void Close(base::Bytes* out) {
    Shutdown();
    TakeOutput(out);
  }

  std::string version() const;
  std::string cipher() const;
  std::string server_name() const;
  std::string alpn() const;
  const std::string& error() const { return error_; }

 private:
  TlsEngine() = default;
  Io Classify(int ret);
  // Input: lends `input` to the BIO, after any bytes kept from before.
  void Lend(base::ByteSpan input);
  // Input: copies what is left of the lent bytes, so that nothing refers to them any more.
  void KeepUnread();
  // Input: whether every kept and lent byte has been handed to OpenSSL.
  bool InputEmpty() const { return unread_at_ == unread_.size() && lent_.empty(); }
  // The BIO's callbacks.
  size_t Pull(uint8_t* to, size_t len);
  void Push(const uint8_t* from, size_t len) { sink_->insert(sink_->end(), from, from + len); }

  std::shared_ptr<const CertSet> certs_;
  SessionPolicy policy_;
  SSL* ssl_ = nullptr;
  base::Bytes unread_;  // kept input; bytes before unread_at_ are consumed
  size_t unread_at_ = 0;
  base::ByteSpan lent_;           // input lent for the current call, read after unread_
  base::Bytes output_;            // ciphertext produced outside Write()
  bool read_drained_ = false;
  base::Bytes* sink_ = &output_;  // where the BIO appends: output_, or Write()'s `out`
  std::string error_;

  friend int SelectAlpn(SSL*, const unsigned char**, unsigned char*, const unsigned char*,
                        unsigned int, void*);
  friend int SelectCertificate(SSL*, int*, void*);
  friend struct SessionBio;
};

}  // namespace drawbridge::tls
