#include "control/route_table.h"

#include <gtest/gtest.h>

#include <chrono>

#include "config/fly_toml.h"

namespace drawbridge::control {
namespace {

RouteTable::Entry MakeEntry(std::string local_ip, std::string app, int port) {
  Route r;
  r.app = std::move(app);
  r.public_port = port;
  r.internal_port = 5432;
  r.pg_tls = true;
  return {std::move(local_ip), std::move(r)};
}

TEST(RouteTableTest, SpecificLocalAddressWinsOverAnyAddress) {
  // Both orders: the winner must not depend on where the entries sit in the table.
  for (bool any_first : {true, false}) {
    SCOPED_TRACE(any_first);
    std::vector<RouteTable::Entry> entries;
    if (any_first) entries.push_back(MakeEntry("", "shared", 5432));
    entries.push_back(MakeEntry("203.0.113.7", "dedicated", 5432));
    entries.push_back(MakeEntry("2001:db8::7", "dedicated6", 5432));
    if (!any_first) entries.push_back(MakeEntry("", "shared", 5432));
    RouteTable table(3, std::move(entries));

    const Route* r = table.Find("203.0.113.7", 5432);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->app, "dedicated");
    r = table.Find("2001:db8::7", 5432);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->app, "dedicated6");
    r = table.Find("198.51.100.1", 5432);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->app, "shared");
    EXPECT_EQ(table.Find("203.0.113.7", 5433), nullptr);
    EXPECT_EQ(table.version(), 3u);
  }
}

TEST(RouteTableTest, NoAnyAddressRouteMeansNoRoute) {
  RouteTable table(1, {MakeEntry("203.0.113.7", "dedicated", 5432)});
  EXPECT_EQ(table.Find("203.0.113.8", 5432), nullptr);
  EXPECT_NE(table.Find("203.0.113.7", 5432), nullptr);
}

TEST(RouteTableTest, EmptyTable) {
  RouteTable table(0, {});
  EXPECT_EQ(table.Find("", 5432), nullptr);
  EXPECT_TRUE(table.Ports().empty());
}

TEST(RouteTableTest, PortsAreSortedAndUnique) {
  RouteTable table(
      1, {MakeEntry("", "a", 5433), MakeEntry("10.0.0.1", "b", 443), MakeEntry("", "c", 5432),
          MakeEntry("10.0.0.2", "d", 5433), MakeEntry("", "e", 443)});
  EXPECT_EQ(table.Ports(), (std::vector<int>{443, 5432, 5433}));
  ASSERT_EQ(table.entries().size(), 5u);
  EXPECT_EQ(table.entries()[1].local_ip, "10.0.0.1");
  EXPECT_EQ(table.entries()[1].route.app, "b");
}

TEST(RouteTableTest, RoutesForAppFromFlyToml) {
  auto parsed = config::ParseFlyToml(R"(app = "my-pg"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
[[services]]
  internal_port = 5433
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5433
[[services]]
  internal_port = 8080
  [[services.ports]]
    handlers = ["tls", "proxy_proto"]
    start_port = 9000
    end_port = 9002
    proxy_proto_options = { version = "v2" }
    tls_options = { alpn = ["h2"] }
  [[services.ports]]
    handlers = ["proxy_proto"]
    port = 7000
)",
                                     "fly.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  std::vector<Machine> machines = {{"m1", "fdaa::1"}, {"m2", "fdaa::2"}};
  RouteTable table(7, RoutesForApp(parsed->config, machines));
  EXPECT_EQ(table.Ports(), (std::vector<int>{5432, 5433, 7000, 9000, 9001, 9002}));

  const Route* pg = table.Find("192.0.2.1", 5433);
  ASSERT_NE(pg, nullptr);
  EXPECT_EQ(pg->app, "my-pg");
  EXPECT_EQ(pg->internal_port, 5433);
  EXPECT_TRUE(pg->pg_tls);
  EXPECT_FALSE(pg->tls);
  EXPECT_EQ(pg->proxy_proto, 0);
  EXPECT_EQ(pg->HandlerName(), "pg_tls");
  ASSERT_EQ(pg->machines.size(), 2u);
  EXPECT_EQ(pg->machines[1].address, "fdaa::2");

  const Route* tls = table.Find("192.0.2.1", 9001);
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(tls->internal_port, 8080);
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->proxy_proto, 2);
  EXPECT_EQ(tls->HandlerName(), "tls+proxy_proto");
  EXPECT_EQ(tls->tls_options.alpn, std::vector<std::string>{"h2"});

  const Route* raw = table.Find("192.0.2.1", 7000);
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(raw->proxy_proto, 1) << "PROXY v1 is the default";
  EXPECT_EQ(raw->HandlerName(), "tcp+proxy_proto");
}

// Health checks, limits, role target and the app's allowlist reach every route of a service;
// a service without tcp_checks gets Fly's defaults (15 s / 2 s / 1 s), never none.
TEST(RouteTableTest, RoutesCarryChecksLimitsTargetAndAllowedSources) {
  auto parsed = config::ParseFlyToml(R"(app = "my-pg"
[drawbridge]
  allowed_sources = ["10.1.2.3/8", "::1"]
[[services]]
  internal_port = 5432
  drawbridge.target_session_attrs = "read-write"
  concurrency = { type = "connections", soft_limit = 3, hard_limit = 5 }
  [[services.tcp_checks]]
    interval = "1s"
    timeout = "500ms"
    grace_period = "2s"
  [[services.tcp_checks]]
    interval = 3000
  [[services.ports]]
    handlers = ["pg_tls"]
    start_port = 5432
    end_port = 5433
[[services]]
  internal_port = 5432
  concurrency = { type = "connections", hard_limit = 7 }
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 6432
)",
                                     "fly.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  RouteTable table(1, RoutesForApp(parsed->config, {{"m1", "127.0.0.1"}}));
  using std::chrono::milliseconds;
  for (int port : {5432, 5433}) {
    SCOPED_TRACE(port);
    const Route* r = table.Find("", port);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->target, TargetSessionAttrs::kReadWrite);
    EXPECT_EQ(r->soft_limit, 3);
    EXPECT_EQ(r->hard_limit, 5);
    ASSERT_EQ(r->checks.size(), 2u);
    EXPECT_EQ(r->checks[0], (TcpCheck{milliseconds(1000), milliseconds(500), milliseconds(2000)}));
    EXPECT_EQ(r->checks[1], (TcpCheck{milliseconds(3000), milliseconds(2000), milliseconds(1000)}));
    ASSERT_EQ(r->allowed_sources.size(), 2u);
    EXPECT_EQ(r->allowed_sources[0].text, "10.0.0.0/8");
    EXPECT_TRUE(base::CidrContains(r->allowed_sources[0], "10.9.9.9"));
    EXPECT_EQ(r->allowed_sources[1].text, "::1/128");
  }
  const Route* other = table.Find("", 6432);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->target, TargetSessionAttrs::kAny) << "unset: any";
  EXPECT_EQ(other->soft_limit, 0) << "unset: no limit";
  EXPECT_EQ(other->hard_limit, 7);
  ASSERT_EQ(other->checks.size(), 1u) << "Fly's defaults";
  EXPECT_EQ(other->checks[0].interval, milliseconds(15000));
  EXPECT_EQ(other->checks[0].timeout, milliseconds(2000));
  EXPECT_EQ(other->checks[0].grace_period, milliseconds(1000));
  EXPECT_EQ(other->allowed_sources.size(), 2u) << "the allowlist is the app's";

  // Without a [drawbridge] section: every source, no limits.
  AppConfig bare = parsed->config;
  bare.allowed_sources.clear();
  bare.services[0].concurrency.reset();
  RouteTable open(2, RoutesForApp(bare, {}));
  EXPECT_TRUE(open.Find("", 5432)->allowed_sources.empty());
  EXPECT_EQ(open.Find("", 5432)->hard_limit, 0);
}

// A stored allowlist entry that no longer parses narrows, never widens: it becomes a network
// that holds no client ("::/128"), so an app whose only entry is broken admits nobody.
TEST(RouteTableTest, AnUnparsableAllowedSourceFailsClosed) {
  AppConfig config;
  config.app = "a";
  config.allowed_sources = {"not-a-network"};
  Service svc;
  svc.internal_port = 5432;
  ServicePort port;
  port.port = 5432;
  port.handlers = {"pg_tls"};
  svc.ports = {port};
  config.services = {svc};
  RouteTable table(1, RoutesForApp(config, {}));
  const Route* r = table.Find("", 5432);
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->allowed_sources.size(), 1u);
  for (const char* ip : {"127.0.0.1", "10.0.0.1", "::1", "2001:db8::1"}) {
    EXPECT_FALSE(base::CidrContains(r->allowed_sources[0], ip)) << ip;
  }
}

TEST(TargetSessionAttrsTest, Names) {
  EXPECT_STREQ(TargetSessionAttrsName(TargetSessionAttrs::kAny), "any");
  EXPECT_STREQ(TargetSessionAttrsName(TargetSessionAttrs::kReadWrite), "read-write");
  EXPECT_STREQ(TargetSessionAttrsName(TargetSessionAttrs::kReadOnly), "read-only");
  EXPECT_STREQ(TargetSessionAttrsName(TargetSessionAttrs::kPrimary), "primary");
  EXPECT_STREQ(TargetSessionAttrsName(TargetSessionAttrs::kStandby), "standby");
  EXPECT_STREQ(TargetSessionAttrsName(TargetSessionAttrs::kPreferStandby), "prefer-standby");
}

TEST(RouteTableHolderTest, SwapPublishesAndOldSnapshotsLive) {
  RouteTableHolder holder;
  EXPECT_EQ(holder.Current(), nullptr);
  auto v1 = std::make_shared<const RouteTable>(
      1, std::vector<RouteTable::Entry>{MakeEntry("", "a", 5432)});
  holder.Swap(v1);
  std::shared_ptr<const RouteTable> kept = holder.Current();
  holder.Swap(std::make_shared<const RouteTable>(2, std::vector<RouteTable::Entry>{}));
  EXPECT_EQ(holder.Current()->version(), 2u);
  EXPECT_EQ(kept->version(), 1u);
  EXPECT_NE(kept->Find("", 5432), nullptr) << "a connection keeps the table it started with";
}

TEST(AddressHoldersTest, SaysReleasedOrDestroyedUnlessTheTableIsNewer) {
  AddressHolders holders(10, {{"mydb", {"127.0.10.2", "fd00::1"}}, {"bare", {}}});
  using V = AddressHolders::Verdict;
  EXPECT_EQ(holders.Check("mydb", "127.0.10.2", 9), V::kHeld);
  EXPECT_EQ(holders.Check("mydb", "fd00::1", 10), V::kHeld);
  EXPECT_EQ(holders.Check("mydb", "127.0.10.3", 10), V::kAddressReleased);
  EXPECT_EQ(holders.Check("bare", "127.0.10.2", 3), V::kAddressReleased);
  EXPECT_EQ(holders.Check("gone", "127.0.10.2", 3), V::kAppDestroyed);
  // A connection routed by a table newer than this view: the table knows better (the address
  // may have come back to the app since this view was read).
  EXPECT_EQ(holders.Check("mydb", "127.0.10.3", 11), V::kHeld);
  EXPECT_EQ(holders.Check("gone", "127.0.10.2", 11), V::kHeld);
}

TEST(ServicePortTest, PublicPorts) {
  ServicePort p;
  EXPECT_TRUE(p.PublicPorts().empty());
  p.port = 5432;
  EXPECT_EQ(p.PublicPorts(), std::vector<int>{5432});
  ServicePort range;
  range.start_port = 1;
  range.end_port = 3;
  EXPECT_EQ(range.PublicPorts(), (std::vector<int>{1, 2, 3}));
  range.handlers = {"tls", "http"};
  EXPECT_TRUE(range.HasHandler("http"));
  EXPECT_FALSE(range.HasHandler("pg_tls"));
}

}  // namespace
}  // namespace drawbridge::control
