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
              "this address is shared by several apps and the client did not say which one");
  }
}

TEST_F(RouteChoiceTest, StaticModeRouteWithoutAHostTakesAnyName) {
  control::Route any;
  any.app = "static";
  std::vector<const control::Route*> one{&any};
  EXPECT_EQ(ChooseRoute(one, "whatever.drawbridge.test", std::nullopt).route, &any);
}

}  // namespace
}  // namespace drawbridge::net
