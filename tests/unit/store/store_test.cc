// The Store contract, run against both implementations, plus SQLite durability and
// cross-process (here: cross-connection) compare-and-set.
#include "store/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <sqlite3.h>

namespace drawbridge::store {
namespace {

std::string TempDir() {
  auto dir = std::filesystem::temp_directory_path() /
             ("drawbridge-store-test-" + std::to_string(::getpid()) + "-" +
              std::to_string(std::rand()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      dir_ = TempDir();
      auto s = OpenSqliteStore(dir_ + "/state.db");
      ASSERT_TRUE(s.ok()) << s.message();
      store_ = std::move(*s);
    } else {
      store_ = NewMemoryStore();
    }
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Store> store_;
  std::string dir_;
};

TEST_P(StoreTest, PutGetListDelete) {
  auto r = store_->Commit({{}, {Op::Put("a/1", "x"), Op::Put("a/2", "y"), Op::Put("b/1", "z")}});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded);
  EXPECT_EQ(r->revision, 1);
  auto kv = store_->Get("a/2");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->value, "y");
  EXPECT_EQ((*kv)->create_revision, 1);
  auto list = store_->List("a/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "a/1");
  EXPECT_EQ((*list)[1].key, "a/2");
  ASSERT_TRUE(store_->Commit({{}, {Op::DeletePrefix("a/")}}).ok());
  EXPECT_TRUE(store_->List("a/")->empty());
  EXPECT_EQ(store_->List("b/")->size(), 1u);
  EXPECT_EQ(*store_->Revision(), 2);
}

TEST_P(StoreTest, CompareAbsentIsCreateOnce) {
  auto first = store_->Commit({{Compare::Absent("ips/1")}, {Op::Put("ips/1", "app-a")}});
  auto second = store_->Commit({{Compare::Absent("ips/1")}, {Op::Put("ips/1", "app-b")}});
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(first->succeeded);
  EXPECT_FALSE(second->succeeded);
  EXPECT_EQ((*store_->Get("ips/1"))->value, "app-a");
  EXPECT_EQ(*store_->Revision(), 1) << "a failed transaction writes nothing";
}

TEST_P(StoreTest, CompareModRevision) {
  ASSERT_TRUE(store_->Commit({{}, {Op::Put("k", "v1")}}).ok());
  int64_t rev = (*store_->Get("k"))->mod_revision;
  EXPECT_TRUE(store_->Commit({{Compare::ModRevision("k", rev)}, {Op::Put("k", "v2")}})->succeeded);
  EXPECT_FALSE(store_->Commit({{Compare::ModRevision("k", rev)}, {Op::Put("k", "v3")}})->succeeded);
  EXPECT_EQ((*store_->Get("k"))->value, "v2");
  EXPECT_EQ((*store_->Get("k"))->create_revision, rev);
}

TEST_P(StoreTest, WatchersHearEveryCommit) {
  std::vector<int64_t> seen;
  store_->Watch([&](int64_t rev) { seen.push_back(rev); });
  ASSERT_TRUE(store_->Commit({{}, {Op::Put("a", "1")}}).ok());
  // fails: no notification
  EXPECT_FALSE(store_->Commit({{Compare::Absent("a")}, {Op::Put("a", "2")}})->succeeded);
  ASSERT_TRUE(store_->Commit({{}, {Op::Delete("a")}}).ok());
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2}));
}

TEST_P(StoreTest, ConcurrentCreatesNeverCollide) {
  // Eight threads race to create the same 50 keys; each key is created exactly once.
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 50; ++k) {
        std::string key = "k/" + std::to_string(k);
        auto r = store_->Commit({{Compare::Absent(key)}, {Op::Put(key, std::to_string(t))}});
        if (r.ok() && r->succeeded) wins++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wins.load(), 50);
  EXPECT_EQ(store_->List("k/")->size(), 50u);
}

INSTANTIATE_TEST_SUITE_P(Impl, StoreTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Sqlite" : "Memory"; });

TEST(SqliteStoreTest, SurvivesReopenAndKeepsRevision) {
  std::string dir = TempDir();
  {
    auto s = OpenSqliteStore(dir + "/state.db");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->Commit({{}, {Op::Put("apps/a", "{}")}}).ok());
    ASSERT_TRUE((*s)->Commit({{}, {Op::Put("apps/b", "{}")}}).ok());
  }
  auto s = OpenSqliteStore(dir + "/state.db");
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*(*s)->Revision(), 2);
  EXPECT_EQ((*s)->List("apps/")->size(), 2u);
  std::filesystem::remove_all(dir);
}

TEST(SqliteStoreTest, TwoConnectionsOnOneFileSerializeCompareAndSet) {
  // Two independent SQLite connections (as two processes would have) race for the same keys.
  std::string dir = TempDir();
  auto a = OpenSqliteStore(dir + "/state.db");
  auto b = OpenSqliteStore(dir + "/state.db");
  ASSERT_TRUE(a.ok() && b.ok());
  std::atomic<int> wins{0};
  auto race = [&](Store* s) {
    for (int k = 0; k < 100; ++k) {
      std::string key = "ips/" + std::to_string(k);
      auto r = s->Commit({{Compare::Absent(key)}, {Op::Put(key, "x")}});
      ASSERT_TRUE(r.ok()) << r.message();
      if (r->succeeded) wins++;
    }
  };
  std::thread ta(race, a->get()), tb(race, b->get());
  ta.join();
  tb.join();
  EXPECT_EQ(wins.load(), 100);
  // The other connection notices commits it did not make.
  int64_t heard = 0;
  (*a)->Watch([&](int64_t rev) { heard = rev; });
  ASSERT_TRUE((*b)->Commit({{}, {Op::Put("late", "1")}}).ok());
  (*a)->Poll();
  EXPECT_EQ(heard, *(*b)->Revision());
  std::filesystem::remove_all(dir);
}

TEST(SqliteStoreTest, RefusesANewerSchema) {
  std::string dir = TempDir();
  { ASSERT_TRUE(OpenSqliteStore(dir + "/state.db").ok()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto s = OpenSqliteStore(dir + "/state.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("newer"), std::string::npos) << s.message();
  std::filesystem::remove_all(dir);
}

// The permission bits of `path`, or -1 when it does not exist.
int ModeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
}

// Sets the process umask for one scope (the test's thread is the only one creating files).
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(previous_); }

 private:
  mode_t previous_;
};

// The store holds certificates' private keys: the database, its -wal and its -shm are 0600
// from their creation, whatever the umask (0 here, so nothing else narrows them: SQLite alone
// creates all three 0644).
TEST(SqliteStoreTest, TheDatabaseAndItsWalAndShmAreOwnerOnly) {
  std::string dir = TempDir();
  std::string path = dir + "/state.db";
  {
    ScopedUmask open_umask(0);
    auto s = OpenSqliteStore(path);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE((*s)->Commit({{}, {Op::Put("certs/h", "{\"key_pem\": \"secret\"}")}}).ok());
    // While the store is open, all three exist (WAL mode keeps -wal and -shm until the close).
    for (const char* suffix : {"", "-wal", "-shm"}) {
      EXPECT_EQ(ModeOf(path + suffix), 0600) << path + suffix;
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(SqliteStoreTest, AnOlderInstallsWiderFilesAreNarrowedAtOpen) {
  std::string dir = TempDir();
  std::string path = dir + "/state.db";
  // An older version's files, 0644, held open by another connection so that -wal and -shm
  // stay (as with a daemon killed while they existed).
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    ASSERT_EQ(::chmod((path + suffix).c_str(), 0644), 0) << path + suffix;
  }
  auto s = OpenSqliteStore(path);
  ASSERT_TRUE(s.ok()) << s.message();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    EXPECT_EQ(ModeOf(path + suffix), 0600) << path + suffix;
  }
  s->reset();
  sqlite3_close(other);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace drawbridge::store
