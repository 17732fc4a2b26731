// The control plane over the in-memory store and over SQLite: validation, allocation (also
// two planes racing on one SQLite file), release and reuse, deploy and the route table.
#include "control/plane.h"

#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "config/fly_toml.h"
#include "tls/ca.h"

namespace drawbridge::control {
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

PlaneOptions TestOptions(const std::string& v4_pool = "127.0.10.0/29",
                         const std::string& ca_dir = "") {
  PlaneOptions o;
  o.domain = "example.test";
  o.v4_pool = v4_pool;
  o.v6_pool = "fd00:db:1::/64";
  o.ca_dir = ca_dir;
  return o;
}

class PlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::NewMemoryStore();
    auto p = ControlPlane::Create(store_.get(), TestOptions());
    ASSERT_TRUE(p.ok()) << p.message();
    plane_ = std::move(*p);
    ASSERT_TRUE(plane_->CreateApp("mydb").ok());
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
  auto again = plane_->CreateApp("mydb");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error.code, ErrorCode::kConflict);
  auto bad = plane_->CreateApp("Bad_Name");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error.code, ErrorCode::kInvalid);
  EXPECT_EQ(plane_->ListMachines("nope").error.code, ErrorCode::kNotFound);
}

TEST_F(PlaneTest, MachinesValidateAddresses) {
  EXPECT_TRUE(plane_->AddMachine("mydb", "10.0.0.5", "", "").ok());
  EXPECT_TRUE(plane_->AddMachine("mydb", "pg-1.internal", "fra", "primary").ok());
  EXPECT_FALSE(plane_->AddMachine("mydb", "bad host!", "", "").ok());
  EXPECT_FALSE(plane_->AddMachine("mydb", "10.0.0.6", "Bad Region", "").ok());
  auto list = plane_->ListMachines("mydb");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list.value->size(), 2u);
  EXPECT_TRUE(plane_->RemoveMachine("mydb", (*list.value)[0].id).ok());
  EXPECT_EQ(plane_->RemoveMachine("mydb", "nope").error.code, ErrorCode::kNotFound);
}

TEST_F(PlaneTest, AllocatesDistinctAddressesUntilThePoolIsFull) {
  // 127.0.10.0/29: .1 is the shared address, .2-.6 dedicated, .7 broadcast.
  std::set<std::string> got;
  for (int i = 0; i < 5; ++i) {
    auto ip = plane_->AllocateIp("mydb", "v4");
    ASSERT_TRUE(ip.ok()) << ip.error.message;
    EXPECT_TRUE(got.insert(ip.value->address).second);
  }
  EXPECT_EQ(got, (std::set<std::string>{"127.0.10.2", "127.0.10.3", "127.0.10.4", "127.0.10.5",
                                        "127.0.10.6"}));
  auto full = plane_->AllocateIp("mydb", "v4");
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error.message.find("no free address"), std::string::npos);
  // Released addresses are reusable.
  ASSERT_TRUE(plane_->ReleaseIp("mydb", "127.0.10.4").ok());
  auto again = plane_->AllocateIp("mydb", "v4");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value->address, "127.0.10.4");
}

TEST_F(PlaneTest, SharedAndV6) {
  ASSERT_TRUE(plane_->CreateApp("other").ok());
  auto a = plane_->AllocateIp("mydb", "shared_v4");
  auto b = plane_->AllocateIp("other", "shared_v4");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value->address, "127.0.10.1");
  EXPECT_EQ(b.value->address, "127.0.10.1");
  EXPECT_EQ(plane_->AllocateIp("mydb", "shared_v4").error.code, ErrorCode::kConflict);
  auto v6 = plane_->AllocateIp("mydb", "v6");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value->address, "fd00:db:1::1");
  EXPECT_EQ(v6.value->version, "v6");
  EXPECT_EQ(plane_->AllocateIp("mydb", "v5").error.code, ErrorCode::kInvalid);
  // Releasing needs the owner and a real address.
  EXPECT_EQ(plane_->ReleaseIp("other", "fd00:db:1::1").error.code, ErrorCode::kNotFound);
  EXPECT_EQ(plane_->ReleaseIp("mydb", "not-an-ip").error.message, "Invalid IP address: 'not-an-ip'");
  EXPECT_TRUE(plane_->ReleaseIp("mydb", "fd00:db:1:0::1").ok()) << "non-canonical spelling";
  EXPECT_EQ(plane_->ListIps("mydb").value->size(), 1u);
}

TEST_F(PlaneTest, DeployKeepsTheTextAndRoundTrips) {
  auto d = plane_->Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15");
  ASSERT_TRUE(d.ok()) << d.error.message;
  EXPECT_EQ(d.value->release, 1);
  // primary_region and auto_stop_machines are kept, not acted on: warnings, not errors.
  ASSERT_EQ(d.value->warnings.size(), 2u);
  EXPECT_EQ(d.value->warnings[0],
            "fly.toml:15: services[1].auto_stop_machines: not acted on by this edge; kept as "
            "written");
  EXPECT_EQ(d.value->warnings[1], "fly.toml:2: primary_region: not acted on by this edge; kept "
                                  "as written");
  auto current = plane_->CurrentConfig("mydb");
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(current.value->toml, kSeedConfig);  // comments and unknown keys survive
  auto original = config::ParseFlyToml(kSeedConfig, "fly.toml");
  auto saved = config::ParseFlyToml(current.value->toml, "fly.toml");
  ASSERT_TRUE(original.ok() && saved.ok());
  EXPECT_EQ(original->config, saved->config);
}

TEST_F(PlaneTest, InvalidDeployKeepsThePreviousRelease) {
  ASSERT_TRUE(plane_->Deploy("mydb", kSeedConfig, "fly.toml", "").ok());
  auto bad = plane_->Deploy("mydb", "[[services]]\ninternal_port = 5432\n[[services.ports]]\n"
                                    "handlers = [\"pgtls\"]\nport = 5432\n",
                            "fly.toml", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error.code, ErrorCode::kInvalid);
  EXPECT_NE(bad.error.message.find("fly.toml:4: services[0].ports[0].handlers"), std::string::npos)
      << bad.error.message;
  EXPECT_EQ(plane_->CurrentConfig("mydb").value->version, 1);
}

TEST_F(PlaneTest, DeployRefusesAnotherPostgresMajor) {
  plane_->ObserveServerVersion("mydb", "10.0.0.5", "15.18 (Debian 15.18-0+deb12u1)");
  EXPECT_TRUE(plane_->Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15.4").ok());
  auto other = plane_->Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:14");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error.message.find("PostgreSQL 14"), std::string::npos);
}

TEST_F(PlaneTest, ImageShowsTheDeployedImageAndObservedVersions) {
  auto m = plane_->AddMachine("mydb", "10.0.0.5", "", "");
  ASSERT_TRUE(plane_->Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres:15").ok());
  plane_->ObserveServerVersion("mydb", "10.0.0.5", "15.18");
  auto image = plane_->Image("mydb");
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image.value->registry, "registry-1.docker.io");
  EXPECT_EQ(image.value->repository, "flyio/postgres");
  EXPECT_EQ(image.value->tag, "15");
  EXPECT_EQ(image.value->version, "v1");
  ASSERT_EQ(image.value->machines.size(), 1u);
  EXPECT_EQ(image.value->machines[0],
            (ImageInfo::MachineVersion{m.value->id, "10.0.0.5", "15.18"}));
}

TEST_F(PlaneTest, RouteTableServesOnlyDeployedAppsOnTheirOwnAddresses) {
  ASSERT_TRUE(plane_->AddMachine("mydb", "10.0.0.5", "", "").ok());
  auto ip = plane_->AllocateIp("mydb", "v4");
  auto before = plane_->BuildRouteTable();
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE((*before)->Ports().empty()) << "nothing is exposed before a deploy";
  ASSERT_TRUE(plane_->Deploy("mydb", kSeedConfig, "fly.toml", "").ok());
  auto table = plane_->BuildRouteTable();
  ASSERT_TRUE(table.ok());
  EXPECT_EQ((*table)->Ports(), (std::vector<int>{5432, 5433}));
  const Route* r = (*table)->Find(ip.value->address, 5433);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->pg_tls);
  EXPECT_EQ(r->internal_port, 5433);
  EXPECT_EQ(r->machines.at(0).address, "10.0.0.5");
  EXPECT_EQ((*table)->Find("127.0.10.3", 5432), nullptr) << "an unallocated address";
  EXPECT_GT((*table)->version(), (*before)->version());
}

TEST_F(PlaneTest, ConnectionStringUsesThePublicNameAndPort) {
  ASSERT_TRUE(plane_->Deploy("mydb", kSeedConfig, "fly.toml", "").ok());
  auto s = plane_->ConnectionString("mydb", "postgres://postgres:pw@mydb.internal:5433/app?sslmode=disable&application_name=x");
  ASSERT_TRUE(s.ok()) << s.error.message;
  EXPECT_EQ(*s.value, "postgres://postgres:pw@mydb.example.test:5433/app?sslmode=require&application_name=x");
  EXPECT_FALSE(plane_->ConnectionString("mydb", "mysql://x").ok());
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
    store_ = store::NewMemoryStore();
    auto p = ControlPlane::Create(store_.get(), TestOptions("127.0.10.0/29", dir_.string()));
    ASSERT_TRUE(p.ok());
    plane_ = std::move(*p);
    ASSERT_TRUE(plane_->CreateApp("mydb").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  tls::CaFiles ca_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ControlPlane> plane_;
};

TEST_F(PlaneCertTest, AnAddressBringsACertificateForTheAppHost) {
  EXPECT_TRUE(plane_->ListCerts().value->empty());
  ASSERT_TRUE(plane_->AllocateIp("mydb", "v6").ok());
  auto cert = plane_->ShowCert("mydb.example.test");
  ASSERT_TRUE(cert.ok()) << cert.error.message;
  EXPECT_EQ(cert.value->source, "ca");
  EXPECT_EQ(cert.value->app, "mydb");
  EXPECT_EQ(cert.value->names, std::vector<std::string>{"mydb.example.test"});
  EXPECT_NE(cert.value->cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  ASSERT_EQ(plane_->CertPems().size(), 1u);
  EXPECT_NE(plane_->CertPems()[0].key_pem.find("PRIVATE KEY"), std::string::npos);
  // A second address does not reissue; a fresh certificate is not due.
  ASSERT_TRUE(plane_->AllocateIp("mydb", "v4").ok());
  EXPECT_EQ(plane_->ShowCert("mydb.example.test").value->cert_pem, cert.value->cert_pem);
  EXPECT_EQ(plane_->RenewDueCerts(), 0);
}

TEST_F(PlaneCertTest, CertificatesAreRenewedBeforeExpiry) {
  auto store = store::NewMemoryStore();
  PlaneOptions o = TestOptions("127.0.10.0/29", dir_.string());
  o.renew_before_days = 1000;  // every certificate of 90 days is due
  auto plane = ControlPlane::Create(store.get(), o);
  ASSERT_TRUE((*plane)->CreateApp("mydb").ok());
  ASSERT_TRUE((*plane)->AllocateIp("mydb", "v4").ok());
  std::string first = (*plane)->ShowCert("mydb.example.test").value->cert_pem;
  EXPECT_EQ((*plane)->RenewDueCerts(), 1);
  EXPECT_NE((*plane)->ShowCert("mydb.example.test").value->cert_pem, first);
}

TEST_F(PlaneCertTest, OperatorCertificatesAreCheckedAndThenWin) {
  auto own = tls::IssueLeaf(ca_, {"mydb.example.test"}, 30);
  auto other = tls::IssueLeaf(ca_, {"other.example.test"}, 30);
  ASSERT_TRUE(own.ok() && other.ok());
  auto bad_key = plane_->AddCert("mydb.example.test", own->cert_pem, other->key_pem);
  ASSERT_FALSE(bad_key.ok());
  EXPECT_EQ(bad_key.error.message,
            "certificate for mydb.example.test refused: the key does not match the certificate");
  auto wrong_name = plane_->AddCert("mydb.example.test", other->cert_pem, other->key_pem);
  ASSERT_FALSE(wrong_name.ok());
  EXPECT_NE(wrong_name.error.message.find("does not cover mydb.example.test"), std::string::npos);
  EXPECT_FALSE(plane_->AddCert("mydb.example.test", "garbage", own->key_pem).ok());
  EXPECT_TRUE(plane_->ListCerts().value->empty()) << "refusals install nothing";

  auto added = plane_->AddCert("MYDB.example.test", own->cert_pem, own->key_pem);
  ASSERT_TRUE(added.ok()) << added.error.message;
  EXPECT_EQ(added.value->host, "mydb.example.test");
  EXPECT_EQ(added.value->source, "operator");
  EXPECT_EQ(added.value->app, "mydb");
  // The operator's certificate is not replaced by the CA's when the app gets an address.
  ASSERT_TRUE(plane_->AllocateIp("mydb", "v4").ok());
  EXPECT_EQ(plane_->ShowCert("mydb.example.test").value->source, "operator");
  EXPECT_EQ(plane_->RenewDueCerts(), 0);
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
  auto p1 = ControlPlane::Create(s1->get(), options);
  auto p2 = ControlPlane::Create(s2->get(), options);
  ASSERT_TRUE(p1.ok() && p2.ok());
  ASSERT_TRUE((*p1)->CreateApp("a").ok());
  ASSERT_TRUE((*p2)->CreateApp("b").ok());
  std::vector<std::string> got_a, got_b;
  auto allocate = [](ControlPlane* p, const std::string& app, std::vector<std::string>* out) {
    for (int i = 0; i < 40; ++i) {
      auto ip = p->AllocateIp(app, i % 2 ? "v6" : "v4");
      ASSERT_TRUE(ip.ok()) << ip.error.message;
      out->push_back(ip.value->address);
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
}  // namespace drawbridge::control
