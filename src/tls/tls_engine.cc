#include "tls/tls_engine.h"

#include <cstring>
#include <string_view>

#include <openssl/err.h>

namespace drawbridge::tls {

namespace {
constexpr std::string_view kPostgresAlpn = "postgresql";
constexpr size_t kTrimAbove = 1024;

BIO* NewInputBio() {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio != nullptr) BIO_set_mem_eof_return(bio, -1);  // empty means "want read", not EOF
  return bio;
}

TlsEngine* EngineOf(SSL* ssl) { return static_cast<TlsEngine*>(SSL_get_app_data(ssl)); }
}  // namespace

// SNI: switch to the certificate for the requested name before the certificate is sent.
int SelectCertificate(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  TlsEngine* engine = EngineOf(ssl);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (engine == nullptr || name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  // A name no certificate covers keeps the certificate chosen for the dialled address: the
  // client's verification then fails on the name, as it should.
  SSL_CTX* ctx = engine->certs_->Find(name);
  if (ctx != nullptr && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

// ALPN as PostgreSQL's be-secure-openssl.c alpn_cb does for pg_tls: "postgresql" is selected
// when offered; a list without it is refused with alert no_application_protocol (ALPACA).
int SelectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  TlsEngine* engine = EngineOf(ssl);
  if (engine == nullptr) return SSL_TLSEXT_ERR_NOACK;
  auto offered = [&](std::string_view want) -> const unsigned char* {
    for (unsigned int i = 0; i < inlen;) {
      unsigned int len = in[i];
      if (i + 1 + len > inlen) return nullptr;
      if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == want) {
        return in + i + 1;
      }
      i += 1 + len;
    }
    return nullptr;
  };
  if (engine->policy_.alpn_policy == AlpnPolicy::kPostgres) {
    if (const unsigned char* p = offered(kPostgresAlpn)) {
      *out = p;
      *outlen = static_cast<unsigned char>(kPostgresAlpn.size());
      return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  for (const auto& want : engine->policy_.alpn) {
    if (const unsigned char* p = offered(want)) {
      *out = p;
      *outlen = static_cast<unsigned char>(want.size());
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return engine->policy_.alpn.empty() ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

void InstallServerCallbacks(SSL_CTX* ctx) {
  SSL_CTX_set_tlsext_servername_callback(ctx, SelectCertificate);
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
}

base::Result<std::unique_ptr<TlsEngine>> TlsEngine::NewServer(std::shared_ptr<const CertSet> certs,
                                                              SessionPolicy policy) {
  std::unique_ptr<TlsEngine> e(new TlsEngine());
  e->certs_ = std::move(certs);
  e->policy_ = std::move(policy);
  SSL_CTX* initial = e->policy_.default_host.empty() ? nullptr
                                                     : e->certs_->Find(e->policy_.default_host);
  e->ssl_ = SSL_new(initial != nullptr ? initial : e->certs_->default_ctx());
  if (e->ssl_ == nullptr) return base::Status::Error(TakeOpenSslError());
  e->rbio_ = NewInputBio();
  e->wbio_ = BIO_new(BIO_s_mem());
  if (e->rbio_ == nullptr || e->wbio_ == nullptr) {
    BIO_free(e->rbio_);
    BIO_free(e->wbio_);
    return base::Status::Error(TakeOpenSslError());
  }
  SSL_set_bio(e->ssl_, e->rbio_, e->wbio_);
  SSL_set_app_data(e->ssl_, e.get());
  SSL_set_accept_state(e->ssl_);
  SSL_set_min_proto_version(e->ssl_, e->policy_.min_version);
  if (e->policy_.max_version != 0) SSL_set_max_proto_version(e->ssl_, e->policy_.max_version);
  return e;
}

TlsEngine::~TlsEngine() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsEngine::FeedCiphertext(base::ByteSpan data) {
  if (data.empty()) return;
  BIO_write(rbio_, data.data(), static_cast<int>(data.size()));
  fed_since_trim_ += data.size();
}

void TlsEngine::TrimInput() {
  if (fed_since_trim_ <= kTrimAbove || BIO_ctrl_pending(rbio_) != 0) return;
  if (BIO* fresh = NewInputBio()) {
    SSL_set0_rbio(ssl_, fresh);  // frees the old one
    rbio_ = fresh;
    fed_since_trim_ = 0;
  }
}

void TlsEngine::TrimOutput() {
  if (BIO_ctrl_pending(wbio_) != 0) return;
  if (BIO* fresh = BIO_new(BIO_s_mem())) {
    SSL_set0_wbio(ssl_, fresh);
    wbio_ = fresh;
  }
}

bool TlsEngine::HasOutput() const { return BIO_ctrl_pending(wbio_) > 0; }

void TlsEngine::TakeOutput(base::Bytes* out) {
  size_t pending = BIO_ctrl_pending(wbio_);
  if (pending == 0) return;
  size_t at = out->size();
  out->resize(at + pending);
  int n = BIO_read(wbio_, out->data() + at, static_cast<int>(pending));
  out->resize(at + (n > 0 ? static_cast<size_t>(n) : 0));
  if (pending > kTrimAbove) TrimOutput();
}

TlsEngine::Io TlsEngine::Classify(int ret) {
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ: return Io::kWantRead;
    case SSL_ERROR_ZERO_RETURN: return Io::kClosed;
    default:
      error_ = err == SSL_ERROR_SYSCALL ? "unexpected end of TLS stream" : TakeOpenSslError();
      ERR_clear_error();
      return Io::kError;
  }
}

TlsEngine::Io TlsEngine::Handshake() {
  int ret = SSL_do_handshake(ssl_);
  return ret == 1 ? Io::kOk : Classify(ret);
}

TlsEngine::Io TlsEngine::Read(std::span<uint8_t> buf, size_t* n) {
  size_t got = 0;
  int ret = SSL_read_ex(ssl_, buf.data(), buf.size(), &got);
  if (ret == 1) {
    *n = got;
    return Io::kOk;
  }
  Io io = Classify(ret);
  if (io == Io::kWantRead) TrimInput();
  return io;
}

TlsEngine::Io TlsEngine::Write(base::ByteSpan data) {
  size_t done = 0;
  while (done < data.size()) {
    size_t wrote = 0;
    int ret = SSL_write_ex(ssl_, data.data() + done, data.size() - done, &wrote);
    if (ret != 1) return Classify(ret);
    done += wrote;
  }
  return Io::kOk;
}

void TlsEngine::Shutdown() {
  if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string TlsEngine::version() const { return SSL_get_version(ssl_); }

std::string TlsEngine::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

std::string TlsEngine::server_name() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

std::string TlsEngine::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return std::string(reinterpret_cast<const char*>(p), len);
}

}  // namespace drawbridge::tls
