#include "fleet/shared_ca.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>

#include "tls/ca.h"

namespace drawbridge::fleet {

namespace {

// Each failed compare-and-set means another node wrote the CA meanwhile; the next read sees it.
constexpr int kMaxAttempts = 4;

struct CaPems {
  std::string cert, key;
};

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return text.str();
}

std::optional<CaPems> ReadCaDir(const std::string& dir) {
  auto cert = ReadFile(dir + "/ca.crt");
  auto key = ReadFile(dir + "/ca.key");
  if (!cert || !key || cert->empty() || key->empty()) return std::nullopt;
  return CaPems{*cert, *key};
}

// Writes the CA files unless they already hold these contents; the key first, since
// tls::EnsureCa takes a directory with both files as a finished CA.
base::Status Install(const std::string& dir, const CaPems& ca) {
  auto local = ReadCaDir(dir);
  if (local && local->cert == ca.cert && local->key == ca.key) return {};
  base::Status s = tls::WriteFileAtomic(dir + "/ca.key", ca.key, 0600);
  if (s.ok()) s = tls::WriteFileAtomic(dir + "/ca.crt", ca.cert, 0644);
  return s;
}

// A new CA, made in a temporary directory inside `dir` and read back.
base::Result<CaPems> NewCa(const std::string& dir, const std::string& common_name) {
  std::string tmpl = dir + "/.new-ca-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return base::Status::Internal("cannot create a temporary directory in " + dir);
  }
  auto files = tls::EnsureCa(tmpl, common_name);
  std::optional<CaPems> pems;
  if (files.ok()) pems = ReadCaDir(tmpl);
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  if (!files.ok()) return files.status();
  if (!pems) return base::Status::Internal("cannot read back the new CA in " + tmpl);
  return *pems;
}

}  // namespace

base::Status ShareCa(store::Store* store, const std::string& ca_dir,
                     const std::string& common_name) {
  std::error_code ec;
  std::filesystem::create_directories(ca_dir, ec);
  if (ec) return base::Status::Internal("cannot create " + ca_dir + ": " + ec.message());
  const std::optional<CaPems> local = ReadCaDir(ca_dir);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // One read of both keys, so that a CA another node is writing is seen whole or not at all.
    auto list = store->List(kCaPrefix);
    if (!list.ok()) {
      // The store cannot be reached: serve with the copy from the last time it could.
      if (local && list.code() == base::StatusCode::kUnavailable) return {};
      return list.status();
    }
    const std::string* cert = nullptr;
    const std::string* key = nullptr;
    for (const auto& kv : *list) {
      if (kv.key == kCaCertKey) cert = &kv.value;
      if (kv.key == kCaKeyKey) key = &kv.value;
    }
    if (cert != nullptr && key != nullptr) return Install(ca_dir, {*cert, *key});
    if ((cert == nullptr) != (key == nullptr)) {
      return base::Status::Internal(std::string("the store holds ") +
                                    (cert != nullptr ? kCaCertKey : kCaKeyKey) + " without " +
                                    (cert != nullptr ? kCaKeyKey : kCaCertKey));
    }
    CaPems candidate;
    if (local) {
      candidate = *local;
    } else {
      auto made = NewCa(ca_dir, common_name);
      if (!made.ok()) return made.status();
      candidate = std::move(*made);
    }
    auto r = store->Commit({{store::Compare::Absent(kCaCertKey), store::Compare::Absent(kCaKeyKey)},
                            {store::Op::Put(kCaCertKey, candidate.cert),
                             store::Op::Put(kCaKeyKey, candidate.key)}});
    if (!r.ok()) {
      if (local && r.code() == base::StatusCode::kUnavailable) return {};
      return r.status();
    }
    if (r->succeeded) return Install(ca_dir, candidate);
    // Another node's CA won: the next read installs it.
  }
  return base::Status::Conflict("ca/cert and ca/key keep changing in " +
                                store->Describe());
}

}  // namespace drawbridge::fleet
