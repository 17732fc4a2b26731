// Test helpers for TLS: throwaway certificates made with OpenSSL in a temporary directory, and an
// OpenSSL client joined to a TlsEngine over memory BIOs, so a whole handshake runs in-process,
// deterministically, with no sockets.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tls/cert_store.h"
#include "tls/tls_engine.h"

namespace drawbridge::tls::tlstest {

// A directory under /tmp removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tls_test.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Writes a self-signed P-256 certificate for `cn` with `sans` (e.g. "DNS:db.example.com") and its
// key as PEM files into `dir`.
inline CertFiles MakeCert(const TempDir& dir, const std::string& cn, const std::string& sans,
                          const char* key_type = "EC") {
  EVP_PKEY* key = std::string(key_type) == "EC" ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
  X509* x = X509_new();
  if (key == nullptr || x == nullptr) std::abort();
  X509_set_version(x, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  if (!sans.empty()) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, sans.c_str());
    if (ext == nullptr) std::abort();
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x, key, EVP_sha256()) == 0) std::abort();

  CertFiles files{dir.File(cn + ".crt"), dir.File(cn + ".key")};
  FILE* f = std::fopen(files.cert_path.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(files.key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
  return files;
}

// A certificate set of one new self-signed certificate for `host` (its CN and SAN); the files
// live in a directory kept until the process exits.
inline std::shared_ptr<const CertSet> CertSetFor(const std::string& host) {
  static TempDir dir;
  auto set = CertSet::Load({MakeCert(dir, host, "DNS:" + host)});
  if (!set.ok()) std::abort();
  return *set;
}

// The CN of a certificate.
inline std::string CommonName(X509* cert) {
  if (cert == nullptr) return "";
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

// An OpenSSL client over memory BIOs, joined to a server TlsEngine.
class ClientPair {
 public:
  struct ClientOptions {
    std::string sni;                // empty: no SNI
    std::vector<std::string> alpn;  // empty: no ALPN extension
    int max_version = 0;
  };

  ClientPair(std::unique_ptr<TlsEngine> server, const ClientOptions& options)
      : server_(std::move(server)) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (options.max_version != 0) SSL_CTX_set_max_proto_version(ctx_, options.max_version);
    ssl_ = SSL_new(ctx_);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in_, -1);
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_connect_state(ssl_);
    if (!options.sni.empty()) SSL_set_tlsext_host_name(ssl_, options.sni.c_str());
    if (!options.alpn.empty()) {
      std::vector<unsigned char> wire;
      for (const auto& p : options.alpn) {
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
      }
      SSL_set_alpn_protos(ssl_, wire.data(), static_cast<unsigned int>(wire.size()));
    }
  }
  ~ClientPair() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ERR_clear_error();
  }
  ClientPair(const ClientPair&) = delete;
  ClientPair& operator=(const ClientPair&) = delete;

  TlsEngine& server() { return *server_; }
  SSL* client() { return ssl_; }
  // Hands the server engine over (e.g. to a session on sockets) once the handshake is done;
  // the client's ciphertext is then moved through client_in() and client_out(), not Shuttle().
  std::unique_ptr<TlsEngine> TakeServer() { return std::move(server_); }
  BIO* client_in() { return in_; }    // ciphertext for the client to read
  BIO* client_out() { return out_; }  // ciphertext the client wrote

  // Moves pending ciphertext both ways; true if any byte moved.
  bool Shuttle() {
    bool moved = false;
    unsigned char buf[16384];
    int n;
    while ((n = BIO_read(out_, buf, sizeof buf)) > 0) {
      server_->FeedCiphertext(base::ByteSpan(buf, static_cast<size_t>(n)));
      moved = true;
    }
    base::Bytes to_client;
    server_->TakeOutput(&to_client);
    if (!to_client.empty()) {
      BIO_write(in_, to_client.data(), static_cast<int>(to_client.size()));
      moved = true;
    }
    return moved;
  }

  // Runs both sides until both finish the handshake (true), or either fails (false). On failure
  // `client_error` holds the client's OpenSSL reason code.
  bool Handshake() {
    bool client_done = false, server_done = false;
    for (int round = 0; round < 50; ++round) {
      if (!client_done) {
        int r = SSL_do_handshake(ssl_);
        if (r == 1) {
          client_done = true;
        } else if (SSL_get_error(ssl_, r) != SSL_ERROR_WANT_READ) {
          client_error = ERR_GET_REASON(ERR_peek_error());
          ERR_clear_error();
          Shuttle();
          return false;
        }
      }
      Shuttle();
      if (!server_done) {
        TlsEngine::Io io = server_->Handshake();
        if (io == TlsEngine::Io::kOk) {
          server_done = true;
        } else if (io != TlsEngine::Io::kWantRead) {
          Shuttle();  // let the alert reach the client
          int r = SSL_do_handshake(ssl_);
          if (r != 1) client_error = ERR_GET_REASON(ERR_peek_error());
          ERR_clear_error();
          return false;
        }
      }
      bool moved = Shuttle();
      if (client_done && server_done) return true;
      if (!moved && round > 0 && !client_done && !server_done) return false;
    }
    return false;
  }

  // Reads whatever the client has, after moving pending ciphertext.
  std::string ClientRead() {
    Shuttle();
    std::string out;
    char buf[4096];
    while (true) {
      size_t n = 0;
      if (SSL_read_ex(ssl_, buf, sizeof buf, &n) != 1) break;
      out.append(buf, n);
    }
    return out;
  }

  void ClientWrite(std::string_view data) {
    ClientSeal(data);
    Shuttle();
  }

  // Writes on the client and leaves the records with the client (see TakeClientCiphertext).
  void ClientSeal(std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      size_t n = 0;
      if (SSL_write_ex(ssl_, data.data() + done, data.size() - done, &n) != 1) std::abort();
      done += n;
    }
  }

  // The client's pending records, without passing them to the server.
  base::Bytes TakeClientCiphertext() {
    base::Bytes out;
    unsigned char buf[16384];
    int n;
    while ((n = BIO_read(out_, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
    return out;
  }

  // Encrypts `data` on the server and delivers the records to the client's input.
  TlsEngine::Io ServerWrite(std::string_view data) {
    base::Bytes records;
    TlsEngine::Io io = server_->Write(base::AsBytes(data), &records);
    if (!records.empty()) BIO_write(in_, records.data(), static_cast<int>(records.size()));
    return io;
  }

  // Reads what the server engine has decrypted; stops at kWantRead, kClosed or kError.
  std::string ServerRead(TlsEngine::Io* last, size_t buf_size = 4096) {
    Shuttle();
    std::string out;
    std::vector<uint8_t> buf(buf_size);
    while (true) {
      size_t n = 0;
      *last = server_->Read({}, buf, &n);
      if (*last != TlsEngine::Io::kOk) break;
      out.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    return out;
  }

  int client_error = 0;

 private:
  std::unique_ptr<TlsEngine> server_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // server -> client ciphertext; owned by ssl_
  BIO* out_ = nullptr;  // client -> server ciphertext; owned by ssl_
};

}  // namespace drawbridge::tls::tlstest
