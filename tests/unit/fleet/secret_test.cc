// LoadFleetSecret: the file formats it takes, the files it refuses (and what it tells the
// operator), and subkeys that are HKDF-SHA256 of the secret with the documented info strings.
#include "fleet/secret.h"

#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "fleet/fleet_test_util.h"

namespace drawbridge::fleet {
namespace {

using testing::TempDir;

// 32 bytes 0x00..0x1f in both encodings.
constexpr char kHex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr char kBase64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

std::string Write(const TempDir& dir, const std::string& name, const std::string& text,
                  mode_t mode = 0600) {
  std::string path = dir / name;
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
  return path;
}

// HKDF-SHA256 through OpenSSL's EVP_PKEY interface (the code uses EVP_KDF): an independent
// computation of what the docs promise.
std::array<uint8_t, 32> Expected(const std::string& secret, const std::string& info) {
  std::array<uint8_t, 32> out{};
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  const std::string salt = "drawbridge fleet secret";
  size_t len = out.size();
  bool ok = EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1 &&
            EVP_PKEY_CTX_set1_hkdf_salt(ctx, reinterpret_cast<const unsigned char*>(salt.data()),
                                        static_cast<int>(salt.size())) == 1 &&
            EVP_PKEY_CTX_set1_hkdf_key(ctx, reinterpret_cast<const unsigned char*>(secret.data()),
                                       static_cast<int>(secret.size())) == 1 &&
            EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const unsigned char*>(info.data()),
                                        static_cast<int>(info.size())) == 1 &&
            EVP_PKEY_derive(ctx, out.data(), &len) == 1;
  EVP_PKEY_CTX_free(ctx);
  EXPECT_TRUE(ok);
  return out;
}

std::string Bytes0To31() {
  std::string s;
  for (int i = 0; i < 32; ++i) s.push_back(static_cast<char>(i));
  return s;
}

TEST(FleetSecretTest, Base64AndHexGiveTheSameKeys) {
  TempDir dir;
  auto b64 = LoadFleetSecret(Write(dir, "b64", std::string(kBase64) + "\n"));
  auto hex = LoadFleetSecret(Write(dir, "hex", std::string("  ") + kHex + "\r\n"));
  ASSERT_TRUE(b64.ok()) << b64.message();
  ASSERT_TRUE(hex.ok()) << hex.message();
  EXPECT_EQ(b64->check, hex->check);
  EXPECT_EQ(b64->seal, hex->seal);
  EXPECT_EQ(b64->cancel, hex->cancel);
  EXPECT_EQ(b64->peer, hex->peer);
  EXPECT_EQ(b64->source, dir / "b64");
  // Unpadded base64 too.
  auto bare = LoadFleetSecret(Write(dir, "bare", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"));
  ASSERT_TRUE(bare.ok()) << bare.message();
  EXPECT_EQ(bare->seal, b64->seal);
}

TEST(FleetSecretTest, SubkeysAreHkdfSha256WithDistinctInfo) {
  TempDir dir;
  auto keys = LoadFleetSecret(Write(dir, "s", kBase64));
  ASSERT_TRUE(keys.ok()) << keys.message();
  const std::string secret = Bytes0To31();
  EXPECT_EQ(keys->check, Expected(secret, "drawbridge fleet check v1"));
  EXPECT_EQ(keys->seal, Expected(secret, "drawbridge fleet seal v1"));
  EXPECT_EQ(keys->cancel, Expected(secret, "drawbridge fleet cancel v1"));
  EXPECT_EQ(keys->peer, Expected(secret, "drawbridge fleet peer v1"));
  EXPECT_NE(keys->check, keys->seal);
  EXPECT_NE(keys->cancel, keys->peer);
  // Another secret, other keys.
  std::string other(kHex);
  other.back() = '0';
  auto keys2 = LoadFleetSecret(Write(dir, "other", other));
  ASSERT_TRUE(keys2.ok());
  EXPECT_NE(keys->check, keys2->check);
  EXPECT_NE(keys->seal, keys2->seal);
}

TEST(FleetSecretTest, LongerSecretsAreAccepted) {
  TempDir dir;
  auto keys = LoadFleetSecret(Write(dir, "s", std::string(kHex) + kHex));
  ASSERT_TRUE(keys.ok()) << keys.message();
}

TEST(FleetSecretTest, RefusesAFileOthersCanRead) {
  TempDir dir;
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    std::string path = Write(dir, "s", kBase64, mode);
    auto keys = LoadFleetSecret(path);
    ASSERT_FALSE(keys.ok()) << std::oct << mode;
    EXPECT_EQ(keys.code(), base::StatusCode::kInvalidArgument);
    EXPECT_NE(keys.message().find("chmod 600 " + path), std::string::npos) << keys.message();
  }
}

TEST(FleetSecretTest, MissingFileSaysHowToMakeOne) {
  TempDir dir;
  auto keys = LoadFleetSecret(dir / "absent");
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.code(), base::StatusCode::kNotFound);
  EXPECT_NE(keys.message().find("openssl rand -base64 32 > " + (dir / "absent")),
            std::string::npos)
      << keys.message();
}

TEST(FleetSecretTest, RefusesShortOrMalformedSecrets) {
  TempDir dir;
  struct Case {
    std::string text, says;
  } cases[] = {
      {"AAECAwQFBgcICQoLDA0ODw==", "16 bytes"},  // 16 bytes
      {std::string(kHex, 62), "31 bytes"},      // 31 bytes of hex
      {"", "not one line"},
      {"this is not a secret", "not one line"},
      {std::string(kBase64) + "\n" + kBase64, "not one line"},
      {"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "not one line"},
      {std::string(5000, 'a'), "larger than 4096 bytes"},
  };
  for (const auto& c : cases) {
    auto keys = LoadFleetSecret(Write(dir, "s", c.text));
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_EQ(keys.code(), base::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(keys.message().find(c.says), std::string::npos) << keys.message();
  }
}

TEST(FleetSecretTest, AWriteOnlyBitForOthersIsRefusedToo) {
  TempDir dir;
  std::string path = Write(dir, "s", kBase64, 0602);
  auto keys = LoadFleetSecret(path);
  ASSERT_FALSE(keys.ok());
  EXPECT_NE(keys.message().find("mode 0602"), std::string::npos) << keys.message();
}

TEST(FleetSecretTest, RefusesADirectory) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0700);
  auto keys = LoadFleetSecret(dir.path());
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.code(), base::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace drawbridge::fleet
