#include "net/route_choice.h"

#include <gtest/gtest.h>

#include <vector>

namespace drawbridge::net {
namespace {

control::Route App(std::string name) {
  control::Route r;
  r.app = name;
  r.host = name + ".drawbridge.test";
  r.pg_tls = true;
  return r;
}

class RouteChoiceTest : public ::testing::Test {
 protected:
  control::Route mydb_ = App("mydb"), other_ = App("other");
  std::vector<const control::Route*> dedicated_{&mydb_};
  std::vector<const control::Route*> shared_{&mydb_, &other_};
};

TEST_F(RouteChoiceTest, DedicatedAddressTakesAClientThatNamedNothing) {
  auto c = ChooseRoute(dedicated_, "", std::nullopt);
  EXPECT_EQ(c.route, &mydb_);
  EXPECT_TRUE(c.problem.empty());
}

TEST_F(RouteChoiceTest, DedicatedAddressTakesItsOwnNameInAnyCaseAndWithARootDot) {
  EXPECT_EQ(ChooseRoute(dedicated_, "MyDB.Drawbridge.Test.", std::nullopt).route, &mydb_);
}

TEST_F(RouteChoiceTest, DedicatedAddressTakesANameOutsideTheZone) {
  // A client's own DNS name for the address (a CNAME it made, or a name in /etc/hosts).
  EXPECT_EQ(ChooseRoute(dedicated_, "db.example.com", std::nullopt).route, &mydb_);
  EXPECT_EQ(ChooseRoute(dedicated_, "evildrawbridge.test", std::nullopt).route, &mydb_);
}

TEST_F(RouteChoiceTest, DedicatedAddressRefusesAnotherAppsNameOfTheZone) {
  // Stale DNS or a wrong hostaddr must not hand the client a database it did not name.
  auto c = ChooseRoute(dedicated_, "other.drawbridge.test", std::nullopt);
  EXPECT_EQ(c.route, nullptr);
  EXPECT_EQ(c.problem, "the server name \"other.drawbridge.test\" does not belong to this address");
  EXPECT_EQ(ChooseRoute(dedicated_, "a.b.drawbridge.test", std::nullopt).route, nullptr);
}

TEST_F(RouteChoiceTest, SharedAddressPicksBySni) {
  EXPECT_EQ(ChooseRoute(shared_, "other.drawbridge.test", std::nullopt).route, &other_);
  EXPECT_EQ(ChooseRoute(shared_, "MYDB.drawbridge.test", std::nullopt).route, &mydb_);
}

TEST_F(RouteChoiceTest, SharedAddressPicksByAppOption) {
  EXPECT_EQ(ChooseRoute(shared_, "", std::string("other")).route, &other_);
}

TEST_F(RouteChoiceTest, SniAndAppOptionMustAgree) {
  EXPECT_EQ(ChooseRoute(shared_, "mydb.drawbridge.test", std::string("mydb")).route, &mydb_);
  auto c = ChooseRoute(shared_, "mydb.drawbridge.test", std::string("other"));
  EXPECT_EQ(c.route, nullptr);
  EXPECT_EQ(c.problem,
            "the app named in options (\"other\") does not match the server name "
            "\"mydb.drawbridge.test\"");
}

TEST_F(RouteChoiceTest, AnUnknownAppOptionIsRefusedEvenOnADedicatedAddress) {
  auto c = ChooseRoute(dedicated_, "", std::string("nope"));
  EXPECT_EQ(c.route, nullptr);
  EXPECT_EQ(c.problem, "unknown app \"nope\" on this address");
}

TEST_F(RouteChoiceTest, AnAppOptionWinsOverASniOutsideTheCandidates) {
  // SNI names no candidate (the client's own name), the option names one: the option decides.
  EXPECT_EQ(ChooseRoute(shared_, "db.example.com", std::string("other")).route, &other_);
}

TEST_F(RouteChoiceTest, SharedAddressRefusesAClientThatNamedNothingItKnows) {
  for (const char* sni : {"", "db.example.com", "third.drawbridge.test"}) {
    auto c = ChooseRoute(shared_, sni, std::nullopt);
    EXPECT_EQ(c.route, nullptr) << sni;
    EXPECT_EQ(c.problem,
              "this address is shared by apps and the client did not say which one");
  }
}

TEST_F(RouteChoiceTest, ASharedAddressWithOneAppStillRefusesANamelessClient) {
  // The app that left must not hand its nameless clients to the one that stays.
  control::Route alone = App("mydb");
  alone.shared = true;
  std::vector<const control::Route*> one{&alone};
  for (const char* sni : {"", "db.example.com"}) {
    auto c = ChooseRoute(one, sni, std::nullopt);
    EXPECT_EQ(c.route, nullptr) << sni;
    EXPECT_EQ(c.problem, "this address is shared by apps and the client did not say which one");
  }
  EXPECT_EQ(ChooseRoute(one, "mydb.drawbridge.test", std::nullopt).route, &alone);
  EXPECT_EQ(ChooseRoute(one, "", std::string("mydb")).route, &alone);
}

TEST_F(RouteChoiceTest, StaticModeRouteWithoutAHostTakesAnyName) {
  control::Route any;
  any.app = "static";
  std::vector<const control::Route*> one{&any};
  EXPECT_EQ(ChooseRoute(one, "whatever.drawbridge.test", std::nullopt).route, &any);
}

TEST(CheckRevokedTest, NamesTheAddressOrTheAppAndTheLogReason) {
  control::AddressHolders holders(7, {{"mydb", {"127.0.10.2"}}});
  EXPECT_FALSE(CheckRevoked(nullptr, "mydb", "127.0.10.9", 0)) << "static mode: never";
  EXPECT_FALSE(CheckRevoked(&holders, "mydb", "127.0.10.2", 7));
  auto released = CheckRevoked(&holders, "mydb", "127.0.10.3", 7);
  ASSERT_TRUE(released);
  EXPECT_STREQ(released->reason, "address_released");
  EXPECT_EQ(released->message,
            "terminating connection: address 127.0.10.3 was released from app \"mydb\"");
  auto destroyed = CheckRevoked(&holders, "other", "127.0.10.3", 2);
  ASSERT_TRUE(destroyed);
  EXPECT_STREQ(destroyed->reason, "app_destroyed");
  EXPECT_EQ(destroyed->message, "terminating connection: app \"other\" was destroyed");
  EXPECT_FALSE(CheckRevoked(&holders, "other", "127.0.10.3", 8)) << "routed after this view";
}

}  // namespace
}  // namespace drawbridge::net
