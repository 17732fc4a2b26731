// ShareCa: one CA for the fleet however many nodes start at once, copied into every node's CA
// directory, sealed in the store, and the local copy used while the store is down.
#include "fleet/shared_ca.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "fleet/fleet_test_util.h"
#include "store/sealed_store.h"
#include "tls/ca.h"

namespace drawbridge::fleet {
namespace {

using testing::BorrowedStore;
using testing::DownStore;
using testing::TempDir;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ShareCaTest, FirstNodeCreatesItAndTheNextOneCopiesIt) {
  auto store = store::NewMemoryStore();
  TempDir a, b;
  ASSERT_TRUE(ShareCa(store.get(), a / "ca", "Drawbridge fleet CA").ok());
  std::string cert = Read(a / "ca/ca.crt"), key = Read(a / "ca/ca.key");
  ASSERT_NE(cert.find("BEGIN CERTIFICATE"), std::string::npos);
  ASSERT_NE(key.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ((*store->Get(kCaCertKey))->value, cert);
  EXPECT_EQ((*store->Get(kCaKeyKey))->value, key);
  struct stat st {};
  ASSERT_EQ(::stat((a / "ca/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ASSERT_TRUE(ShareCa(store.get(), b / "ca", "Drawbridge fleet CA").ok());
  EXPECT_EQ(Read(b / "ca/ca.crt"), cert);
  EXPECT_EQ(Read(b / "ca/ca.key"), key);
  ASSERT_EQ(::stat((b / "ca/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // What the rest of the daemon uses finds the files as they are.
  auto files = tls::EnsureCa(b / "ca", "ignored");
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(Read(files->cert_path), cert);
  // No temporary directories left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(a / "ca")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2);
}

TEST(ShareCaTest, NodesStartingAtOnceEndWithOneCa) {
  auto store = store::NewMemoryStore();
  constexpr int kNodes = 6;
  std::vector<TempDir> dirs(kNodes);
  std::vector<std::string> errors(kNodes);
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; ++i) {
    threads.emplace_back([&, i] {
      base::Status s = ShareCa(store.get(), dirs[i] / "ca", "Drawbridge fleet CA");
      errors[i] = s.ok() ? "" : s.message();
    });
  }
  for (auto& t : threads) t.join();
  std::string cert = Read(dirs[0] / "ca/ca.crt");
  ASSERT_FALSE(cert.empty());
  for (int i = 0; i < kNodes; ++i) {
    EXPECT_EQ(errors[i], "") << i;
    EXPECT_EQ(Read(dirs[i] / "ca/ca.crt"), cert) << i;
    EXPECT_EQ(Read(dirs[i] / "ca/ca.key"), Read(dirs[0] / "ca/ca.key")) << i;
  }
  EXPECT_EQ((*store->Get(kCaCertKey))->value, cert);
  EXPECT_EQ(*store->Revision(), 1) << "exactly one CA was written";
}

TEST(ShareCaTest, TheKeyIsSealedInTheStore) {
  auto inner = store::NewMemoryStore();
  std::array<uint8_t, 32> key;
  key.fill(7);
  auto sealed = store::NewSealedStore(std::make_unique<BorrowedStore>(inner.get()), key,
                                      {"certs/", "ca/"});
  TempDir dir;
  ASSERT_TRUE(ShareCa(sealed.get(), dir / "ca", "Drawbridge fleet CA").ok());
  std::string raw = (*inner->Get(kCaKeyKey))->value;
  EXPECT_EQ(raw.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(raw.rfind("sealed:v1:", 0), 0u);
  // Another node with the fleet's key reads it back.
  TempDir other;
  ASSERT_TRUE(ShareCa(sealed.get(), other / "ca", "Drawbridge fleet CA").ok());
  EXPECT_EQ(Read(other / "ca/ca.key"), Read(dir / "ca/ca.key"));
}

TEST(ShareCaTest, ACaAlreadyInTheDirectoryBecomesTheFleets) {
  auto store = store::NewMemoryStore();
  TempDir dir;
  std::filesystem::create_directories(dir / "ca");
  ASSERT_TRUE(tls::EnsureCa(dir / "ca", "Drawbridge alone").ok());
  std::string cert = Read(dir / "ca/ca.crt");
  ASSERT_TRUE(ShareCa(store.get(), dir / "ca", "Drawbridge fleet CA").ok());
  EXPECT_EQ(Read(dir / "ca/ca.crt"), cert);
  EXPECT_EQ((*store->Get(kCaCertKey))->value, cert);
}

TEST(ShareCaTest, ALocalCaIsReplacedByTheFleetsOnce) {
  auto store = store::NewMemoryStore();
  TempDir first, second;
  ASSERT_TRUE(ShareCa(store.get(), first / "ca", "Drawbridge fleet CA").ok());
  std::filesystem::create_directories(second / "ca");
  ASSERT_TRUE(tls::EnsureCa(second / "ca", "Drawbridge alone").ok());
  ASSERT_NE(Read(second / "ca/ca.crt"), Read(first / "ca/ca.crt"));
  ASSERT_TRUE(ShareCa(store.get(), second / "ca", "Drawbridge fleet CA").ok());
  EXPECT_EQ(Read(second / "ca/ca.crt"), Read(first / "ca/ca.crt"));
  EXPECT_EQ(Read(second / "ca/ca.key"), Read(first / "ca/ca.key"));
}

TEST(ShareCaTest, StoreDownUsesTheLocalCopy) {
  auto store = store::NewMemoryStore();
  TempDir dir;
  ASSERT_TRUE(ShareCa(store.get(), dir / "ca", "Drawbridge fleet CA").ok());
  std::string cert = Read(dir / "ca/ca.crt");
  DownStore down;
  EXPECT_TRUE(ShareCa(&down, dir / "ca", "Drawbridge fleet CA").ok());
  EXPECT_EQ(Read(dir / "ca/ca.crt"), cert);
  TempDir fresh;
  base::Status s = ShareCa(&down, fresh / "ca", "Drawbridge fleet CA");
  EXPECT_EQ(s.code(), base::StatusCode::kUnavailable) << s.message();
}

TEST(ShareCaTest, AKeyThatDoesNotOpenIsAnError) {
  auto inner = store::NewMemoryStore();
  std::array<uint8_t, 32> key;
  key.fill(7);
  auto sealed = store::NewSealedStore(std::make_unique<BorrowedStore>(inner.get()), key,
                                      {"certs/", "ca/"});
  TempDir dir, other;
  ASSERT_TRUE(ShareCa(sealed.get(), dir / "ca", "Drawbridge fleet CA").ok());
  key.fill(8);
  auto wrong = store::NewSealedStore(std::make_unique<BorrowedStore>(inner.get()), key,
                                     {"certs/", "ca/"});
  base::Status s = ShareCa(wrong.get(), other / "ca", "Drawbridge fleet CA");
  EXPECT_EQ(s.code(), base::StatusCode::kInternal);
  EXPECT_NE(s.message().find("cannot be decrypted"), std::string::npos) << s.message();
  EXPECT_FALSE(std::filesystem::exists(other / "ca/ca.key"));
}

}  // namespace
}  // namespace drawbridge::fleet
