// The connections a server has open, for the drain at shutdown (docs/connection.md,
// "Shutdown"): every connection enters at accept and leaves once it is logged, and the thread
// that drains is told when the last one leaves instead of polling a counter. Thread-safe:
// connections enter on io threads and leave on io or relay threads.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

namespace drawbridge::net {

class LiveConnections {
 public:
  void Enter();
  void Leave();
  uint64_t count() const;
  // Calls `on_empty` (from the thread of the connection that leaves last, or at once from
  // this one if none is open) the next time no connection is open; an empty function cancels.
  // `on_empty` must only post work elsewhere: it runs under this registry's lock.
  void WhenEmpty(std::function<void()> on_empty);

 private:
  mutable std::mutex mu_;
  uint64_t count_ = 0;
  std::function<void()> on_empty_;
};

}  // namespace drawbridge::net
