// The control plane over the in-memory store and over SQLite: validation, allocation (also
// two planes racing on one SQLite file), release and reuse, deploy and the route table.
#include "plane/plane.h"

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "config/fly_toml.h"
#include "tls/ca.h"
#include "tls/ca_issuer.h"

namespace drawbridge::plane {
namespace {

constexpr const char* kSeedConfig = R"(app = "mydb"
primary_region = "local"

[[services]]
  internal_port = 5432 # Postgres instance
  protocol = "tcp"

  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432

[[services]]
  internal_port = 5433
  protocol = "tcp"
  auto_stop_machines = false

  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5433
)";

PlaneOptions TestOptions(const std::string& v4_pool = "127.0.10.0/29") {
  PlaneOptions o;
  o.domain = "example.test";
  o.v4_pool = v4_pool;
  o.v6_pool = "fd00:db:1::/64";
  return o;
}

// Checks operator certificates, issues none. Never destroyed (a static of class type).
const tls::CaCertIssuer* NoCa() {
  static const auto* issuer = new tls::CaCertIssuer(std::nullopt);
  return issuer;
}

class PlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::NewMemoryStore();
    auto p = ControlPlane::Create(store_.get(), TestOptions(), NoCa());
    ASSERT_TRUE(p.ok()) << p.message();
    plane_ = std::move(*p);
    ASSERT_TRUE(plane_->apps().Create("mydb").ok());
  }
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ControlPlane> plane_;
};

TEST(AppNameTest, Validation) {
  EXPECT_TRUE(ValidAppName("mydb"));
  EXPECT_TRUE(ValidAppName("my-db-2"));
  for (const char* bad : {"", "MyDb", "1db", "db-", "db_1", "db.x", "a/b",
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    EXPECT_FALSE(ValidAppName(bad)) << bad;
  }
}

TEST_F(PlaneTest, AppsAreUniqueAndValidated) {
  auto again = plane_->apps().Create("mydb");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.code(), base::StatusCode::kConflict);
  auto bad = plane_->apps().Create("Bad_Name");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), base::StatusCode::kInvalidArgument);
  EXPECT_EQ(plane_->machines().List("nope").code(), base::StatusCode::kNotFound);
}

TEST_F(PlaneTest, MachinesValidateAddresses) {
  EXPECT_TRUE(plane_->machines().Add("mydb", "10.0.0.5", "", "").ok());
  EXPECT_TRUE(plane_->machines().Add("mydb", "pg-1.internal", "fra", "primary").ok());
  EXPECT_FALSE(plane_->machines().Add("mydb", "bad host!", "", "").ok());
  EXPECT_FALSE(plane_->machines().Add("mydb", "10.0.0.6", "Bad Region", "").ok());
  auto list = plane_->machines().List("mydb");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE(plane_->machines().Remove("mydb", (*list)[0].id).ok());
  EXPECT_EQ(plane_->machines().Remove("mydb", "nope").code(), base::StatusCode::kNotFound);
}

TEST_F(PlaneTest, AllocatesDistinctAddressesUntilThePoolIsFull) {
  // 127.0.10.0/29: .1 is the shared address, .2-.6 dedicated, .7 broadcast.
  std::set<std::string> got;
  for (int i = 0; i < 5; ++i) {
    auto ip = plane_->ips().Allocate("mydb", "v4");
    ASSERT_TRUE(ip.ok()) << ip.message();
    EXPECT_TRUE(got.insert(ip->address).second);
  }
  EXPECT_EQ(got, (std::set<std::string>{"127.0.10.2", "127.0.10.3", "127.0.10.4", "127.0.10.5",
                                        "127.0.10.6"}));
  auto full = plane_->ips().Allocate("mydb", "v4");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.code(), base::StatusCode::kConflict);
  EXPECT_NE(full.message().find("no free address"), std::string::npos);
  // Released addresses are reusable.
  ASSERT_TRUE(plane_->ips().Release("mydb", "127.0.10.4").ok());
  auto again = plane_->ips().Allocate("mydb", "v4");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->address, "127.0.10.4");
}

TEST_F(PlaneTest, SharedAndV6) {
  ASSERT_TRUE(plane_->apps().Create("other").ok());
  auto a = plane_->ips().Allocate("mydb", "shared_v4");
  auto b = plane_->ips().Allocate("other", "shared_v4");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->address, "127.0.10.1");
  EXPECT_EQ(b->address, "127.0.10.1");
  EXPECT_EQ(plane_->ips().Allocate("mydb", "shared_v4").code(), base::StatusCode::kConflict);
  auto v6 = plane_->ips().Allocate("mydb", "v6");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->address, "fd00:db:1::1");
  EXPECT_EQ(v6->version, "v6");
  EXPECT_EQ(plane_->ips().Allocate("mydb", "v5").code(), base::StatusCode::kInvalidArgument);
  // Releasing needs the owner and a real address.
  EXPECT_EQ(plane_->ips().Release("other", "fd00:db:1::1").code(), base::StatusCode::kNotFound);
  EXPECT_EQ(plane_->ips().Release("mydb", "not-an-ip").message(), "Invalid IP address: 'not-an-ip'");
  EXPECT_TRUE(plane_->ips().Release("mydb", "fd00:db:1:0::1").ok()) << "non-canonical spelling";
  EXPECT_EQ(plane_->ips().List("mydb")->size(), 1u);
}

TEST_F(PlaneTest, DeployKeepsTheTextAndRoundTrips) {
  auto d = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15");
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_EQ(d->release, 1);
  // primary_region and auto_stop_machines are kept, not acted on: warnings, not errors.
  ASSERT_EQ(d->warnings.size(), 2u);
  EXPECT_EQ(d->warnings[0],
            "fly.toml:15: services[1].auto_stop_machines: not acted on by this edge; kept as "
            "written");
  EXPECT_EQ(d->warnings[1],
            "fly.toml:2: primary_region: not acted on by this edge; kept as written");
  auto current = plane_->releases().CurrentConfig("mydb");
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(current->toml, kSeedConfig);  // comments and unknown keys survive
  auto original = config::ParseFlyToml(kSeedConfig, "fly.toml");
  auto saved = config::ParseFlyToml(current->toml, "fly.toml");
  ASSERT_TRUE(original.ok() && saved.ok());
  EXPECT_EQ(original->config, saved->config);
}

TEST_F(PlaneTest, InvalidDeployKeepsThePreviousRelease) {
  ASSERT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "").ok());
  auto bad = plane_->releases().Deploy("mydb", "[[services]]\ninternal_port = 5432\n[[services.ports]]\n"
                                    "handlers = [\"pgtls\"]\nport = 5432\n",
                            "fly.toml", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), base::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("fly.toml:4: services[0].ports[0].handlers"), std::string::npos)
      << bad.message();
  EXPECT_EQ(plane_->releases().CurrentConfig("mydb")->version, 1);
}

TEST_F(PlaneTest, DeployRefusesAnotherPostgresMajor) {
  ASSERT_TRUE(
      plane_->releases().ObserveServerVersion("mydb", "10.0.0.5", "15.18 (Debian 15.18-0+deb12u1)").ok());
  EXPECT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15.4").ok());
  auto other = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:14");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.message().find("PostgreSQL 14"), std::string::npos);
}

TEST_F(PlaneTest, AnImageTagBeyondIntIsRefusedNotThrown) {
  // std::stoi threw std::out_of_range here, through the admin API, and ended the daemon.
  for (const char* image : {"flyio/postgres:99999999999", "flyio/postgres:v2147483648"}) {
    auto r = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", image);
    ASSERT_FALSE(r.ok()) << image;
    EXPECT_EQ(r.code(), base::StatusCode::kInvalidArgument);
    EXPECT_NE(r.message().find(std::string("image ") + image + ": major version \""),
              std::string::npos)
        << r.message();
    EXPECT_NE(r.message().find("is out of range"), std::string::npos) << r.message();
  }
  EXPECT_EQ(plane_->releases().CurrentConfig("mydb")->version, 0) << "nothing was deployed";
  // The largest int is still a (strange) major version, as before; so are tags without one.
  EXPECT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:2147483647").ok());
  EXPECT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:latest").ok());
  ASSERT_TRUE(plane_->releases().ObserveServerVersion("mydb", "10.0.0.5", "15.4").ok());
  auto bad = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:99999999999");
  EXPECT_EQ(bad.code(), base::StatusCode::kInvalidArgument) << "also with observed versions";
}

TEST_F(PlaneTest, AnAbsurdServerVersionIsNotRecorded) {
  auto m = plane_->machines().Add("mydb", "10.0.0.5", "", "");
  ASSERT_TRUE(m.ok());
  auto s = plane_->releases().ObserveServerVersion("mydb", "10.0.0.5", "99999999999.1 (hostile)");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), base::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("server_version not recorded"), std::string::npos) << s.message();
  EXPECT_EQ(plane_->releases().Image("mydb")->machines.at(0).server_version, "");
  // Deploys go on as if the machine had said nothing (this threw in the comparison).
  EXPECT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15").ok());
  // Versions without a leading number are kept for `image show`, as before.
  EXPECT_TRUE(plane_->releases().ObserveServerVersion("mydb", "10.0.0.5", "devel").ok());
  EXPECT_EQ(plane_->releases().Image("mydb")->machines.at(0).server_version, "devel");
  EXPECT_TRUE(plane_->releases().ObserveServerVersion("mydb", "10.0.0.5", "16.2").ok());
  auto other = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15");
  EXPECT_EQ(other.code(), base::StatusCode::kInvalidArgument) << "16 is still compared";
}

TEST_F(PlaneTest, ImageShowsTheDeployedImageAndObservedVersions) {
  auto m = plane_->machines().Add("mydb", "10.0.0.5", "", "");
  ASSERT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15").ok());
  ASSERT_TRUE(plane_->releases().ObserveServerVersion("mydb", "10.0.0.5", "15.18").ok());
  auto image = plane_->releases().Image("mydb");
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image->registry, "registry-1.docker.io");
  EXPECT_EQ(image->repository, "flyio/postgres");
  EXPECT_EQ(image->tag, "15");
  EXPECT_EQ(image->version, "v1");
  ASSERT_EQ(image->machines.size(), 1u);
  EXPECT_EQ(image->machines[0], (ImageInfo::MachineVersion{m->id, "10.0.0.5", "15.18"}));
}

TEST_F(PlaneTest, RouteTableServesOnlyDeployedAppsOnTheirOwnAddresses) {
  ASSERT_TRUE(plane_->machines().Add("mydb", "10.0.0.5", "", "").ok());
  auto ip = plane_->ips().Allocate("mydb", "v4");
  auto before = plane_->BuildRouteTable();
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE((*before)->Ports().empty()) << "nothing is exposed before a deploy";
  ASSERT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "").ok());
  auto table = plane_->BuildRouteTable();
  ASSERT_TRUE(table.ok());
  EXPECT_EQ((*table)->Ports(), (std::vector<int>{5432, 5433}));
  const control::Route* r = (*table)->Find(ip->address, 5433);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->pg_tls);
  EXPECT_EQ(r->internal_port, 5433);
  EXPECT_EQ(r->machines.at(0).address, "10.0.0.5");
  EXPECT_EQ((*table)->Find("127.0.10.3", 5432), nullptr) << "an unallocated address";
  EXPECT_GT((*table)->version(), (*before)->version());
}

TEST_F(PlaneTest, ConnectionStringUsesThePublicNameAndPort) {
  ASSERT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "").ok());
  auto s = plane_->releases().ConnectionString("mydb", "postgres://postgres:pw@mydb.internal:5433/app?sslmode=disable&application_name=x");
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*s, "postgres://postgres:pw@mydb.example.test:5433/app?sslmode=require&application_name=x");
  EXPECT_FALSE(plane_->releases().ConnectionString("mydb", "mysql://x").ok());
  // A port beyond int threw std::out_of_range; one beyond 65535 was taken as given.
  for (const char* port : {"99999999999", "65536", "0"}) {
    auto bad = plane_->releases().ConnectionString("mydb", std::string("postgres://u@h:") + port + "/db");
    ASSERT_FALSE(bad.ok()) << port;
    EXPECT_EQ(bad.code(), base::StatusCode::kInvalidArgument);
    EXPECT_EQ(bad.message(),
              std::string("connection string: port \"") + port + "\" is out of range (1 to 65535)");
  }
  EXPECT_TRUE(plane_->releases().ConnectionString("mydb", "postgres://u@h:5433/db").ok());
}

class PlaneCertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("drawbridge-plane-certs-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    auto ca = tls::EnsureCa(dir_.string(), "Test CA");
    ASSERT_TRUE(ca.ok()) << ca.message();
    ca_ = *ca;
    issuer_.emplace(ca_);
    store_ = store::NewMemoryStore();
    auto p = ControlPlane::Create(store_.get(), TestOptions("127.0.10.0/29"), &*issuer_);
    ASSERT_TRUE(p.ok());
    plane_ = std::move(*p);
    ASSERT_TRUE(plane_->apps().Create("mydb").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  tls::CaFiles ca_;
  std::optional<tls::CaCertIssuer> issuer_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ControlPlane> plane_;
};

TEST_F(PlaneCertTest, AnAddressBringsACertificateForTheAppHost) {
  EXPECT_TRUE(plane_->certificates().List()->empty());
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v6").ok());
  auto cert = plane_->certificates().Show("mydb.example.test");
  ASSERT_TRUE(cert.ok()) << cert.message();
  EXPECT_EQ(cert->source, "ca");
  EXPECT_EQ(cert->app, "mydb");
  EXPECT_EQ(cert->names, std::vector<std::string>{"mydb.example.test"});
  EXPECT_NE(cert->cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  ASSERT_EQ(plane_->certificates().Pems().size(), 1u);
  EXPECT_NE(plane_->certificates().Pems()[0].key_pem.find("PRIVATE KEY"), std::string::npos);
  // A second address does not reissue; a fresh certificate is not due.
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v4").ok());
  EXPECT_EQ(plane_->certificates().Show("mydb.example.test")->cert_pem, cert->cert_pem);
  EXPECT_EQ(plane_->certificates().RenewDue(), 0);
}

TEST_F(PlaneCertTest, CertificatesAreRenewedBeforeExpiry) {
  auto store = store::NewMemoryStore();
  PlaneOptions o = TestOptions("127.0.10.0/29");
  o.renew_before_days = 1000;  // every certificate of 90 days is due
  auto plane = ControlPlane::Create(store.get(), o, &*issuer_);
  ASSERT_TRUE((*plane)->apps().Create("mydb").ok());
  ASSERT_TRUE((*plane)->ips().Allocate("mydb", "v4").ok());
  std::string first = (*plane)->certificates().Show("mydb.example.test")->cert_pem;
  EXPECT_EQ((*plane)->certificates().RenewDue(), 1);
  EXPECT_NE((*plane)->certificates().Show("mydb.example.test")->cert_pem, first);
}

TEST_F(PlaneCertTest, OperatorCertificatesAreCheckedAndThenWin) {
  auto own = tls::IssueLeaf(ca_, {"mydb.example.test"}, 30);
  auto other = tls::IssueLeaf(ca_, {"other.example.test"}, 30);
  ASSERT_TRUE(own.ok() && other.ok());
  auto bad_key = plane_->certificates().Add("mydb.example.test", own->cert_pem, other->key_pem);
  ASSERT_FALSE(bad_key.ok());
  EXPECT_EQ(bad_key.message(),
            "certificate for mydb.example.test refused: the key does not match the certificate");
  EXPECT_EQ(bad_key.code(), base::StatusCode::kInvalidArgument);
  auto wrong_name = plane_->certificates().Add("mydb.example.test", other->cert_pem, other->key_pem);
  ASSERT_FALSE(wrong_name.ok());
  EXPECT_NE(wrong_name.message().find("does not cover mydb.example.test"), std::string::npos);
  EXPECT_FALSE(plane_->certificates().Add("mydb.example.test", "garbage", own->key_pem).ok());
  EXPECT_TRUE(plane_->certificates().List()->empty()) << "refusals install nothing";

  auto added = plane_->certificates().Add("MYDB.example.test", own->cert_pem, own->key_pem);
  ASSERT_TRUE(added.ok()) << added.message();
  EXPECT_EQ(added->host, "mydb.example.test");
  EXPECT_EQ(added->source, "operator");
  EXPECT_EQ(added->app, "mydb");
  // Host names are compared as DNS does: any case, one trailing root dot ignored.
  EXPECT_EQ(plane_->certificates().Show("MyDB.Example.TEST.")->host, "mydb.example.test");
  EXPECT_EQ(plane_->certificates().Show("other.example.test").code(), base::StatusCode::kNotFound);
  // The operator's certificate is not replaced by the CA's when the app gets an address.
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v4").ok());
  EXPECT_EQ(plane_->certificates().Show("mydb.example.test")->source, "operator");
  EXPECT_EQ(plane_->certificates().RenewDue(), 0);
}

TEST(PlaneSqliteTest, TwoPlanesRacingOnOneFileNeverShareAnAddress) {
  auto dir = std::filesystem::temp_directory_path() /
             ("drawbridge-plane-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "state.db").string();
  auto s1 = store::OpenSqliteStore(path);
  auto s2 = store::OpenSqliteStore(path);
  ASSERT_TRUE(s1.ok() && s2.ok());
  PlaneOptions options = TestOptions("127.0.10.0/24");
  auto p1 = ControlPlane::Create(s1->get(), options, NoCa());
  auto p2 = ControlPlane::Create(s2->get(), options, NoCa());
  ASSERT_TRUE(p1.ok() && p2.ok());
  ASSERT_TRUE((*p1)->apps().Create("a").ok());
  ASSERT_TRUE((*p2)->apps().Create("b").ok());
  std::vector<std::string> got_a, got_b;
  auto allocate = [](ControlPlane* p, const std::string& app, std::vector<std::string>* out) {
    for (int i = 0; i < 40; ++i) {
      auto ip = p->ips().Allocate(app, i % 2 ? "v6" : "v4");
      ASSERT_TRUE(ip.ok()) << ip.message();
      out->push_back(ip->address);
    }
  };
  std::thread t1(allocate, p1->get(), "a", &got_a), t2(allocate, p2->get(), "b", &got_b);
  t1.join();
  t2.join();
  std::set<std::string> all(got_a.begin(), got_a.end());
  all.insert(got_b.begin(), got_b.end());
  EXPECT_EQ(all.size(), 80u) << "an address was given twice";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace drawbridge::plane
