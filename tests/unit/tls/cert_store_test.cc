#include "tls/cert_store.h"

#include <gtest/gtest.h>

#include "tls/test_tls.h"

namespace drawbridge::tls {
namespace {

using tlstest::CommonName;
using tlstest::MakeCert;
using tlstest::TempDir;

std::string CnOf(SSL_CTX* ctx) { return CommonName(SSL_CTX_get0_certificate(ctx)); }

TEST(CertSetTest, FindsBySanCaseInsensitivelyWithWildcards) {
  TempDir dir;
  auto set = CertSet::Load(
      {MakeCert(dir, "default.example", "DNS:default.example"),
       MakeCert(dir, "db.example.com", "DNS:db.example.com,DNS:*.pg.example.com,IP:192.0.2.1")});
  ASSERT_TRUE(set.ok()) << set.message();
  const CertSet& s = **set;
  EXPECT_EQ(CnOf(s.default_ctx()), "default.example");
  EXPECT_EQ(CnOf(s.Find("db.example.com")), "db.example.com");
  EXPECT_EQ(CnOf(s.Find("DB.EXAMPLE.COM")), "db.example.com");
  EXPECT_EQ(CnOf(s.Find("db.example.com.")), "db.example.com") << "trailing dot";
  EXPECT_EQ(CnOf(s.Find("ep-cool-123.pg.example.com")), "db.example.com");
  // A name no certificate covers finds nothing: the caller keeps the certificate it chose for
  // the dialled address (or the default), so the client's verification fails on the name.
  EXPECT_EQ(s.Find("a.b.pg.example.com"), nullptr) << "* matches one label";
  EXPECT_EQ(s.Find("pg.example.com"), nullptr);
  EXPECT_EQ(s.Find(""), nullptr);
  EXPECT_EQ(s.Find("."), nullptr);
  EXPECT_EQ(s.Find("192.0.2.1"), nullptr) << "only DNS SANs are names";
  EXPECT_EQ(s.names(),
            (std::vector<std::string>{"default.example", "db.example.com", "*.pg.example.com"}));
}

TEST(CertSetTest, FirstCertificateForANameWins) {
  TempDir dir;
  auto set = CertSet::Load(
      {MakeCert(dir, "first", "DNS:same.example"), MakeCert(dir, "second", "DNS:same.example")});
  ASSERT_TRUE(set.ok()) << set.message();
  EXPECT_EQ(CnOf((*set)->Find("same.example")), "first");
}

TEST(CertSetTest, RsaCertificatesLoad) {
  TempDir dir;
  auto set = CertSet::Load({MakeCert(dir, "rsa.example", "DNS:rsa.example", "RSA")});
  ASSERT_TRUE(set.ok()) << set.message();
}

TEST(CertSetTest, LoadErrors) {
  TempDir dir;
  auto none = CertSet::Load({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.message(), "no certificate configured");

  CertFiles missing{dir.File("absent.crt"), dir.File("absent.key")};
  auto r = CertSet::Load({missing});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message().rfind(missing.cert_path + ": ", 0), 0u) << r.message();

  CertFiles a = MakeCert(dir, "a.example", "DNS:a.example");
  CertFiles b = MakeCert(dir, "b.example", "DNS:b.example");
  auto mismatched = CertSet::Load({{a.cert_path, b.key_path}});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.message().find(b.key_path), std::string::npos) << mismatched.message();
  ERR_clear_error();
}

TEST(CertStoreTest, SwapKeepsOldSetsAlive) {
  TempDir dir;
  auto one = CertSet::Load({MakeCert(dir, "one.example", "DNS:one.example")});
  auto two = CertSet::Load({MakeCert(dir, "two.example", "DNS:two.example")});
  ASSERT_TRUE(one.ok() && two.ok());
  CertStore store;
  EXPECT_EQ(store.Current(), nullptr);
  store.Swap(*one);
  std::shared_ptr<const CertSet> held = store.Current();
  store.Swap(*two);
  EXPECT_EQ(CnOf(store.Current()->default_ctx()), "two.example");
  EXPECT_EQ(CnOf(held->default_ctx()), "one.example");
}

TEST(NewServerContextTest, EdgeSettings) {
  TempDir dir;
  auto ctx = NewServerContext(MakeCert(dir, "s.example", "DNS:s.example"));
  ASSERT_TRUE(ctx.ok()) << ctx.message();
  SSL_CTX* c = ctx->get();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
  uint64_t opts = SSL_CTX_get_options(c);
  EXPECT_TRUE(opts & SSL_OP_NO_COMPRESSION);
  EXPECT_TRUE(opts & SSL_OP_NO_RENEGOTIATION);
  EXPECT_TRUE(opts & SSL_OP_NO_TICKET);
  EXPECT_EQ(SSL_CTX_get_num_tickets(c), 0u);
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(c), SSL_SESS_CACHE_OFF);
  EXPECT_EQ(SSL_CTX_get_max_early_data(c), 0u);
}

}  // namespace
}  // namespace drawbridge::tls
