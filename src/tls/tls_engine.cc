#include "tls/tls_engine.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include <openssl/err.h>

namespace drawbridge::tls {

namespace {
constexpr std::string_view kPostgresAlpn = "postgresql";

TlsEngine* EngineOf(SSL* ssl) { return static_cast<TlsEngine*>(SSL_get_app_data(ssl)); }
}  // namespace

// The session's one BIO, both directions: reads take lent or kept input, writes append to the
// engine's sink. It never fails a write, so OpenSSL never holds ciphertext back.
struct SessionBio {
  static TlsEngine* Of(BIO* bio) { return static_cast<TlsEngine*>(BIO_get_data(bio)); }

  static int Read(BIO* bio, char* to, size_t len, size_t* got) {
    BIO_clear_retry_flags(bio);
    *got = Of(bio)->Pull(reinterpret_cast<uint8_t*>(to), len);
    if (*got > 0) return 1;
    BIO_set_retry_read(bio);
    return 0;
  }
  static int Write(BIO* bio, const char* from, size_t len, size_t* wrote) {
    BIO_clear_retry_flags(bio);
    Of(bio)->Push(reinterpret_cast<const uint8_t*>(from), len);
    *wrote = len;
    return 1;
  }
  static long Ctrl(BIO* /*bio*/, int cmd, long /*num*/, void* /*ptr*/) {
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
  }
  static int Create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }

  static BIO* New(TlsEngine* engine) {
    static BIO_METHOD* method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "drawbridge");
      if (m != nullptr) {
        BIO_meth_set_read_ex(m, Read);
        BIO_meth_set_write_ex(m, Write);
        BIO_meth_set_ctrl(m, Ctrl);
        BIO_meth_set_create(m, Create);
      }
      return m;
    }();
    if (method == nullptr) return nullptr;
    BIO* bio = BIO_new(method);
    if (bio != nullptr) BIO_set_data(bio, engine);
    return bio;
  }
};

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
  if (e->ssl_ == nullptr) return base::Status::Internal(TakeOpenSslError());
  BIO* bio = SessionBio::New(e.get());
  if (bio == nullptr) return base::Status::Internal(TakeOpenSslError());
  SSL_set_bio(e->ssl_, bio, bio);  // one reference per direction
  SSL_set_app_data(e->ssl_, e.get());
  SSL_set_accept_state(e->ssl_);
  SSL_set_min_proto_version(e->ssl_, e->policy_.min_version);
  if (e->policy_.max_version != 0) SSL_set_max_proto_version(e->ssl_, e->policy_.max_version);
  return e;
}

TlsEngine::~TlsEngine() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsEngine::Lend(base::ByteSpan input) {
  if (unread_at_ < unread_.size()) {
    unread_.insert(unread_.end(), input.begin(), input.end());  // after what was kept
  } else {
    lent_ = input;
  }
}

void TlsEngine::KeepUnread() {
  if (unread_at_ == unread_.size()) {
    if (!unread_.empty()) base::Bytes().swap(unread_);
    unread_at_ = 0;
  }
  if (lent_.empty()) return;
  unread_.erase(unread_.begin(), unread_.begin() + static_cast<std::ptrdiff_t>(unread_at_));
  unread_at_ = 0;
  unread_.insert(unread_.end(), lent_.begin(), lent_.end());
  lent_ = {};
}

size_t TlsEngine::Pull(uint8_t* to, size_t len) {
  if (unread_at_ < unread_.size()) {
    size_t n = std::min(len, unread_.size() - unread_at_);
    std::memcpy(to, unread_.data() + unread_at_, n);
    unread_at_ += n;
    return n;
  }
  size_t n = std::min(len, lent_.size());
  if (n > 0) std::memcpy(to, lent_.data(), n);
  lent_ = lent_.subspan(n);
  return n;
}

void TlsEngine::FeedCiphertext(base::ByteSpan data) {
  Lend(data);
  KeepUnread();
}

bool TlsEngine::HasOutput() const { return !output_.empty(); }

void TlsEngine::TakeOutput(base::Bytes* out) {
  if (output_.empty()) return;
  out->insert(out->end(), output_.begin(), output_.end());
  base::Bytes().swap(output_);
}

TlsEngine::Io TlsEngine::Classify(int ret) {
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ: return Io::kWantRead;
    case SSL_ERROR_ZERO_RETURN: return Io::kClosed;
    default:
      if (error_.empty()) {  // the first error is the cause; later calls only repeat it
        error_ = err == SSL_ERROR_SYSCALL ? "unexpected end of TLS stream" : TakeOpenSslError();
      }
      ERR_clear_error();
      return Io::kError;
  }
}

TlsEngine::Io TlsEngine::Handshake(base::ByteSpan input) {
  Lend(input);
  int ret = SSL_do_handshake(ssl_);
  KeepUnread();
  return ret == 1 ? Io::kOk : Classify(ret);
}

TlsEngine::Io TlsEngine::Read(base::ByteSpan input, std::span<uint8_t> buf, size_t* n) {
  Lend(input);
  size_t total = 0;
  Io io = Io::kOk;
  while (total < buf.size()) {
    size_t got = 0;
    int ret = SSL_read_ex(ssl_, buf.data() + total, buf.size() - total, &got);
    if (ret != 1) {
      io = Classify(ret);
      break;
    }
    total += got;
    if (InputEmpty() && SSL_has_pending(ssl_) == 0) {
      // That record used up the input and OpenSSL holds nothing more: another SSL_read_ex
      // would only ask the BIO for bytes and say WANT_READ (about 1 µs per message).
      io = Io::kWantRead;
      break;
    }
  }
  KeepUnread();
  *n = total;
  read_drained_ = io == Io::kWantRead;
  // What came before a close or an error is delivered first; the next call reports it again.
  return total > 0 ? Io::kOk : io;
}

TlsEngine::Io TlsEngine::Write(base::ByteSpan data, base::Bytes* out) {
  TakeOutput(out);
  sink_ = out;
  size_t done = 0;
  Io io = Io::kOk;
  while (done < data.size()) {
    size_t wrote = 0;
    int ret = SSL_write_ex(ssl_, data.data() + done, data.size() - done, &wrote);
    if (ret != 1) {
      io = Classify(ret);
      break;
    }
    done += wrote;
  }
  sink_ = &output_;
  return io;
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
