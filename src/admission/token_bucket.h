// A token bucket for the per-source rates of admission control (TLS handshakes and cancel
// requests per second): `rate` tokens a second, holding at most `burst` (one second's worth,
// at least one token), full when created. Pure and not thread-safe: the source table guards
// each bucket with its shard's mutex. Time is passed in, so tests control it.
#pragma once

#include <algorithm>
#include <chrono>

namespace drawbridge::admission {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // The burst for `rate` per second: one second's worth, and at least one token, so that a
  // rate below 1/s still lets one event through every 1/rate seconds.
  static double BurstFor(double rate) { return std::max(1.0, rate); }
  // How long an empty bucket takes to fill again; an entry whose bucket has been left alone
  // this long behaves exactly like a new one, which is what lets the source table forget it.
  static Clock::duration RefillTime(double rate) {
    if (rate <= 0) return Clock::duration::zero();
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(BurstFor(rate) / rate));
  }

  // Takes one token at `now` if there is one. `rate` <= 0: no limit, always true. A `now`
  // earlier than the last one seen (clocks read on other threads before the lock) adds
  // nothing and does not move the bucket's time back.
  bool Take(double rate, Clock::time_point now) {
    if (rate <= 0) return true;
    double burst = BurstFor(rate);
    if (tokens_ < 0) {
      tokens_ = burst;  // full at creation
    } else if (now > last_) {
      std::chrono::duration<double> elapsed = now - last_;
      tokens_ = std::min(burst, tokens_ + elapsed.count() * rate);
    }
    if (now > last_) last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  double tokens_ = -1;  // < 0: never taken from: full
  Clock::time_point last_{};
};

}  // namespace drawbridge::admission
