// The current version of an immutable value, published by one thread and read by many: readers
// take a shared_ptr and keep using what they took while a writer swaps in a new version.
// Thread-safe.
#pragma once

#include <memory>
#include <mutex>

namespace drawbridge::base {

template <typename T>
class Snapshot {
 public:
  std::shared_ptr<const T> Current() const {
    std::lock_guard lock(mu_);
    return current_;
  }
  void Swap(std::shared_ptr<const T> next) {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const T> current_;
};

}  // namespace drawbridge::base
