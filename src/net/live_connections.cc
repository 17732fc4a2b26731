#include "net/live_connections.h"

#include <utility>

namespace drawbridge::net {

void LiveConnections::Enter() {
  std::lock_guard lock(mu_);
  ++count_;
}

void LiveConnections::Leave() {
  std::lock_guard lock(mu_);
  if (--count_ == 0 && on_empty_) std::exchange(on_empty_, nullptr)();
}

uint64_t LiveConnections::count() const {
  std::lock_guard lock(mu_);
  return count_;
}

void LiveConnections::WhenEmpty(std::function<void()> on_empty) {
  std::lock_guard lock(mu_);
  on_empty_ = std::move(on_empty);
  if (count_ == 0 && on_empty_) std::exchange(on_empty_, nullptr)();
}

}  // namespace drawbridge::net
