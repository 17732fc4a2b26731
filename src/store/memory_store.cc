#include <map>
#include <mutex>

#include "store/store.h"

namespace drawbridge::store {

namespace {

class MemoryStore : public Store {
 public:
  base::Result<std::optional<KeyValue>> Get(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = data_.find(key);
    if (it == data_.end()) return std::optional<KeyValue>();
    return std::optional<KeyValue>(it->second);
  }

  base::Result<std::vector<KeyValue>> List(const std::string& prefix) override {
    std::lock_guard lock(mu_);
    std::vector<KeyValue> out;
    for (auto it = data_.lower_bound(prefix); it != data_.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      out.push_back(it->second);
    }
    return out;
  }

  base::Result<TxnResult> Commit(const Txn& txn) override {
    int64_t revision;
    std::vector<std::function<void(int64_t)>> watchers;
    {
      std::lock_guard lock(mu_);
      for (const auto& c : txn.compares) {
        auto it = data_.find(c.key);
        bool holds = c.kind == Compare::Kind::kAbsent
                         ? it == data_.end()
                         : it != data_.end() && it->second.mod_revision == c.revision;
        if (!holds) return TxnResult{false, revision_};
      }
      if (txn.ops.empty()) return TxnResult{true, revision_};
      revision = ++revision_;
      for (const auto& op : txn.ops) {
        switch (op.kind) {
          case Op::Kind::kPut: {
            auto& kv = data_[op.key];
            if (kv.key.empty()) {
              kv.key = op.key;
              kv.create_revision = revision;
            }
            kv.value = op.value;
            kv.mod_revision = revision;
            break;
          }
          case Op::Kind::kDelete: data_.erase(op.key); break;
          case Op::Kind::kDeletePrefix: {
            auto it = data_.lower_bound(op.key);
            while (it != data_.end() && it->first.compare(0, op.key.size(), op.key) == 0) {
              it = data_.erase(it);
            }
            break;
          }
        }
      }
      watchers = watchers_;
    }
    for (auto& w : watchers) w(revision);
    return TxnResult{true, revision};
  }

  base::Result<int64_t> Revision() override {
    std::lock_guard lock(mu_);
    return revision_;
  }

  void Watch(std::function<void(int64_t)> on_change) override {
    std::lock_guard lock(mu_);
    watchers_.push_back(std::move(on_change));
  }

  std::string Describe() const override { return "memory"; }

 private:
  std::mutex mu_;
  std::map<std::string, KeyValue> data_;
  int64_t revision_ = 0;
  std::vector<std::function<void(int64_t)>> watchers_;
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

}  // namespace drawbridge::store
