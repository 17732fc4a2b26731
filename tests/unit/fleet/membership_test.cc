// JoinFleet (the fleet check) and ClaimNodeId (ids 1..255, one per node name, remembered in
// the data dir) against the in-memory store.
#include "fleet/membership.h"

#include <sys/stat.h>

#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "fleet/fleet_test_util.h"

namespace drawbridge::fleet {
namespace {

using testing::DownStore;
using testing::TempDir;

FleetKeys Keys(char fill, const std::string& source = "/etc/drawbridge/fleet.secret") {
  auto keys = DeriveFleetKeys(std::string(32, fill));
  EXPECT_TRUE(keys.ok());
  keys->source = source;
  return *keys;
}

std::string Hex(const std::array<uint8_t, 32>& key) {
  std::string out;
  char buf[3];
  for (uint8_t b : key) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

TEST(JoinFleetTest, FirstNodeWritesTheCheckAndLaterOnesMatchIt) {
  auto store = store::NewMemoryStore();
  FleetKeys keys = Keys('a');
  ASSERT_TRUE(JoinFleet(store.get(), keys).ok());
  auto check = store->Get(kFleetCheckKey);
  ASSERT_TRUE(check.ok() && check->has_value());
  std::string value = (*check)->value;
  // Neither the subkeys nor the secret are written.
  for (const auto& key : {keys.check, keys.seal, keys.cancel, keys.peer}) {
    EXPECT_EQ(value.find(Hex(key)), std::string::npos);
  }
  EXPECT_EQ(value.find(std::string(32, 'a')), std::string::npos);
  // The same secret joins again (another node, or a restart) without writing.
  int64_t revision = *store->Revision();
  EXPECT_TRUE(JoinFleet(store.get(), Keys('a', "/other/path")).ok());
  EXPECT_EQ(*store->Revision(), revision);
}

TEST(JoinFleetTest, AnotherSecretIsRefused) {
  auto store = store::NewMemoryStore();
  ASSERT_TRUE(JoinFleet(store.get(), Keys('a')).ok());
  base::Status s = JoinFleet(store.get(), Keys('b', "/tmp/wrong.secret"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), base::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("/tmp/wrong.secret"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("refusing to join"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("memory"), std::string::npos) << "names the store: " << s.message();
}

TEST(JoinFleetTest, NodesStartingAtOnceAgree) {
  auto store = store::NewMemoryStore();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (JoinFleet(store.get(), Keys('a')).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(*store->Revision(), 1) << "one write of the check";
}

TEST(JoinFleetTest, AStoreThatCannotBeReadIsAnError) {
  DownStore store;
  base::Status s = JoinFleet(&store, Keys('a'));
  EXPECT_EQ(s.code(), base::StatusCode::kUnavailable);
}

TEST(ClaimNodeIdTest, IdsAreUniqueAndStablePerName) {
  auto store = store::NewMemoryStore();
  TempDir a, b, c;
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-a", a.path()), 1);
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-b", b.path()), 2);
  // A restart with the same data dir, and the same name with a fresh data dir.
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-a", a.path()), 1);
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-b", c.path()), 2);
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-c", c.path()), 3) << "node.json of edge-b is ignored";
  auto owner = store->Get("node-ids/2");
  ASSERT_TRUE(owner.ok() && owner->has_value());
  EXPECT_NE((*owner)->value.find("edge-b"), std::string::npos);
}

TEST(ClaimNodeIdTest, RememberedInTheDataDir) {
  auto store = store::NewMemoryStore();
  TempDir dir;
  ASSERT_EQ(*ClaimNodeId(store.get(), "edge-a", dir.path()), 1);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "node.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(dir / "node.json");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("\"id\":1"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("\"node\":\"edge-a\""), std::string::npos) << text.str();
}

TEST(ClaimNodeIdTest, StoreDownUsesTheRememberedId) {
  auto store = store::NewMemoryStore();
  TempDir dir;
  ASSERT_TRUE(ClaimNodeId(store.get(), "edge-x", dir.path()).ok());
  ASSERT_EQ(*ClaimNodeId(store.get(), "edge-a", dir.path()), 2);
  DownStore down;
  auto id = ClaimNodeId(&down, "edge-a", dir.path());
  ASSERT_TRUE(id.ok()) << id.message();
  EXPECT_EQ(*id, 2);
  // Without a remembered id there is nothing to fall back on.
  TempDir fresh;
  auto none = ClaimNodeId(&down, "edge-a", fresh.path());
  EXPECT_EQ(none.code(), base::StatusCode::kUnavailable) << none.message();
  // Nor for another name than the remembered one.
  EXPECT_EQ(ClaimNodeId(&down, "edge-b", dir.path()).code(), base::StatusCode::kUnavailable);
}

TEST(ClaimNodeIdTest, ARememberedIdIsReclaimedInAnEmptyStore) {
  TempDir dir;
  {
    auto old_store = store::NewMemoryStore();
    ASSERT_TRUE(ClaimNodeId(old_store.get(), "edge-x", TempDir().path()).ok());
    ASSERT_EQ(*ClaimNodeId(old_store.get(), "edge-a", dir.path()), 2);
  }
  auto store = store::NewMemoryStore();  // etcd wiped
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-a", dir.path()), 2);
  EXPECT_TRUE((*store->Get("node-ids/2")).has_value());
}

TEST(ClaimNodeIdTest, ARememberedIdNowOwnedByAnotherNodeIsGivenUp) {
  TempDir dir;
  {
    auto old_store = store::NewMemoryStore();
    ASSERT_EQ(*ClaimNodeId(old_store.get(), "edge-a", dir.path()), 1);
  }
  auto store = store::NewMemoryStore();
  ASSERT_EQ(*ClaimNodeId(store.get(), "edge-b", TempDir().path()), 1);
  EXPECT_EQ(*ClaimNodeId(store.get(), "edge-a", dir.path()), 2);
  DownStore down;
  EXPECT_EQ(*ClaimNodeId(&down, "edge-a", dir.path()), 2) << "node.json was updated";
}

TEST(ClaimNodeIdTest, ConcurrentClaimsNeverShareAnId) {
  auto store = store::NewMemoryStore();
  constexpr int kNodes = 24;
  std::vector<TempDir> dirs(kNodes);
  std::vector<int> ids(kNodes, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; ++i) {
    threads.emplace_back([&, i] {
      auto id = ClaimNodeId(store.get(), "edge-" + std::to_string(i), dirs[i].path());
      ids[i] = id.ok() ? *id : -1;
    });
  }
  for (auto& t : threads) t.join();
  std::set<int> distinct(ids.begin(), ids.end());
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kNodes));
  EXPECT_EQ(*distinct.begin(), 1);
  EXPECT_EQ(*distinct.rbegin(), kNodes);
}

TEST(ClaimNodeIdTest, AllIdsTaken) {
  auto store = store::NewMemoryStore();
  store::Txn txn;
  for (int i = 1; i <= kMaxNodeId; ++i) {
    txn.ops.push_back(store::Op::Put("node-ids/" + std::to_string(i),
                                     "{\"node\":\"n" + std::to_string(i) + "\"}"));
  }
  ASSERT_TRUE(store->Commit(txn).ok());
  TempDir dir;
  auto id = ClaimNodeId(store.get(), "edge-late", dir.path());
  EXPECT_EQ(id.code(), base::StatusCode::kConflict) << id.message();
  EXPECT_EQ(*ClaimNodeId(store.get(), "n200", dir.path()), 200);
}

}  // namespace
}  // namespace drawbridge::fleet
