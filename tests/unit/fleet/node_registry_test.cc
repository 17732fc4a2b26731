// NodeRegistry: the record format, the heartbeat (prompt, touched, stoppable at once) and List()
// with this node's entry always live.
#include "fleet/node_registry.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "fleet/fleet_test_util.h"

namespace drawbridge::fleet {
namespace {

using namespace std::chrono_literals;
using testing::DownStore;
using testing::TempDir;

NodeInfo Sample() {
  NodeInfo n;
  n.name = "edge-a";
  n.id = 3;
  n.host = "0123456789abcdef";
  n.pid = 4242;
  n.peer = "127.0.0.1:7001";
  n.started = 1700000000;
  n.last_seen = 1700000100;
  n.applied_revision = 57;
  n.store_healthy = false;
  n.store_error = "etcd://127.0.0.1:2379: unreachable";
  n.listening = {5432, 6543};
  n.port_errors = {{15432, "address in use"}};
  return n;
}

// Polls `done` every 10 ms for at most `limit`.
template <typename F>
bool Eventually(F done, std::chrono::milliseconds limit = 2000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

std::optional<NodeInfo> Stored(store::Store* store, const std::string& name) {
  auto kv = store->Get(kNodePrefix + name);
  if (!kv.ok() || !kv->has_value()) return std::nullopt;
  auto node = NodeFromJson(nlohmann::json::parse((*kv)->value, nullptr, false));
  if (!node.ok()) return std::nullopt;
  return *node;
}

TEST(NodeInfoTest, JsonRoundTrip) {
  NodeInfo n = Sample();
  auto back = NodeFromJson(nlohmann::json::parse(ToJson(n).dump()));
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->name, n.name);
  EXPECT_EQ(back->id, n.id);
  EXPECT_EQ(back->host, n.host);
  EXPECT_EQ(back->pid, n.pid);
  EXPECT_EQ(back->peer, n.peer);
  EXPECT_EQ(back->started, n.started);
  EXPECT_EQ(back->last_seen, n.last_seen);
  EXPECT_EQ(back->applied_revision, n.applied_revision);
  EXPECT_EQ(back->store_healthy, n.store_healthy);
  EXPECT_EQ(back->store_error, n.store_error);
  EXPECT_EQ(back->listening, n.listening);
  EXPECT_EQ(back->port_errors, n.port_errors);
  EXPECT_EQ(ToJson(n)["port_errors"]["15432"], "address in use");
}

TEST(NodeInfoTest, RejectsWhatIsNotANodeRecord) {
  using nlohmann::json;
  EXPECT_TRUE(NodeFromJson(json{{"name", "edge-a"}}).ok()) << "absent fields keep defaults";
  for (const json& j : {json::array(), json("edge"), json{{"id", 1}}, json{{"name", ""}},
                        json{{"name", "a"}, {"id", "1"}}, json{{"name", "a"}, {"id", 300}},
                        json{{"name", "a"}, {"listening", {5432, "x"}}},
                        json{{"name", "a"}, {"listening", {70000}}},
                        json{{"name", "a"}, {"port_errors", {{"abc", "x"}}}},
                        json{{"name", "a"}, {"port_errors", {{"5432", 1}}}},
                        json{{"name", "a"}, {"store_healthy", "yes"}}}) {
    auto node = NodeFromJson(j);
    EXPECT_FALSE(node.ok()) << j.dump();
    EXPECT_EQ(node.code(), base::StatusCode::kInvalidArgument) << j.dump();
  }
}

TEST(HostIdTest, MachineIdFirstLineElseHostName) {
  TempDir dir;
  std::ofstream(dir / "machine-id") << "4f1c0ffee\nsecond line\n";
  EXPECT_EQ(HostId(dir / "machine-id"), "4f1c0ffee");
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(HostId(dir / "absent"), host);
  std::ofstream(dir / "empty") << "\n";
  EXPECT_EQ(HostId(dir / "empty"), host);
}

TEST(NodeRegistryTest, WritesAtStartThenEveryInterval) {
  auto store = store::NewMemoryStore();
  std::atomic<int> revision{1};
  NodeRegistry registry(store.get(), [&] {
    NodeInfo n = Sample();
    n.applied_revision = revision.load();
    return n;
  }, 50ms);
  registry.Start();
  ASSERT_TRUE(Eventually([&] { return Stored(store.get(), "edge-a").has_value(); }));
  revision = 2;
  EXPECT_TRUE(Eventually([&] { return Stored(store.get(), "edge-a")->applied_revision == 2; }));
  auto stored = Stored(store.get(), "edge-a");
  EXPECT_NEAR(static_cast<double>(stored->last_seen), static_cast<double>(std::time(nullptr)), 2)
      << "the registry sets last_seen";
  EXPECT_EQ(stored->listening, (std::vector<int>{5432, 6543}));
  registry.Stop();
}

TEST(NodeRegistryTest, TouchWritesSoonAndStopIsPrompt) {
  auto store = store::NewMemoryStore();
  std::atomic<int> port{5432};
  NodeRegistry registry(store.get(), [&] {
    NodeInfo n = Sample();
    n.listening = {port.load()};
    return n;
  }, 60s);
  registry.Start();
  ASSERT_TRUE(Eventually([&] { return Stored(store.get(), "edge-a").has_value(); }));
  port = 7777;
  registry.Touch();
  EXPECT_TRUE(Eventually([&] {
    return Stored(store.get(), "edge-a")->listening == std::vector<int>{7777};
  }, 1000ms)) << "a touch does not wait for the 60 s beat";
  auto before = std::chrono::steady_clock::now();
  registry.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1s);
  // Stop twice, and a destructor after Stop, are fine.
  registry.Stop();
}

TEST(NodeRegistryTest, TouchesInABurstBecomeFewWrites) {
  auto store = store::NewMemoryStore();
  NodeRegistry registry(store.get(), [] { return Sample(); }, 60s);
  registry.Start();
  ASSERT_TRUE(Eventually([&] { return Stored(store.get(), "edge-a").has_value(); }));
  int64_t start = *store->Revision();
  for (int i = 0; i < 100; ++i) registry.Touch();
  std::this_thread::sleep_for(300ms);
  int64_t writes = *store->Revision() - start;
  EXPECT_GE(writes, 1);
  EXPECT_LE(writes, 4);
}

TEST(NodeRegistryTest, ListShowsEveryNodeWithThisOneLive) {
  auto store = store::NewMemoryStore();
  NodeInfo other = Sample();
  other.name = "edge-b";
  other.id = 4;
  NodeInfo stale = Sample();
  stale.applied_revision = 1;
  ASSERT_TRUE(store
                  ->Commit({{},
                            {store::Op::Put("nodes/edge-b", ToJson(other).dump()),
                             store::Op::Put("nodes/edge-a", ToJson(stale).dump()),
                             store::Op::Put("nodes/broken", "{not json")}})
                  .ok());
  NodeRegistry registry(store.get(), [] {
    NodeInfo n = Sample();
    n.applied_revision = 99;
    return n;
  });
  auto nodes = registry.List();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].name, "edge-a");
  EXPECT_EQ(nodes[0].applied_revision, 99) << "this node's entry is live, not the stored one";
  EXPECT_NEAR(static_cast<double>(nodes[0].last_seen), static_cast<double>(std::time(nullptr)), 2);
  EXPECT_EQ(nodes[1].name, "edge-b");
  EXPECT_EQ(nodes[1].id, 4);
}

TEST(NodeRegistryTest, ListWhileTheStoreIsDownShowsThisNode) {
  DownStore down;
  NodeRegistry registry(&down, [] { return Sample(); }, 20ms);
  registry.Start();  // writes fail; the heartbeat keeps going and stops promptly
  std::this_thread::sleep_for(100ms);
  auto nodes = registry.List();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].name, "edge-a");
  EXPECT_FALSE(nodes[0].store_healthy);
  registry.Stop();
}

}  // namespace
}  // namespace drawbridge::fleet
