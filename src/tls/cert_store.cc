#include "tls/cert_store.h"

#include <algorithm>
#include <cctype>

#include <openssl/err.h>
#include <openssl/x509v3.h>

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

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

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
    names.push_back(Lower(std::string_view(reinterpret_cast<const char*>(s->data), s->length)));
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

base::Result<CtxPtr> NewServerContext(const CertFiles& files) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return base::Status::Error(TakeOpenSslError());
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
    return base::Status::Error("TLS settings: " + TakeOpenSslError());
  }
  if (SSL_CTX_use_certificate_chain_file(c, files.cert_path.c_str()) != 1) {
    return base::Status::Error(files.cert_path + ": " + TakeOpenSslError());
  }
  if (SSL_CTX_use_PrivateKey_file(c, files.key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    return base::Status::Error(files.key_path + ": " + TakeOpenSslError());
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return base::Status::Error(files.key_path + ": key does not match " + files.cert_path);
  }
  InstallServerCallbacks(c);
  return ctx;
}

base::Result<std::shared_ptr<const CertSet>> CertSet::Load(const std::vector<CertFiles>& files) {
  if (files.empty()) return base::Status::Error("no certificate configured");
  auto set = std::make_shared<CertSet>();
  for (const auto& f : files) {
    auto ctx = NewServerContext(f);
    if (!ctx.ok()) return ctx.status();
    for (auto& name : DnsNames(ctx->get())) {
      set->by_name_.emplace(name, ctx->get());  // the first certificate for a name wins
      set->names_.push_back(std::move(name));
    }
    set->contexts_.push_back(std::move(*ctx));
  }
  return std::shared_ptr<const CertSet>(std::move(set));
}

SSL_CTX* CertSet::Find(std::string_view server_name) const {
  std::string name = Lower(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  if (auto dot = name.find('.'); dot != std::string::npos) {
    if (auto it = by_name_.find("*" + name.substr(dot)); it != by_name_.end()) return it->second;
  }
  return default_ctx();
}

}  // namespace drawbridge::tls
