#include "fleet/secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

namespace drawbridge::fleet {

namespace {

constexpr size_t kMinBytes = 32;
constexpr size_t kMaxFileSize = 4096;
// HKDF's salt: fixed, so that the same secret always gives the same keys on every node.
constexpr std::string_view kSalt = "drawbridge fleet secret";

std::string MakeHint(const std::string& path) {
  return "make one with `openssl rand -base64 32 > " + path + " && chmod 600 " + path +
         "` and give the same file to every node of the fleet";
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool DecodeHex(std::string_view text, std::string* out) {
  if (text.empty() || text.size() % 2 != 0) return false;
  out->clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = HexDigit(text[i]), lo = HexDigit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

int Base64Digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // standard and URL-safe alphabets
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Padding optional; no whitespace inside.
bool DecodeBase64(std::string_view text, std::string* out) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.empty() || text.size() % 4 == 1) return false;
  out->clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = Base64Digit(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

bool Hkdf(const std::string& secret, std::string_view info, std::array<uint8_t, 32>* out) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return false;
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return false;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(secret.data()),
                                        secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(kSalt.data()),
                                        kSalt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                        info.size()),
      OSSL_PARAM_construct_end(),
  };
  bool ok = EVP_KDF_derive(ctx, out->data(), out->size(), params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

}  // namespace

base::Result<FleetKeys> DeriveFleetKeys(const std::string& secret) {
  if (secret.size() < kMinBytes) {
    return base::Status::InvalidArgument("it holds " + std::to_string(secret.size()) +
                                         " bytes; a fleet secret needs at least 32 random bytes");
  }
  FleetKeys keys;
  if (!Hkdf(secret, "drawbridge fleet check v1", &keys.check) ||
      !Hkdf(secret, "drawbridge fleet seal v1", &keys.seal) ||
      !Hkdf(secret, "drawbridge fleet cancel v1", &keys.cancel) ||
      !Hkdf(secret, "drawbridge fleet peer v1", &keys.peer)) {
    return base::Status::Internal("cannot derive the fleet keys (OpenSSL HKDF)");
  }
  return keys;
}

base::Result<FleetKeys> LoadFleetSecret(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      return base::Status::NotFound("fleet secret " + path + ": no such file; " + MakeHint(path));
    }
    return base::Status::InvalidArgument("fleet secret " + path + ": " + std::strerror(err));
  }
  struct stat st {};
  std::string text;
  bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  bool too_big = regular && st.st_size > static_cast<off_t>(kMaxFileSize);
  if (regular && (st.st_mode & 077) == 0 && !too_big) {
    char buf[kMaxFileSize + 1];
    ssize_t n;
    while (text.size() <= kMaxFileSize && (n = ::read(fd, buf, sizeof buf)) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      text.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  if (!regular) {
    return base::Status::InvalidArgument("fleet secret " + path + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return base::Status::InvalidArgument("fleet secret " + path + ": mode " + mode +
                                         " gives group or others access; run `chmod 600 " +
                                         path + "`");
  }
  if (too_big || text.size() > kMaxFileSize) {
    return base::Status::InvalidArgument("fleet secret " + path + ": larger than 4096 bytes; " +
                                         "it should hold one line of base64 or hex");
  }
  std::string_view line = text;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!line.empty() && space(line.front())) line.remove_prefix(1);
  while (!line.empty() && space(line.back())) line.remove_suffix(1);
  std::string secret;
  bool one_word = !line.empty() && std::none_of(line.begin(), line.end(), space);
  bool decoded = one_word && (DecodeHex(line, &secret) || DecodeBase64(line, &secret));
  text.assign(text.size(), '\0');
  if (!decoded) {
    return base::Status::InvalidArgument("fleet secret " + path +
                                         ": not one line of base64 or hex; " + MakeHint(path));
  }
  auto keys = DeriveFleetKeys(secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  if (!keys.ok() && keys.code() == base::StatusCode::kInvalidArgument) {
    return base::Status::InvalidArgument("fleet secret " + path + ": " + keys.message() + "; " +
                                         MakeHint(path));
  }
  if (!keys.ok()) return keys.status().WithPrefix("fleet secret " + path + ": ");
  keys->source = path;
  return keys;
}

}  // namespace drawbridge::fleet
