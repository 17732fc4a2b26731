#include "store/sealed_store.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <string_view>
#include <utility>

namespace drawbridge::store {

namespace {

constexpr std::string_view kMagic = "sealed:v1:";
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* U(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* U(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

std::string Base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(U(out), U(raw), static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Strict: the standard alphabet, padded to a multiple of 4, nothing else.
bool Unbase64(std::string_view text, std::string* out) {
  if (text.size() % 4 != 0) return false;
  size_t pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/';
    if (c == '=' && i + 2 >= text.size()) {
      ++pad;
    } else if (!alpha || pad > 0) {
      return false;
    }
  }
  std::string in(text);
  out->assign(3 * (text.size() / 4), '\0');
  int n = EVP_DecodeBlock(U(*out), U(in), static_cast<int>(in.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) return false;
  out->resize(static_cast<size_t>(n) - pad);
  return true;
}

class SealedStore : public Store {
 public:
  SealedStore(std::unique_ptr<Store> inner, std::array<uint8_t, 32> key,
              std::vector<std::string> prefixes)
      : inner_(std::move(inner)), key_(key), prefixes_(std::move(prefixes)) {}

  base::Result<std::optional<KeyValue>> Get(const std::string& key) override {
    auto kv = inner_->Get(key);
    if (!kv.ok() || !kv->has_value()) return kv;
    if (base::Status s = OpenInPlace(**kv); !s.ok()) return s;
    return kv;
  }

  base::Result<std::vector<KeyValue>> List(const std::string& prefix) override {
    auto list = inner_->List(prefix);
    if (!list.ok()) return list;
    for (KeyValue& kv : *list) {
      if (base::Status s = OpenInPlace(kv); !s.ok()) return s;
    }
    return list;
  }

  base::Result<TxnResult> Commit(const Txn& txn) override {
    Txn sealed;
    sealed.compares = txn.compares;
    sealed.ops.reserve(txn.ops.size());
    for (const Op& op : txn.ops) {
      if (op.kind != Op::Kind::kPut || !Sealed(op.key)) {
        sealed.ops.push_back(op);
        continue;
      }
      auto value = Seal(op.key, op.value);
      if (!value.ok()) return value.status();
      sealed.ops.push_back(Op::Put(op.key, std::move(*value)));
    }
    return inner_->Commit(sealed);
  }

  base::Result<int64_t> Revision() override { return inner_->Revision(); }
  void Watch(std::function<void(int64_t)> on_change) override {
    inner_->Watch(std::move(on_change));
  }
  void Poll() override { inner_->Poll(); }
  std::string Describe() const override { return inner_->Describe(); }
  StoreHealth Health() override { return inner_->Health(); }
  std::vector<std::string> Endpoints() const override { return inner_->Endpoints(); }

 private:
  bool Sealed(const std::string& key) const {
    for (const auto& p : prefixes_) {
      if (key.compare(0, p.size(), p) == 0) return true;
    }
    return false;
  }

  base::Result<std::string> Seal(const std::string& key, const std::string& plain) const {
    std::string raw(kNonceSize + plain.size() + kTagSize, '\0');
    if (RAND_bytes(U(raw), kNonceSize) != 1) {
      return base::Status::Internal("store key " + key + ": no random bytes for the nonce");
    }
    CtxPtr ctx(EVP_CIPHER_CTX_new());
    int n = 0, tail = 0;
    bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(),
                                        U(raw)) == 1 &&
              EVP_EncryptUpdate(ctx.get(), nullptr, &n, U(key), static_cast<int>(key.size())) == 1 &&
              EVP_EncryptUpdate(ctx.get(), U(raw) + kNonceSize, &n, U(plain),
                                static_cast<int>(plain.size())) == 1 &&
              EVP_EncryptFinal_ex(ctx.get(), U(raw) + kNonceSize + n, &tail) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize,
                                  U(raw) + kNonceSize + plain.size()) == 1;
    if (!ok || static_cast<size_t>(n + tail) != plain.size()) {
      return base::Status::Internal("store key " + key + ": cannot seal the value (OpenSSL)");
    }
    return std::string(kMagic) + Base64(raw);
  }

  // Replaces a sealed value by its plaintext; leaves values outside the prefixes alone.
  base::Status OpenInPlace(KeyValue& kv) const {
    if (!Sealed(kv.key)) return {};
    auto refuse = [&](std::string_view why) {
      return base::Status::Internal("store key " + kv.key + ": " + std::string(why) +
                                    "; it cannot be decrypted with this fleet's secret");
    };
    std::string_view text = kv.value;
    if (text.substr(0, kMagic.size()) != kMagic) return refuse("the value is not sealed");
    std::string raw;
    if (!Unbase64(text.substr(kMagic.size()), &raw) || raw.size() < kNonceSize + kTagSize) {
      return refuse("the sealed value is malformed");
    }
    size_t size = raw.size() - kNonceSize - kTagSize;
    std::string plain(size, '\0');
    CtxPtr ctx(EVP_CIPHER_CTX_new());
    int n = 0, tail = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(),
                                        U(raw)) == 1 &&
              EVP_DecryptUpdate(ctx.get(), nullptr, &n, U(kv.key),
                                static_cast<int>(kv.key.size())) == 1 &&
              EVP_DecryptUpdate(ctx.get(), U(plain), &n, U(raw) + kNonceSize,
                                static_cast<int>(size)) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize,
                                  U(raw) + kNonceSize + size) == 1 &&
              EVP_DecryptFinal_ex(ctx.get(), U(plain) + n, &tail) == 1;
    if (!ok) return refuse("the sealed value does not authenticate");
    kv.value = std::move(plain);
    return {};
  }

  std::unique_ptr<Store> inner_;
  const std::array<uint8_t, 32> key_;
  const std::vector<std::string> prefixes_;
};

}  // namespace

std::unique_ptr<Store> NewSealedStore(std::unique_ptr<Store> inner, std::array<uint8_t, 32> key,
                                      std::vector<std::string> sealed_prefixes) {
  return std::make_unique<SealedStore>(std::move(inner), key, std::move(sealed_prefixes));
}

}  // namespace drawbridge::store
