#include "net/cancel_registry.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "test_util.h"

namespace drawbridge::net {
namespace {

using testutil::Hex;

CancelTarget Target(std::string address, uint32_t pid, pg::Bytes secret) {
  return CancelTarget{"app", std::move(address), 5432, pg::CancelKey{pid, std::move(secret)}};
}

TEST(CancelRegistryTest, RegisterFindUnregister) {
  CancelRegistry registry;
  CancelTarget target = Target("fdaa::1", 4242, Hex("01 02 03 04"));
  pg::CancelKey issued = registry.Register(target);
  EXPECT_EQ(registry.size(), 1u);

  auto found = registry.Find(issued);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->address, "fdaa::1");
  EXPECT_EQ(found->port, 5432);
  EXPECT_EQ(found->key, target.key);

  registry.Unregister(issued);
  EXPECT_FALSE(registry.Find(issued));
  EXPECT_EQ(registry.size(), 0u);
  registry.Unregister(issued);  // twice is harmless
  EXPECT_EQ(registry.size(), 0u);
}

TEST(CancelRegistryTest, IssuedKeyHasTheServersShapeAndAPositivePid) {
  CancelRegistry registry;
  for (size_t len : {size_t{1}, size_t{4}, size_t{32}, size_t{256}}) {
    SCOPED_TRACE(len);
    for (int i = 0; i < 200; ++i) {
      pg::CancelKey issued = registry.Register(Target("m", 7, pg::Bytes(len, 0x11)));
      EXPECT_EQ(issued.pid & 0x80000000u, 0u) << "pid " << issued.pid;
      EXPECT_NE(issued.pid, 0u);
      EXPECT_EQ(issued.secret.size(), len);
    }
  }
  EXPECT_EQ(registry.size(), 800u);
}

TEST(CancelRegistryTest, WrongSecretFindsNothing) {
  CancelRegistry registry;
  pg::CancelKey issued = registry.Register(Target("m", 7, Hex("0a 0b 0c 0d")));
  for (size_t i = 0; i < issued.secret.size(); ++i) {
    pg::CancelKey wrong = issued;
    wrong.secret[i] ^= 0x01;
    EXPECT_FALSE(registry.Find(wrong)) << "byte " << i;
    registry.Unregister(wrong);  // must not remove the real entry
  }
  pg::CancelKey shorter = issued;
  shorter.secret.pop_back();
  EXPECT_FALSE(registry.Find(shorter));
  pg::CancelKey longer = issued;
  longer.secret.push_back(0);
  EXPECT_FALSE(registry.Find(longer));
  pg::CancelKey other_pid = issued;
  other_pid.pid ^= 1;
  EXPECT_FALSE(registry.Find(other_pid));
  // The server's own key is not a client key.
  EXPECT_FALSE(registry.Find(pg::CancelKey{7, Hex("0a 0b 0c 0d")}));
  EXPECT_TRUE(registry.Find(issued));
  EXPECT_EQ(registry.size(), 1u);
}

TEST(CancelRegistryTest, ManyTargetsEachFindTheirOwn) {
  CancelRegistry registry;
  std::vector<pg::CancelKey> issued;
  for (uint32_t i = 0; i < 500; ++i) {
    issued.push_back(registry.Register(Target("m" + std::to_string(i), i, Hex("01 02 03 04"))));
  }
  for (uint32_t i = 0; i < 500; ++i) {
    auto found = registry.Find(issued[i]);
    ASSERT_TRUE(found) << i;
    EXPECT_EQ(found->address, "m" + std::to_string(i));
    EXPECT_EQ(found->key.pid, i);
  }
}

TEST(CancelRegistryTest, ConcurrentUse) {
  CancelRegistry registry;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&registry, t] {
      for (int i = 0; i < 500; ++i) {
        pg::CancelKey k = registry.Register(Target("m" + std::to_string(t), 1, pg::Bytes(4, 1)));
        auto found = registry.Find(k);
        if (!found || found->address != "m" + std::to_string(t)) ADD_FAILURE() << t << " " << i;
        if (i % 2 == 0) registry.Unregister(k);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(registry.size(), 4u * 250u);
}

TEST(CancelRegistryTest, RegistriesAreIndependent) {
  // Each server has its own: a key issued by one means nothing to another.
  CancelRegistry a, b;
  pg::CancelKey real{7, pg::Bytes(4, 1)};
  pg::CancelKey issued = a.Register(CancelTarget{"app", "10.0.0.1", 5432, real});
  EXPECT_TRUE(a.Find(issued).has_value());
  EXPECT_FALSE(b.Find(issued).has_value());
}

std::shared_ptr<const fleet::CancelKeys> FleetKeys(int node, uint8_t fill = 1) {
  std::array<uint8_t, 32> key{};
  key.fill(fill);
  return std::make_shared<const fleet::CancelKeys>(node, key);
}

TEST(CancelRegistryTest, InAFleetIssuedKeysNameThisNodeAndKeepTheServersLength) {
  CancelRegistry registry;
  auto keys = FleetKeys(42);
  registry.UseFleetKeys(keys);
  for (size_t len : {size_t{4}, size_t{32}, size_t{256}}) {
    for (int i = 0; i < 100; ++i) {
      pg::CancelKey issued = registry.Register(Target("m", 7, pg::Bytes(len, 0x11)));
      EXPECT_EQ(issued.secret.size(), len);
      EXPECT_EQ(issued.pid & 0x80000000u, 0u);
      EXPECT_EQ(fleet::CancelKeys::NodeOfPid(issued.pid), 42);
      EXPECT_EQ(keys->Owner(issued), 42);
      EXPECT_TRUE(registry.Find(issued));
    }
  }
}

TEST(CancelRegistryTest, InAFleetOnlyTheWholeKeyFindsTheSession) {
  CancelRegistry registry;
  auto keys = FleetKeys(3);
  registry.UseFleetKeys(keys);
  pg::CancelKey issued = registry.Register(Target("m", 7, pg::Bytes(4, 9)));
  // A key of this node with a right MAC that the registry never issued: nothing.
  EXPECT_FALSE(registry.Find(keys->Issue(4)));
  pg::CancelKey same_pid = keys->Issue(4);
  while (same_pid.secret == issued.secret) same_pid = keys->Issue(4);
  same_pid.pid = issued.pid;
  EXPECT_FALSE(registry.Find(same_pid));
  for (size_t i = 0; i < issued.secret.size(); ++i) {
    pg::CancelKey wrong = issued;
    wrong.secret[i] ^= 0x40;
    EXPECT_FALSE(registry.Find(wrong)) << i;
  }
  EXPECT_TRUE(registry.Find(issued));
}

TEST(CancelRegistryTest, InAFleetAnEndedSessionsKeyFindsNothing) {
  CancelRegistry registry;
  auto keys = FleetKeys(3);
  registry.UseFleetKeys(keys);
  pg::CancelKey issued = registry.Register(Target("m", 7, pg::Bytes(32, 9)));
  registry.Unregister(issued);
  // Still a well-formed key of this node (its MAC checks out), but its session is gone.
  EXPECT_EQ(keys->Owner(issued), 3);
  EXPECT_FALSE(registry.Find(issued));
}

}  // namespace
}  // namespace drawbridge::net
