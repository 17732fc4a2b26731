// The certificates served before the store's: the operator's pairs, else the CA's default for
// the zone apex, issued once and reused while it covers the domain and is not near expiry.
#include "publish/base_certs.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace drawbridge::publish {
namespace {

class BaseCertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("drawbridge-base-certs-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "certs");
    std::filesystem::create_directories(dir_ / "ca");
    auto ca = tls::EnsureCa((dir_ / "ca").string(), "Test CA");
    ASSERT_TRUE(ca.ok()) << ca.message();
    ca_ = *ca;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Certs() const { return (dir_ / "certs").string(); }

  std::filesystem::path dir_;
  tls::CaFiles ca_;
};

TEST_F(BaseCertsTest, TheApexCertificateIsIssuedOnceAndReused) {
  auto first = LoadBaseCerts({}, {}, Certs(), ca_, "example.test");
  ASSERT_TRUE(first.ok()) << first.message();
  ASSERT_EQ(first->size(), 1u);
  EXPECT_NE((*first)[0].cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE((*first)[0].key_pem.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(std::filesystem::status(dir_ / "certs" / "default.key").permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto again = LoadBaseCerts({}, {}, Certs(), ca_, "example.test");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].cert_pem, (*first)[0].cert_pem);
  EXPECT_EQ((*again)[0].key_pem, (*first)[0].key_pem);
}

TEST_F(BaseCertsTest, TheApexCertificateIsIssuedAgainForANewDomainOrNearItsExpiry) {
  auto first = LoadBaseCerts({}, {}, Certs(), ca_, "example.test");
  ASSERT_TRUE(first.ok()) << first.message();
  auto moved = LoadBaseCerts({}, {}, Certs(), ca_, "other.test");
  ASSERT_TRUE(moved.ok()) << moved.message();
  EXPECT_NE((*moved)[0].cert_pem, (*first)[0].cert_pem) << "--domain changed";
  auto covers = tls::CheckCertificate("other.test", (*moved)[0].cert_pem, (*moved)[0].key_pem);
  EXPECT_TRUE(covers.ok()) << covers.message();
  // One that expires within the renewal margin (issued for 10 days) is replaced too.
  auto short_lived = tls::IssueLeaf(ca_, {"other.test"}, 10);
  ASSERT_TRUE(short_lived.ok());
  std::ofstream(dir_ / "certs" / "default.crt", std::ios::trunc) << short_lived->cert_pem;
  std::ofstream(dir_ / "certs" / "default.key", std::ios::trunc) << short_lived->key_pem;
  auto renewed = LoadBaseCerts({}, {}, Certs(), ca_, "other.test");
  ASSERT_TRUE(renewed.ok()) << renewed.message();
  EXPECT_NE((*renewed)[0].cert_pem, short_lived->cert_pem);
}

TEST_F(BaseCertsTest, TheOperatorsPairsAreReadInOrderAndNamed) {
  auto pem = tls::IssueLeaf(ca_, {"db.example.com"}, 30);
  ASSERT_TRUE(pem.ok());
  std::string crt = (dir_ / "own.crt").string(), key = (dir_ / "own.key").string();
  std::ofstream(crt) << pem->cert_pem;
  std::ofstream(key) << pem->key_pem;
  auto certs = LoadBaseCerts({crt, crt + ".missing"}, {key, key}, Certs(), ca_, "example.test");
  ASSERT_TRUE(certs.ok()) << certs.message();
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ((*certs)[0].name, crt + " / " + key);
  EXPECT_EQ((*certs)[0].cert_pem, pem->cert_pem);
  EXPECT_TRUE((*certs)[1].cert_pem.empty()) << "unreadable: PublishNow() names it";
  EXPECT_FALSE(std::filesystem::exists(dir_ / "certs" / "default.crt")) << "no apex certificate";
}

TEST_F(BaseCertsTest, OneKeyForEachCertificate) {
  auto certs = LoadBaseCerts({"a.crt", "b.crt"}, {"a.key"}, Certs(), ca_, "example.test");
  ASSERT_FALSE(certs.ok());
  EXPECT_EQ(certs.code(), base::StatusCode::kInvalidArgument);
  EXPECT_EQ(certs.message(), "give one --key for each --cert");
}

}  // namespace
}  // namespace drawbridge::publish
