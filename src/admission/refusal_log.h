// Keeps the log of refusals bounded (docs/admission.md, "Logs"): a flood that is refused by
// the thousand a second must not write a line for each. Per reason, the first refusal logs at
// once, then at most one line per interval, which reports how many refusals it stands for.
// Lock-free; safe from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "admission/refusal.h"

namespace drawbridge::admission {

class RefusalLog {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RefusalLog(std::chrono::milliseconds interval = std::chrono::seconds(1))
      : interval_(interval) {}

  // Counts one refusal of `r` at `now`. Returns 0 when no line is due, else the number of
  // refusals of `r` the caller's line reports: this one and those not logged since the last
  // line.
  uint64_t Note(Refusal r, Clock::time_point now);

 private:
  struct PerReason {
    std::atomic<uint64_t> pending{0};
    std::atomic<int64_t> next_due{0};  // Clock ticks since its epoch; 0: a line is due now
  };
  std::chrono::milliseconds interval_;
  std::array<PerReason, static_cast<size_t>(Refusal::kCount)> reasons_{};
};

}  // namespace drawbridge::admission
