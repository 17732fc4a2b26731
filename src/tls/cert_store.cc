#include "tls/cert_store.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "base/host_name.h"

namespace drawbridge::tls {

void InstallServerCallbacks(SSL_CTX* ctx);  // tls_engine.cc

namespace {

// Mozilla "intermediate" (server-side-tls 5.x) for TLS 1.2; TLS 1.3 suites are OpenSSL's.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
constexpr const char* kTls13Suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* kGroups = "X25519:prime256v1:secp384r1";

std::vector<std::string> DnsNames(SSL_CTX* ctx) {
  std::vector<std::string> names;
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) return names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr,
                                                             nullptr));
  if (sans == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = gn->d.dNSName;
    names.push_back(
        base::NormalizeHost(std::string_view(reinterpret_cast<const char*>(s->data), s->length)));
  }
  GENERAL_NAMES_free(sans);
  return names;
}

}  // namespace

std::string TakeOpenSslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

namespace {

// The edge's TLS settings on a fresh context; the certificate comes next.
base::Result<CtxPtr> NewBaseContext() {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return base::Status::Internal(TakeOpenSslError());
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_clear_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_max_early_data(c, 0);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(c, kTls13Suites) != 1 || SSL_CTX_set1_groups_list(c, kGroups) != 1) {
    return base::Status::Internal("TLS settings: " + TakeOpenSslError());
  }
  InstallServerCallbacks(c);
  return ctx;
}

}  // namespace

base::Result<CtxPtr> NewServerContext(const CertFiles& files) {
  auto base_ctx = NewBaseContext();
  if (!base_ctx.ok()) return base_ctx.status();
  CtxPtr ctx = std::move(*base_ctx);
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_use_certificate_chain_file(c, files.cert_path.c_str()) != 1) {
    return base::Status::InvalidArgument(files.cert_path + ": " + TakeOpenSslError());
  }
  if (SSL_CTX_use_PrivateKey_file(c, files.key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    return base::Status::InvalidArgument(files.key_path + ": " + TakeOpenSslError());
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return base::Status::InvalidArgument(files.key_path + ": key does not match " +
                                         files.cert_path);
  }
  return ctx;
}

base::Result<CtxPtr> NewServerContextFromPem(const std::string& cert_pem,
                                             const std::string& key_pem) {
  auto base_ctx = NewBaseContext();
  if (!base_ctx.ok()) return base_ctx.status();
  CtxPtr ctx = std::move(*base_ctx);
  SSL_CTX* c = ctx.get();
  if (cert_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return base::Status::InvalidArgument("no PEM certificate (missing or unreadable file?)");
  }
  if (key_pem.find("PRIVATE KEY-----") == std::string::npos) {
    return base::Status::InvalidArgument("no PEM private key (missing or unreadable file?)");
  }
  BIO* cbio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* leaf = PEM_read_bio_X509(cbio, nullptr, nullptr, nullptr);
  bool ok = leaf != nullptr && SSL_CTX_use_certificate(c, leaf) == 1;
  X509_free(leaf);
  while (ok) {
    X509* extra = PEM_read_bio_X509(cbio, nullptr, nullptr, nullptr);
    if (extra == nullptr) break;
    ok = SSL_CTX_add0_chain_cert(c, extra) == 1;
  }
  BIO_free(cbio);
  ERR_clear_error();  // the end of the PEM stream is reported as an error
  if (!ok) return base::Status::InvalidArgument("certificate: " + TakeOpenSslError());
  BIO* kbio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kbio, nullptr, nullptr, nullptr);
  BIO_free(kbio);
  ok = key != nullptr && SSL_CTX_use_PrivateKey(c, key) == 1 && SSL_CTX_check_private_key(c) == 1;
  EVP_PKEY_free(key);
  if (!ok) return base::Status::InvalidArgument("key: " + TakeOpenSslError());
  return ctx;
}

void CertSet::Add(CtxPtr ctx) {
  for (auto& name : DnsNames(ctx.get())) {
    by_name_.emplace(name, ctx.get());  // the first certificate for a name wins
    names_.push_back(std::move(name));
  }
  contexts_.push_back(std::move(ctx));
}

base::Result<std::shared_ptr<const CertSet>> CertSet::FromPem(const std::vector<Pem>& pems,
                                                              std::vector<std::string>* errors) {
  auto set = std::make_shared<CertSet>();
  for (const auto& p : pems) {
    auto ctx = NewServerContextFromPem(p.cert_pem, p.key_pem);
    if (!ctx.ok()) {
      if (errors) errors->push_back(ctx.message());
      continue;
    }
    set->Add(std::move(*ctx));
  }
  if (set->contexts_.empty()) {
    return base::Status::InvalidArgument("no certificate could be loaded");
  }
  return std::shared_ptr<const CertSet>(std::move(set));
}

base::Result<std::shared_ptr<const CertSet>> CertSet::FromContexts(
    const std::vector<SSL_CTX*>& contexts) {
  if (contexts.empty()) return base::Status::Internal("no certificate could be loaded");
  auto set = std::make_shared<CertSet>();
  for (SSL_CTX* ctx : contexts) {
    SSL_CTX_up_ref(ctx);  // the set's own reference, released by its CtxPtr
    set->Add(CtxPtr(ctx));
  }
  return std::shared_ptr<const CertSet>(std::move(set));
}

base::Result<std::shared_ptr<const CertSet>> CertSet::Load(const std::vector<CertFiles>& files) {
  if (files.empty()) return base::Status::InvalidArgument("no certificate configured");
  auto set = std::make_shared<CertSet>();
  for (const auto& f : files) {
    auto ctx = NewServerContext(f);
    if (!ctx.ok()) return ctx.status();
    set->Add(std::move(*ctx));
  }
  return std::shared_ptr<const CertSet>(std::move(set));
}

SSL_CTX* CertSet::Find(std::string_view server_name) const {
  std::string name = base::NormalizeHost(server_name);
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  if (auto dot = name.find('.'); dot != std::string::npos) {
    // Built by appending: GCC 12 at -O3 reports a false -Wrestrict on `"*" + name.substr(dot)`.
    std::string wildcard(1, '*');
    wildcard.append(name, dot);
    if (auto it = by_name_.find(wildcard); it != by_name_.end()) return it->second;
  }
  return nullptr;
}

}  // namespace drawbridge::tls
