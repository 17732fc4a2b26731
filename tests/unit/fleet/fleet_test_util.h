// Helpers for the fleet unit tests: a temporary directory removed at the end, a Store that
// forwards to one it does not own (two wrappers over one store), and a Store that is down.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "store/store.h"

namespace drawbridge::fleet::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("drawbridge-fleet-test-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Forwards every call to a store owned elsewhere.
class BorrowedStore : public store::Store {
 public:
  explicit BorrowedStore(store::Store* inner) : inner_(inner) {}
  base::Result<std::optional<store::KeyValue>> Get(const std::string& key) override {
    return inner_->Get(key);
  }
  base::Result<std::vector<store::KeyValue>> List(const std::string& prefix) override {
    return inner_->List(prefix);
  }
  base::Result<store::TxnResult> Commit(const store::Txn& txn) override {
    return inner_->Commit(txn);
  }
  base::Result<int64_t> Revision() override { return inner_->Revision(); }
  void Watch(std::function<void(int64_t)> on_change) override {
    inner_->Watch(std::move(on_change));
  }
  std::string Describe() const override { return inner_->Describe(); }

 private:
  store::Store* inner_;
};

// An etcd that cannot be reached and left no local copy: every call fails with kUnavailable.
class DownStore : public store::Store {
 public:
  base::Result<std::optional<store::KeyValue>> Get(const std::string&) override { return Down(); }
  base::Result<std::vector<store::KeyValue>> List(const std::string&) override { return Down(); }
  base::Result<store::TxnResult> Commit(const store::Txn&) override { return Down(); }
  base::Result<int64_t> Revision() override { return Down(); }
  void Watch(std::function<void(int64_t)>) override {}
  std::string Describe() const override { return "etcd://127.0.0.1:1"; }

 private:
  static base::Status Down() {
    return base::Status::Unavailable("etcd://127.0.0.1:1: unreachable; nothing was written");
  }
};

}  // namespace drawbridge::fleet::testing
