// The control plane over the in-memory store and over SQLite: validation, allocation (also
// two planes racing on one SQLite file), release, quarantine and reuse, deploy and the route
// table.
#include "plane/plane.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "config/fly_toml.h"
#include "plane/records.h"
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

TEST_F(PlaneTest, MachinesRefuseAddressesNoConnectionCanReach) {
  // Each was accepted and stored: a route to it could never connect.
  const std::pair<const char*, const char*> bad[] = {
      {"0.0.0.0", "the unspecified address cannot be a machine"},
      {"::", "the unspecified address cannot be a machine"},
      {"::ffff:0.0.0.0", "the unspecified address cannot be a machine"},
      {"0.1.2.3", "0.0.0.0/8 (\"this network\") cannot be a machine"},
      {"255.255.255.255", "the broadcast address cannot be a machine"},
      {"224.0.0.1", "a multicast address cannot be a machine"},
      {"239.255.255.250", "a multicast address cannot be a machine"},
      {"ff02::1", "a multicast address cannot be a machine"},
      {"999.1.1.1", "not an IPv4 address: four numbers from 0 to 255, separated by dots"},
      {"10.0.0", "not an IPv4 address: four numbers from 0 to 255, separated by dots"},
      {"1.2.3.4.5", "not an IPv4 address: four numbers from 0 to 255, separated by dots"},
      {"10.0.0.5:5432",
       "a machine address takes no port: connections go to the service's internal_port"},
      {"fd00::zz", "not an IPv6 address"},
      {"pg..internal", "not a host name: labels of letters, digits and '-', separated by dots"},
      {"-pg.internal", "not a host name: labels of letters, digits and '-', separated by dots"},
      {"bad host!", "not a host name: labels of letters, digits and '-', separated by dots"},
  };
  for (const auto& [address, why] : bad) {
    auto r = plane_->machines().Add("mydb", address, "", "");
    ASSERT_FALSE(r.ok()) << address;
    EXPECT_EQ(r.code(), base::StatusCode::kInvalidArgument) << address;
    EXPECT_EQ(r.message(), std::string("invalid machine address \"") + address + "\": " + why);
  }
  EXPECT_TRUE(plane_->machines().List("mydb")->empty()) << "nothing was stored";
  for (const char* good : {"127.0.0.1", "::1", "10.0.0.5", "fd00::5", "255.255.255.254",
                           "223.255.255.255", "localhost", "pg-1.internal", "1password.example"}) {
    EXPECT_TRUE(plane_->machines().Add("mydb", good, "", "").ok()) << good;
  }
}

TEST_F(PlaneTest, AMachineAddressIsInAnAppOnce) {
  auto first = plane_->machines().Add("mydb", "fd00::5", "", "");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(plane_->machines().Add("mydb", "pg-1.internal", "", "").ok());
  // The same address spelt another way is the same machine: IPs canonically, names as DNS does.
  for (const char* again : {"fd00::5", "fd00:0:0::5", "PG-1.Internal", "pg-1.internal."}) {
    auto r = plane_->machines().Add("mydb", again, "", "");
    ASSERT_FALSE(r.ok()) << again;
    EXPECT_EQ(r.code(), base::StatusCode::kConflict) << again;
    EXPECT_NE(r.message().find(std::string("machine address \"") + again +
                               "\" is already in app \"mydb\""),
              std::string::npos)
        << r.message();
  }
  auto dup = plane_->machines().Add("mydb", "fd00:0:0::5", "", "");
  EXPECT_NE(dup.message().find("(machine " + first->id + ")"), std::string::npos) << dup.message();
  EXPECT_EQ(plane_->machines().List("mydb")->size(), 2u);
  // Another app may have a machine at the same address; a removed machine's address is free.
  ASSERT_TRUE(plane_->apps().Create("other").ok());
  EXPECT_TRUE(plane_->machines().Add("other", "fd00::5", "", "").ok());
  ASSERT_TRUE(plane_->machines().Remove("mydb", first->id).ok());
  EXPECT_TRUE(plane_->machines().Add("mydb", "fd00::5", "", "").ok());
}

TEST_F(PlaneTest, NotFoundIsWordedOneWay) {
  EXPECT_EQ(plane_->machines().List("ghost").message(), "app \"ghost\" not found");
  EXPECT_EQ(plane_->apps().Destroy("ghost").message(), "app \"ghost\" not found");
  EXPECT_EQ(plane_->releases().CurrentConfig("ghost").message(), "app \"ghost\" not found");
  auto machine = plane_->machines().Remove("mydb", "nope");
  EXPECT_EQ(machine.code(), base::StatusCode::kNotFound);
  EXPECT_EQ(machine.message(), "machine \"nope\" not found in app \"mydb\"");
  auto ip = plane_->ips().Release("mydb", "fd00:db:1:0::9");
  EXPECT_EQ(ip.code(), base::StatusCode::kNotFound);
  EXPECT_EQ(ip.message(), "IP address \"fd00:db:1::9\" not found in app \"mydb\"");
  for (auto r : {plane_->certificates().Show("Nope.Example.TEST"),
                 plane_->certificates().Remove("nope.example.test.")}) {
    EXPECT_EQ(r.code(), base::StatusCode::kNotFound);
    EXPECT_EQ(r.message(), "certificate for \"nope.example.test\" not found");
  }
  // A name that cannot be a certificate's is bad input, shown escaped (it came from a URL).
  auto bad = plane_->certificates().Remove("no\xffpe\n");
  EXPECT_EQ(bad.code(), base::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(), "invalid host name \"no\\xffpe\\n\"");
  EXPECT_EQ(plane_->certificates().Show("").message(), "a host name is required");
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
  // A released address is not given out again at once (quarantine, below).
  ASSERT_TRUE(plane_->ips().Release("mydb", "127.0.10.4").ok());
  EXPECT_EQ(plane_->ips().Allocate("mydb", "v4").code(), base::StatusCode::kConflict);
}

// ---- quarantine of released addresses, with a clock of the test's own

class QuarantineTest : public ::testing::Test {
 protected:
  static constexpr int64_t kStart = 1'790'000'000;  // 2026-09-21T14:13:20Z

  void SetUp() override { Make(std::chrono::hours(24)); }
  void Make(std::chrono::seconds quarantine) {
    store_ = store::NewMemoryStore();
    PlaneOptions o = TestOptions();  // .2-.6 dedicated
    o.ip_quarantine = quarantine;
    o.clock = [this] { return now_.load(); };
    auto p = ControlPlane::Create(store_.get(), o, NoCa());
    ASSERT_TRUE(p.ok()) << p.message();
    plane_ = std::move(*p);
    ASSERT_TRUE(plane_->apps().Create("mydb").ok());
    ASSERT_TRUE(plane_->apps().Create("other").ok());
  }
  std::string Allocate(const std::string& app, const std::string& type = "v4") {
    auto ip = plane_->ips().Allocate(app, type);
    EXPECT_TRUE(ip.ok()) << ip.message();
    return ip.ok() ? ip->address : "";
  }
  std::atomic<int64_t> now_{kStart};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ControlPlane> plane_;
};

TEST_F(QuarantineTest, AReleasedAddressIsSkippedUntilItsQuarantineEnds) {
  EXPECT_EQ(Allocate("mydb"), "127.0.10.2");
  EXPECT_EQ(Allocate("mydb"), "127.0.10.3");
  ASSERT_TRUE(plane_->ips().Release("mydb", "127.0.10.2").ok());
  EXPECT_EQ(Allocate("other"), "127.0.10.4") << "the next tenant must not get .2 at once";
  now_ += 24 * 3600 - 1;
  EXPECT_EQ(Allocate("other"), "127.0.10.5") << "one second short of 24 h";
  now_ += 1;
  EXPECT_EQ(Allocate("other"), "127.0.10.2") << "the quarantine is over";
  // The allocation took the quarantine record with it: released again, .2 starts afresh.
  EXPECT_TRUE(store_->List("quarantine/")->empty());
  ASSERT_TRUE(plane_->ips().Release("other", "127.0.10.2").ok());
  EXPECT_EQ(Allocate("other"), "127.0.10.6");
}

TEST_F(QuarantineTest, AFullPoolSaysHowManyAreInQuarantineAndUntilWhen) {
  for (int i = 0; i < 5; ++i) Allocate("mydb");
  ASSERT_TRUE(plane_->ips().Release("mydb", "127.0.10.5").ok());
  now_ += 3600;
  ASSERT_TRUE(plane_->ips().Release("mydb", "127.0.10.3").ok());
  auto full = plane_->ips().Allocate("other", "v4");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.code(), base::StatusCode::kConflict);
  // .5 was released first: its quarantine ends first, 24 h after kStart.
  EXPECT_EQ(full.message(),
            "the IPv4 pool 127.0.10.0/29 has no free address: 2 released addresses are in "
            "quarantine, the first until 2026-09-22T14:13:20Z (drawbridge serve --ip-quarantine "
            "sets how long)");
  now_ = kStart + 24 * 3600;
  EXPECT_EQ(Allocate("other"), "127.0.10.5");
  auto one = plane_->ips().Allocate("other", "v4");
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.message().find(": 1 released address is in quarantine, the first until "
                               "2026-09-22T15:13:20Z"),
            std::string::npos)
      << one.message();
}

TEST_F(QuarantineTest, DestroyingAnAppQuarantinesItsDedicatedAddressesNotTheShared) {
  EXPECT_EQ(Allocate("mydb"), "127.0.10.2");
  EXPECT_EQ(Allocate("mydb", "v6"), "fd00:db:1::1");
  EXPECT_EQ(Allocate("mydb", "shared_v4"), "127.0.10.1");
  ASSERT_TRUE(plane_->apps().Destroy("mydb").ok());
  EXPECT_EQ(Allocate("other"), "127.0.10.3");
  EXPECT_EQ(Allocate("other", "v6"), "fd00:db:1::2");
  // The shared address is nobody's own: on it the client names its app.
  EXPECT_EQ(Allocate("other", "shared_v4"), "127.0.10.1");
  ASSERT_TRUE(plane_->ips().Release("other", "127.0.10.1").ok());
  EXPECT_EQ(Allocate("other", "shared_v4"), "127.0.10.1");
  EXPECT_EQ(store_->List("quarantine/")->size(), 2u) << "shared releases leave no record";
}

TEST_F(QuarantineTest, ZeroGivesAReleasedAddressBackAtOnce) {
  Make(std::chrono::seconds(0));
  EXPECT_EQ(Allocate("mydb"), "127.0.10.2");
  ASSERT_TRUE(plane_->ips().Release("mydb", "127.0.10.2").ok());
  EXPECT_EQ(Allocate("other"), "127.0.10.2");
}

TEST_F(QuarantineTest, HoldersListEveryAppWithItsAddresses) {
  std::string v4 = Allocate("mydb");
  std::string v6 = Allocate("mydb", "v6");
  Allocate("mydb", "shared_v4");
  int64_t revision = 0;
  auto holders = plane_->ips().Holders(&revision);
  ASSERT_TRUE(holders.ok()) << holders.message();
  EXPECT_EQ(*holders, (std::map<std::string, std::set<std::string>>{
                          {"mydb", {v4, v6, "127.0.10.1"}}, {"other", {}}}));
  EXPECT_EQ(revision, *store_->Revision());
  ASSERT_TRUE(plane_->ips().Release("mydb", v4).ok());
  ASSERT_TRUE(plane_->apps().Destroy("other").ok());
  holders = plane_->ips().Holders(&revision);
  ASSERT_TRUE(holders.ok());
  EXPECT_EQ(*holders,
            (std::map<std::string, std::set<std::string>>{{"mydb", {v6, "127.0.10.1"}}}));
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

TEST_F(PlaneTest, DeployRefusesAnImageNoRegistryCouldHave) {
  const std::pair<const char*, const char*> bad[] = {
      {"evil image:with spaces", "the repository \"evil image\" must be lower-case"},
      {"flyio/postgres:with spaces", "the tag \"with spaces\" must be 1-128 letters"},
      {"FlyIO/postgres:15", "the repository \"FlyIO/postgres\" must be lower-case"},
      {"flyio//postgres", "the repository \"flyio//postgres\" must be lower-case"},
      {"flyio/postgres/", "the repository"},
      {"flyio/-postgres", "the repository"},
      {"flyio/post--_gres", "the repository"},
      {"flyio/postgres___x", "the repository"},
      {"flyio/postgres:", "the tag \"\" must be"},
      {"flyio/postgres:.15", "the tag \".15\" must be"},
      {"flyio/postgres:-15", "the tag \"-15\" must be"},
      {"flyio/postgres:15;rm", "the tag \"15;rm\" must be"},
      {"flyio/postgres@sha256:abc", "the digest must be sha256: and 64 lower-case hex digits"},
      {"flyio/postgres@md5:0123456789abcdef0123456789abcdef", "the digest must be sha256:"},
      {"bad_host.io/postgres:15", "the registry \"bad_host.io\" must be a host name"},
      {"registry.io:99999999/postgres", "the registry \"registry.io:99999999\" must be"},
      {"[nope]:5000/postgres", "the registry \"[nope]:5000\" must be"},
      {":15", "the repository \"\" must be"},
  };
  for (const auto& [image, rule] : bad) {
    auto r = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", image);
    ASSERT_FALSE(r.ok()) << image;
    EXPECT_EQ(r.code(), base::StatusCode::kInvalidArgument) << image;
    EXPECT_EQ(r.message().rfind(std::string("invalid image \"") + image + "\": " + rule, 0), 0u)
        << r.message();
    EXPECT_NE(r.message().find("(an image is [registry[:port]/]repository[:tag][@sha256:digest])"),
              std::string::npos)
        << r.message();
  }
  std::string long_tag = "flyio/postgres:" + std::string(129, '1');
  EXPECT_EQ(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", long_tag).code(),
            base::StatusCode::kInvalidArgument);
  std::string long_name = std::string(256, 'a') + ":15";
  EXPECT_NE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", long_name)
                .message()
                .find("the name is longer than 255 characters"),
            std::string::npos);
  EXPECT_EQ(plane_->releases().CurrentConfig("mydb")->version, 0) << "nothing was deployed";

  const std::string digest = "sha256:" + std::string(64, 'a');
  for (const std::string& good :
       {std::string("flyio/postgres:15"), std::string("postgres"), std::string("postgres:15.4-bookworm"),
        std::string("docker.io/library/postgres:16_RC1"), std::string("localhost:5000/pg:15"),
        std::string("Registry.Example.com:443/team/pg.sql__x-y--z:latest"),
        std::string("[fd00::1]:5000/pg:15"), "flyio/postgres@" + digest,
        "flyio/postgres:15@" + digest, "flyio/postgres:" + std::string(128, 'a')}) {
    auto r = plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", good);
    EXPECT_TRUE(r.ok()) << good << ": " << r.message();
  }
  // A digest is no tag: `image show` shows the digest where the tag would be.
  ASSERT_TRUE(plane_->releases().Deploy("mydb", kSeedConfig, "fly.toml", "flyio/postgres@" + digest).ok());
  auto image = plane_->releases().Image("mydb");
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image->repository, "flyio/postgres");
  EXPECT_EQ(image->tag, digest);
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

TEST_F(PlaneCertTest, DestroyingAnAppTakesItsCertificatesAndKeys) {
  ASSERT_TRUE(plane_->apps().Create("other").ok());
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v6").ok());
  ASSERT_TRUE(plane_->ips().Allocate("other", "v6").ok());
  auto own = tls::IssueLeaf(ca_, {"db.elsewhere.example"}, 30);
  ASSERT_TRUE(own.ok());
  ASSERT_TRUE(plane_->certificates().Add("db.elsewhere.example", own->cert_pem, own->key_pem).ok());
  ASSERT_EQ(plane_->certificates().List()->size(), 3u);
  ASSERT_TRUE(plane_->apps().Destroy("mydb").ok());
  std::set<std::string> hosts;
  auto left = plane_->certificates().List();
  ASSERT_TRUE(left.ok());
  for (const auto& c : *left) hosts.insert(c.host);
  EXPECT_EQ(hosts, (std::set<std::string>{"db.elsewhere.example", "other.example.test"}));
  EXPECT_EQ(plane_->certificates().Pems().size(), 2u) << "the key went with the certificate";
  EXPECT_EQ(plane_->certificates().Show("mydb.example.test").code(), base::StatusCode::kNotFound);
  // The operator's certificate for the app's host goes with the app as well.
  ASSERT_TRUE(plane_->apps().Create("mydb").ok());
  auto mine = tls::IssueLeaf(ca_, {"mydb.example.test"}, 30);
  ASSERT_TRUE(mine.ok());
  ASSERT_TRUE(plane_->certificates().Add("mydb.example.test", mine->cert_pem, mine->key_pem).ok());
  ASSERT_TRUE(plane_->apps().Destroy("mydb").ok());
  EXPECT_EQ(plane_->certificates().Show("mydb.example.test").code(), base::StatusCode::kNotFound);
}

TEST_F(PlaneCertTest, RemoveTakesOneCertificateAndItsKey) {
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v6").ok());
  auto own = tls::IssueLeaf(ca_, {"db.elsewhere.example"}, 30);
  ASSERT_TRUE(own.ok());
  ASSERT_TRUE(plane_->certificates().Add("db.elsewhere.example", own->cert_pem, own->key_pem).ok());
  auto removed = plane_->certificates().Remove("DB.Elsewhere.Example.");
  ASSERT_TRUE(removed.ok()) << removed.message();
  EXPECT_EQ(removed->host, "db.elsewhere.example");
  EXPECT_EQ(removed->source, "operator");
  ASSERT_EQ(plane_->certificates().List()->size(), 1u);
  EXPECT_EQ(plane_->certificates().Pems().size(), 1u);
  EXPECT_EQ(plane_->certificates().Remove("db.elsewhere.example").code(),
            base::StatusCode::kNotFound);
  // The CA's certificate of an app can be removed too; nothing reissues it until the app gets
  // another address.
  ASSERT_TRUE(plane_->certificates().Remove("mydb.example.test").ok());
  EXPECT_TRUE(plane_->certificates().List()->empty());
  EXPECT_EQ(plane_->certificates().RenewDue(), 0);
  EXPECT_TRUE(plane_->certificates().List()->empty());
}

TEST_F(PlaneCertTest, AtStartTheCaCertificatesOfNoCurrentAppGo) {
  ASSERT_TRUE(plane_->apps().Create("gone").ok());
  for (const char* app : {"mydb", "gone"}) ASSERT_TRUE(plane_->ips().Allocate(app, "v6").ok());
  auto own = tls::IssueLeaf(ca_, {"mydb.example.test"}, 30);
  auto elsewhere = tls::IssueLeaf(ca_, {"db.elsewhere.example"}, 30);
  ASSERT_TRUE(own.ok() && elsewhere.ok());
  ASSERT_TRUE(
      plane_->certificates().Add("db.elsewhere.example", elsewhere->cert_pem, elsewhere->key_pem).ok());
  // An app destroyed by an older version left its certificate behind.
  ASSERT_TRUE(store_->Commit({{}, {store::Op::Delete(records::AppKey("gone"))}})->succeeded);
  auto same = plane_->certificates().RemoveOrphanedCaCerts();
  ASSERT_TRUE(same.ok()) << same.message();
  ASSERT_EQ(same->size(), 1u);
  EXPECT_EQ((*same)[0].host, "gone.example.test");
  EXPECT_EQ(plane_->certificates().List()->size(), 2u);

  // The daemon restarted with another --domain: the CA's certificate of the old one goes, the
  // operator's stay (theirs to remove), also one under the old domain.
  ASSERT_TRUE(plane_->certificates().Add("mydb.example.test", own->cert_pem, own->key_pem).ok());
  ASSERT_TRUE(plane_->apps().Create("next").ok());
  ASSERT_TRUE(plane_->ips().Allocate("next", "v6").ok());  // next.example.test, the CA's
  PlaneOptions o = TestOptions("127.0.10.0/29");
  o.domain = "other.test";
  auto moved = ControlPlane::Create(store_.get(), o, &*issuer_);
  ASSERT_TRUE(moved.ok());
  ASSERT_TRUE((*moved)->certificates().EnsureAppCert("mydb").ok());  // mydb.other.test
  auto gone = (*moved)->certificates().RemoveOrphanedCaCerts();
  ASSERT_TRUE(gone.ok()) << gone.message();
  ASSERT_EQ(gone->size(), 1u);
  EXPECT_EQ((*gone)[0].host, "next.example.test");
  std::set<std::string> hosts;
  auto left = (*moved)->certificates().List();
  ASSERT_TRUE(left.ok());
  for (const auto& c : *left) hosts.insert(c.host + " " + c.source);
  EXPECT_EQ(hosts, (std::set<std::string>{"db.elsewhere.example operator",
                                          "mydb.example.test operator", "mydb.other.test ca"}));
  EXPECT_TRUE((*moved)->certificates().RemoveOrphanedCaCerts()->empty()) << "nothing left to do";
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

TEST(PlaneSqliteTest, RacingAllocationsOverEndedQuarantinesNeverShareAnAddress) {
  auto dir = std::filesystem::temp_directory_path() /
             ("drawbridge-plane-test-q-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "state.db").string();
  auto s1 = store::OpenSqliteStore(path);
  auto s2 = store::OpenSqliteStore(path);
  ASSERT_TRUE(s1.ok() && s2.ok());
  PlaneOptions options = TestOptions("127.0.10.0/27");  // .2-.30 dedicated
  options.ip_quarantine = std::chrono::seconds(0);      // every record below has ended
  auto p1 = ControlPlane::Create(s1->get(), options, NoCa());
  auto p2 = ControlPlane::Create(s2->get(), options, NoCa());
  ASSERT_TRUE(p1.ok() && p2.ok());
  ASSERT_TRUE((*p1)->apps().Create("a").ok());
  ASSERT_TRUE((*p2)->apps().Create("b").ok());
  // Every address was someone's and was released: each allocation below must take an address
  // over by compare-and-set on its quarantine record as well as on its key.
  std::vector<std::string> first;
  for (int i = 0; i < 29; ++i) {
    auto ip = (*p1)->ips().Allocate("a", "v4");
    ASSERT_TRUE(ip.ok()) << ip.message();
    first.push_back(ip->address);
  }
  for (const auto& a : first) ASSERT_TRUE((*p1)->ips().Release("a", a).ok());
  ASSERT_EQ((*s1)->List("quarantine/")->size(), 29u);
  std::vector<std::string> got_a, got_b;
  auto allocate = [](ControlPlane* p, const std::string& app, std::vector<std::string>* out) {
    for (int i = 0; i < 14; ++i) {
      auto ip = p->ips().Allocate(app, "v4");
      ASSERT_TRUE(ip.ok()) << ip.message();
      out->push_back(ip->address);
    }
  };
  std::thread t1(allocate, p1->get(), "a", &got_a), t2(allocate, p2->get(), "b", &got_b);
  t1.join();
  t2.join();
  std::set<std::string> all(got_a.begin(), got_a.end());
  all.insert(got_b.begin(), got_b.end());
  EXPECT_EQ(all.size(), 28u) << "an address was given twice";
  EXPECT_EQ((*s1)->List("quarantine/")->size(), 1u) << "each allocation took its record";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace drawbridge::plane

// Issue 12: deploy's own warnings name file:line, and a deploy that serves nothing, or serves
// raw TCP where no client can be told apart, says so.
namespace drawbridge::plane {
namespace {

constexpr const char* kRawTcpConfig = R"(app = "mydb"

[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432

[[services]]
  internal_port = 6379
  [[services.ports]]
    port = 6379
  [[services.ports]]
    handlers = ["proxy_proto"]
    start_port = 7000
    end_port = 7002
  [[services.ports]]
    handlers = ["tls"]
    port = 8443
)";

std::string RawTcpWarning(int line, const std::string& key, const std::string& ports) {
  return "fly.toml:" + std::to_string(line) + ": " + key +
         ": raw TCP (no \"tls\" or \"pg_tls\" handler) on the shared IPv4 127.0.10.1, the app's "
         "only IPv4: that address cannot tell apps apart without TLS SNI, so connections to it "
         "on " + ports + " are refused; allocate a dedicated IPv4 with `drawbridge ips allocate-v4`";
}

TEST_F(PlaneTest, AnEmptyConfigDeploysWithAWarning) {
  auto d = plane_->releases().Deploy("mydb", "", "/dev/null", "");
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_EQ(d->warnings, (std::vector<std::string>{"/dev/null:1: services: no [[services]]: "
                                                   "nothing will be served for this app"}));
  auto v = plane_->releases().Validate("mydb", "app = \"mydb\"\n", "fly.toml");
  ASSERT_TRUE(v.ok()) << v.message();
  EXPECT_EQ(*v, (std::vector<std::string>{"fly.toml:1: services: no [[services]]: nothing will "
                                          "be served for this app"}));
}

TEST_F(PlaneTest, RawTcpOnTheSharedIpv4AloneWarnsAtThePort) {
  // No address at all, or only v6: nothing to warn about on the shared address.
  auto none = plane_->releases().Validate("mydb", kRawTcpConfig, "fly.toml");
  ASSERT_TRUE(none.ok()) << none.message();
  EXPECT_TRUE(none->empty()) << none->front();
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v6").ok());
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "shared_v4").ok());
  auto d = plane_->releases().Deploy("mydb", kRawTcpConfig, "fly.toml", "");
  ASSERT_TRUE(d.ok()) << d.message();
  // The raw port and the proxy_proto range; not pg_tls, not tls (SNI tells the apps apart).
  EXPECT_EQ(d->warnings,
            (std::vector<std::string>{RawTcpWarning(11, "services[1].ports[0]", "port 6379"),
                                      RawTcpWarning(13, "services[1].ports[1]", "ports 7000-7002")}));
  // Another app on the shared address with only pg_tls: no warning.
  ASSERT_TRUE(plane_->apps().Create("other").ok());
  ASSERT_TRUE(plane_->ips().Allocate("other", "shared_v4").ok());
  auto other = plane_->releases().Validate("other", kSeedConfig, "fly.toml");
  ASSERT_TRUE(other.ok()) << other.message();
  for (const auto& w : *other) EXPECT_EQ(w.find("raw TCP"), std::string::npos) << w;
  // A dedicated IPv4 tells the app apart by address: the warning goes.
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "v4").ok());
  auto dedicated = plane_->releases().Validate("mydb", kRawTcpConfig, "fly.toml");
  ASSERT_TRUE(dedicated.ok()) << dedicated.message();
  EXPECT_TRUE(dedicated->empty()) << dedicated->front();
}

TEST_F(PlaneTest, DeployWarningsNameFileAndLine) {
  auto d = plane_->releases().Deploy("mydb", R"(# another app's file
app = "elsewhere"

[[services]]
  internal_port = 8080
  [[services.ports]]
    port = 443
    handlers = ["tls", "http"]
)", "web.toml", "");
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_EQ(d->warnings,
            (std::vector<std::string>{
                "web.toml:2: app: the file names app \"elsewhere\"; deploying to \"mydb\"",
                "web.toml:8: services[0].ports[0].handlers: the \"http\" handler is not served "
                "by this edge yet; the port is not opened"}));
}

// `config save` before the first deploy writes DefaultConfig: a pg_tls service on 5432 that
// deploys without a warning, also on the shared address alone.
TEST_F(PlaneTest, TheSavedTemplateDeploysWithoutWarnings) {
  ASSERT_TRUE(plane_->ips().Allocate("mydb", "shared_v4").ok());
  auto saved = plane_->releases().CurrentConfig("mydb");
  ASSERT_TRUE(saved.ok()) << saved.message();
  EXPECT_EQ(saved->version, 0);
  auto d = plane_->releases().Deploy("mydb", saved->toml, saved->file, "");
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_TRUE(d->warnings.empty()) << d->warnings.front();
  auto services = plane_->releases().CurrentServices("mydb");
  ASSERT_TRUE(services.ok()) << services.message();
  ASSERT_EQ(services->services.size(), 1u);
  EXPECT_EQ(services->services[0].internal_port, 5432);
  ASSERT_EQ(services->services[0].ports.size(), 1u);
  EXPECT_EQ(services->services[0].ports[0].port, 5432);
  EXPECT_EQ(services->services[0].ports[0].handlers, std::vector<std::string>{"pg_tls"});
}

}  // namespace
}  // namespace drawbridge::plane
