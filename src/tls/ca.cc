#include "tls/ca.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tls/cert_store.h"

namespace drawbridge::tls {

namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(FILE* p) const { std::fclose(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Free>;
using CertPtr = std::unique_ptr<X509, Free>;
using FilePtr = std::unique_ptr<FILE, Free>;

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Opens for writing with `mode`, replacing the file atomically is left to the caller.
FilePtr Create(const std::string& path, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return nullptr;
  ::fchmod(fd, mode);
  return FilePtr(::fdopen(fd, "w"));
}

KeyPtr NewKey() { return KeyPtr(EVP_EC_gen("P-256")); }

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext != nullptr) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

CertPtr NewCert(EVP_PKEY* key, const std::string& cn, int days) {
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7F;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

base::Result<KeyPtr> ReadKey(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return base::Status::Internal(path + ": cannot open");
  KeyPtr key(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  if (!key) return base::Status::Internal(path + ": " + TakeOpenSslError());
  return key;
}

base::Result<CertPtr> ReadCert(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return base::Status::Internal(path + ": cannot open");
  CertPtr cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return base::Status::Internal(path + ": " + TakeOpenSslError());
  return cert;
}

}  // namespace

base::Result<CaFiles> EnsureCa(const std::string& dir, const std::string& common_name) {
  CaFiles files{dir + "/ca.crt", dir + "/ca.key"};
  if (Exists(files.cert_path) && Exists(files.key_path)) return files;
  KeyPtr key = NewKey();
  if (!key) return base::Status::Internal("CA key: " + TakeOpenSslError());
  CertPtr cert = NewCert(key.get(), common_name, 3650);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return base::Status::Internal("CA signature: " + TakeOpenSslError());
  }
  std::string tmp_key = files.key_path + ".tmp", tmp_cert = files.cert_path + ".tmp";
  {
    FilePtr k = Create(tmp_key, 0600);
    FilePtr c = Create(tmp_cert, 0644);
    if (!k || !c || PEM_write_PrivateKey(k.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
        PEM_write_X509(c.get(), cert.get()) != 1) {
      return base::Status::Internal(dir + ": cannot write the CA files");
    }
  }
  if (::rename(tmp_key.c_str(), files.key_path.c_str()) != 0 ||
      ::rename(tmp_cert.c_str(), files.cert_path.c_str()) != 0) {
    return base::Status::Internal(dir + ": cannot install the CA files");
  }
  return files;
}

std::string ToPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string ToPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

base::Result<PemPair> IssueLeaf(const CaFiles& ca, const std::vector<std::string>& dns_names,
                                int days) {
  if (dns_names.empty()) {
    return base::Status::InvalidArgument("a certificate needs at least one name");
  }
  auto ca_key = ReadKey(ca.key_path);
  if (!ca_key.ok()) return ca_key.status();
  auto ca_cert = ReadCert(ca.cert_path);
  if (!ca_cert.ok()) return ca_cert.status();
  KeyPtr key = NewKey();
  CertPtr cert = NewCert(key.get(), dns_names[0], days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert->get()));
  std::string san;
  for (const auto& n : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
  AddExt(cert.get(), ca_cert->get(), NID_subject_alt_name, san.c_str());
  AddExt(cert.get(), ca_cert->get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExt(cert.get(), ca_cert->get(), NID_key_usage, "critical,digitalSignature");
  AddExt(cert.get(), ca_cert->get(), NID_ext_key_usage, "serverAuth");
  AddExt(cert.get(), ca_cert->get(), NID_authority_key_identifier, "keyid:always");
  if (X509_sign(cert.get(), ca_key->get(), EVP_sha256()) == 0) {
    return base::Status::Internal("certificate signature: " + TakeOpenSslError());
  }
  return PemPair{ToPem(cert.get()) + ToPem(ca_cert->get()), ToPem(key.get())};
}

base::Result<CertFacts> CheckCertificate(const std::string& host, const std::string& cert_pem,
                                         const std::string& key_pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> cbio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), BIO_free);
  std::vector<CertPtr> chain;
  while (X509* c = PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr)) chain.emplace_back(c);
  ERR_clear_error();
  if (chain.empty()) {
    return base::Status::InvalidArgument("the certificate is not PEM (BEGIN CERTIFICATE)");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> kbio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), BIO_free);
  KeyPtr key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return base::Status::InvalidArgument("the key is not an unencrypted PEM private key");
  }
  X509* leaf = chain.front().get();
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return base::Status::InvalidArgument("the key does not match the certificate");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
    return base::Status::InvalidArgument("the certificate is not valid yet");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
    return base::Status::InvalidArgument("the certificate has expired");
  }
  if (X509_check_host(leaf, host.data(), host.size(), 0, nullptr) != 1) {
    return base::Status::InvalidArgument("the certificate does not cover " + host +
                                         " (its subjectAltName DNS names must)");
  }
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    EVP_PKEY* issuer_key = X509_get0_pubkey(chain[i + 1].get());
    if (issuer_key == nullptr || X509_verify(chain[i].get(), issuer_key) != 1) {
      ERR_clear_error();
      return base::Status::InvalidArgument("certificate " + std::to_string(i + 1) +
                                           " of the chain is not signed by the next one");
    }
  }
  CertFacts facts;
  ASN1_TIME* epoch = ASN1_TIME_set(nullptr, 0);
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notAfter(leaf));
  facts.not_after = int64_t{days} * 86400 + secs;
  ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notBefore(leaf));
  facts.not_before = int64_t{days} * 86400 + secs;
  ASN1_TIME_free(epoch);
  char name[256] = {};
  X509_NAME_oneline(X509_get_issuer_name(leaf), name, sizeof name);
  facts.issuer = name;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr,
                                                             nullptr));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type == GEN_DNS) {
      facts.dns_names.emplace_back(reinterpret_cast<const char*>(gn->d.dNSName->data),
                                   gn->d.dNSName->length);
    }
  }
  GENERAL_NAMES_free(sans);
  return facts;
}

base::Status WriteFileAtomic(const std::string& path, const std::string& data, int mode) {
  std::string tmp = path + ".tmp";
  {
    FilePtr f = Create(tmp, static_cast<mode_t>(mode));
    if (!f || std::fwrite(data.data(), 1, data.size(), f.get()) != data.size() ||
        std::fflush(f.get()) != 0 || ::fsync(::fileno(f.get())) != 0) {
      return base::Status::Internal(path + ": cannot write");
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return base::Status::Internal(path + ": cannot install");
  }
  return {};
}

}  // namespace drawbridge::tls
