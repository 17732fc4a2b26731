// The control plane's state as a revisioned key-value store, shaped like etcd's v3 API so that
// an etcd implementation can follow: every committed write bumps one global revision; a
// transaction applies its writes only if all of its comparisons hold (compare-and-set, never a
// lock held across requests); watchers hear about every commit. Implementations: SQLite (the
// default, durable) and in-memory (unit tests). All methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace drawbridge::store {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
};

struct Compare {
  enum class Kind { kAbsent, kModRevision };
  std::string key;
  Kind kind = Kind::kAbsent;
  int64_t revision = 0;  // for kModRevision: the key's mod_revision must equal this

  static Compare Absent(std::string key) { return {std::move(key), Kind::kAbsent, 0}; }
  static Compare ModRevision(std::string key, int64_t rev) {
    return {std::move(key), Kind::kModRevision, rev};
  }
};

struct Op {
  enum class Kind { kPut, kDelete, kDeletePrefix };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;

  static Op Put(std::string key, std::string value) {
    return {Kind::kPut, std::move(key), std::move(value)};
  }
  static Op Delete(std::string key) { return {Kind::kDelete, std::move(key), {}}; }
  static Op DeletePrefix(std::string prefix) { return {Kind::kDeletePrefix, std::move(prefix), {}}; }
};

struct Txn {
  std::vector<Compare> compares;
  std::vector<Op> ops;
};

// How this process's view of the store stands (status, /metrics, `nodes list`).
struct StoreHealth {
  bool healthy = true;           // false: the store cannot be reached; reads serve the last view
  int64_t applied_revision = 0;  // the revision this process's reads reflect
  std::string error;             // why it is not healthy; empty when it is
};

struct TxnResult {
  bool succeeded = false;  // false: a comparison failed and nothing was written
  int64_t revision = 0;    // the store's revision after the transaction
};

class Store {
 public:
  virtual ~Store() = default;

  virtual base::Result<std::optional<KeyValue>> Get(const std::string& key) = 0;
  // Every key starting with `prefix`, in key order.
  virtual base::Result<std::vector<KeyValue>> List(const std::string& prefix) = 0;
  virtual base::Result<TxnResult> Commit(const Txn& txn) = 0;
  virtual base::Result<int64_t> Revision() = 0;
  // Called after each commit that changed something, with the new revision, on the
  // committing thread. Changes made by other processes are noticed by Poll().
  virtual void Watch(std::function<void(int64_t)> on_change) = 0;
  // Checks for commits made by other processes; notifies watchers if there were any.
  virtual void Poll() {}
  virtual std::string Describe() const = 0;
  // Embedded stores are always healthy and reflect their own revision.
  virtual StoreHealth Health() {
    auto revision = Revision();
    if (!revision.ok()) return {false, 0, revision.message()};
    return {true, *revision, ""};
  }
  // The servers the store talks to ("host:port"); empty for an embedded store.
  virtual std::vector<std::string> Endpoints() const { return {}; }
};

std::unique_ptr<Store> NewMemoryStore();
// Opens (creating and migrating if needed) the SQLite store at `path`: WAL journal,
// synchronous=FULL, a busy timeout so that concurrent processes queue instead of failing. The
// database and its -wal and -shm files are mode 0600 (it holds private keys): created so, and
// narrowed to it when an older version left them wider.
base::Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace drawbridge::store
