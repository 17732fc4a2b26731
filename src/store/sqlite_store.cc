#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "store/store.h"

namespace drawbridge::store {

namespace {

// Schema migrations, applied in order; PRAGMA user_version records how many have run.
constexpr const char* kMigrations[] = {
    R"sql(
    CREATE TABLE kv (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL,
      create_revision INTEGER NOT NULL,
      mod_revision INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL);
    INSERT INTO meta VALUES (1, 0);
    )sql",
};

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  KeyValue Row() const { return {Text(0), Text(1), Int(2), Int(3)}; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteStore : public Store {
 public:
  SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteStore() override { sqlite3_close(db_); }

  base::Status Init() {
    sqlite3_busy_timeout(db_, 10'000);
    for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                               "PRAGMA foreign_keys=ON"}) {
      if (auto s = Exec(pragma); !s.ok()) return s;
    }
    if (auto s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    int64_t version = 0;
    {
      Stmt st(db_, "PRAGMA user_version");
      if (st.Step() == SQLITE_ROW) version = st.Int(0);
    }
    constexpr int64_t kLatest = sizeof(kMigrations) / sizeof(kMigrations[0]);
    if (version > kLatest) {
      Rollback();
      return base::Status::Internal(path_ + ": schema version " + std::to_string(version) +
                                    " is newer than this binary knows (" + std::to_string(kLatest) +
                                    ")");
    }
    for (int64_t v = version; v < kLatest; ++v) {
      if (auto s = Exec(kMigrations[v]); !s.ok()) {
        Rollback();
        return s;
      }
    }
    if (auto s = Exec("PRAGMA user_version=" + std::to_string(kLatest)); !s.ok()) return s;
    if (auto s = Exec("COMMIT"); !s.ok()) return s;
    auto rev = ReadRevision();
    if (!rev.ok()) return rev.status();
    seen_revision_ = *rev;
    return {};
  }

  base::Result<std::optional<KeyValue>> Get(const std::string& key) override {
    std::lock_guard lock(mu_);
    Stmt st(db_, "SELECT key, value, create_revision, mod_revision FROM kv WHERE key = ?");
    st.Bind(1, key);
    int rc = st.Step();
    if (rc == SQLITE_ROW) return std::optional<KeyValue>(st.Row());
    if (rc == SQLITE_DONE) return std::optional<KeyValue>();
    return Error("get");
  }

  base::Result<std::vector<KeyValue>> List(const std::string& prefix) override {
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "SELECT key, value, create_revision, mod_revision FROM kv "
            "WHERE key >= ?1 AND substr(key, 1, length(?1)) = ?1 ORDER BY key");
    st.Bind(1, prefix);
    std::vector<KeyValue> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out.push_back(st.Row());
    if (rc != SQLITE_DONE) return Error("list");
    return out;
  }

  base::Result<TxnResult> Commit(const Txn& txn) override {
    int64_t revision = 0;
    std::vector<std::function<void(int64_t)>> watchers;
    {
      std::lock_guard lock(mu_);
      // IMMEDIATE takes the write lock up front, so concurrent processes serialize here.
      if (auto s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
      auto result = CommitLocked(txn);
      if (!result.ok() || !result->succeeded || txn.ops.empty()) {
        Rollback();
        if (result.ok() && txn.ops.empty()) result->succeeded = true;
        return result;
      }
      if (auto s = Exec("COMMIT"); !s.ok()) {
        Rollback();
        return s;
      }
      revision = result->revision;
      seen_revision_ = revision;
      watchers = watchers_;
    }
    for (auto& w : watchers) w(revision);
    return TxnResult{true, revision};
  }

  base::Result<int64_t> Revision() override {
    std::lock_guard lock(mu_);
    return ReadRevision();
  }

  void Watch(std::function<void(int64_t)> on_change) override {
    std::lock_guard lock(mu_);
    watchers_.push_back(std::move(on_change));
  }

  void Poll() override {
    int64_t revision;
    std::vector<std::function<void(int64_t)>> watchers;
    {
      std::lock_guard lock(mu_);
      auto rev = ReadRevision();
      if (!rev.ok() || *rev == seen_revision_) return;
      revision = seen_revision_ = *rev;
      watchers = watchers_;
    }
    for (auto& w : watchers) w(revision);
  }

  std::string Describe() const override { return "sqlite:" + path_; }

 private:
  base::Result<TxnResult> CommitLocked(const Txn& txn) {
    auto current = ReadRevision();
    if (!current.ok()) return current.status();
    for (const auto& c : txn.compares) {
      Stmt st(db_, "SELECT mod_revision FROM kv WHERE key = ?");
      st.Bind(1, c.key);
      int rc = st.Step();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("compare");
      bool holds = c.kind == Compare::Kind::kAbsent
                       ? rc == SQLITE_DONE
                       : rc == SQLITE_ROW && st.Int(0) == c.revision;
      if (!holds) return TxnResult{false, *current};
    }
    int64_t revision = *current + 1;
    for (const auto& op : txn.ops) {
      int rc;
      switch (op.kind) {
        case Op::Kind::kPut: {
          Stmt st(db_,
                  "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?1, ?2, ?3, "
                  "?3) ON CONFLICT(key) DO UPDATE SET value = ?2, mod_revision = ?3");
          st.Bind(1, op.key).Bind(2, op.value).Bind(3, revision);
          rc = st.Step();
          break;
        }
        case Op::Kind::kDelete: {
          Stmt st(db_, "DELETE FROM kv WHERE key = ?");
          st.Bind(1, op.key);
          rc = st.Step();
          break;
        }
        case Op::Kind::kDeletePrefix: {
          Stmt st(db_, "DELETE FROM kv WHERE key >= ?1 AND substr(key, 1, length(?1)) = ?1");
          st.Bind(1, op.key);
          rc = st.Step();
          break;
        }
      }
      if (rc != SQLITE_DONE) return Error("write");
    }
    Stmt st(db_, "UPDATE meta SET revision = ? WHERE id = 1");
    st.Bind(1, revision);
    if (st.Step() != SQLITE_DONE) return Error("revision");
    return TxnResult{true, revision};
  }

  base::Result<int64_t> ReadRevision() {
    Stmt st(db_, "SELECT revision FROM meta WHERE id = 1");
    if (st.Step() != SQLITE_ROW) return Error("revision");
    return st.Int(0);
  }

  base::Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = path_ + ": " + (err ? err : sqlite3_errmsg(db_));
      sqlite3_free(err);
      return base::Status::Internal(msg);
    }
    return {};
  }

  // Ends a transaction that is not to be committed. Its own failure is not reported: the caller
  // is already returning the error (or the result) that led here, and SQLite has rolled back by
  // itself after most errors, so a failed ROLLBACK often only says there was nothing to undo.
  void Rollback() { (void)Exec("ROLLBACK"); }

  base::Status Error(const char* what) {
    return base::Status::Internal(path_ + ": " + what + ": " + sqlite3_errmsg(db_));
  }

  std::mutex mu_;
  sqlite3* db_;
  std::string path_;
  int64_t seen_revision_ = 0;
  std::vector<std::function<void(int64_t)>> watchers_;
};

// The store holds private keys (certs/), so the database is 0600 from its first byte, and so
// are its -wal and -shm files: SQLite gives those the mode of the database file. The file is
// created here, empty, with mode 0600 (which a umask can only narrow) before SQLite opens it;
// a database and -wal/-shm files left by an older version, created 0644, are narrowed to 0600.
// A file whose mode cannot be narrowed (owned by another user) is an error, not a warning.
base::Status MakePrivate(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return base::Status::Internal(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0 && ((st.st_mode & 0077) == 0 || ::fchmod(fd, 0600) == 0);
  int err = errno;
  ::close(fd);
  if (!ok) return base::Status::Internal(path + ": cannot make it 0600: " + std::strerror(err));
  for (const char* suffix : {"-wal", "-shm"}) {
    std::string side = path + suffix;
    if (::lstat(side.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return base::Status::Internal(side + ": " + std::strerror(errno));
    }
    if (S_ISREG(st.st_mode) && (st.st_mode & 0077) != 0 && ::chmod(side.c_str(), 0600) != 0) {
      return base::Status::Internal(side + ": cannot make it 0600: " + std::strerror(errno));
    }
  }
  return {};
}

}  // namespace

base::Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  if (auto s = MakePrivate(path); !s.ok()) return s;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = path + ": " + (db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return base::Status::Internal(msg);
  }
  auto store = std::make_unique<SqliteStore>(db, path);
  if (auto s = store->Init(); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace drawbridge::store
