#include "admission/refusal_log.h"

namespace drawbridge::admission {

uint64_t RefusalLog::Note(Refusal r, Clock::time_point now) {
  PerReason& p = reasons_[static_cast<size_t>(r)];
  p.pending.fetch_add(1);
  int64_t ticks = now.time_since_epoch().count();
  int64_t due = p.next_due.load();
  if (ticks < due) return 0;
  int64_t next = ticks + std::chrono::duration_cast<Clock::duration>(interval_).count();
  // One thread wins the line; the others' refusals stay pending for the next one.
  if (!p.next_due.compare_exchange_strong(due, next)) return 0;
  return p.pending.exchange(0);
}

}  // namespace drawbridge::admission
