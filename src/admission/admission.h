// Admission control (docs/admission.md): what the edge refuses before it does any expensive
// work for a connection, so that one source, or a flood of them, cannot take the edge from
// everybody else. At accept: a global cap on connections, a cap on connections still
// negotiating (the ones that cost CPU: TLS handshakes, startup parsing, machine connects) and
// a per-source cap on concurrent connections. Later, per source: TLS handshakes per second,
// charged before any private-key operation, and cancel requests per second. Every refusal is
// counted by reason.
//
// A "source" is an IPv4 address or an IPv6 /64 (admission/source_key.h). Per-source state
// lives in a table split into shards, each with its own mutex, so connections of different
// sources rarely contend. The table is bounded: a source with no open connection whose rate
// buckets have refilled is forgotten (forgetting it changes nothing: a new entry would be the
// same), a little at each call; when the table is full anyway, the source idle longest is
// forgotten early (it may get a fresh burst of handshakes and cancels sooner than its rate
// allows: counted in drawbridge_admission_sources_forgotten_total); a source with open
// connections is never forgotten. Only if every entry of a shard has open connections (the
// bound is at least twice max_connections, and shards are chosen by a seeded hash, so this
// takes more open connections than the global cap allows) is a new source refused, as
// max_connections.
//
// Thread-safe: one Admission per server (net::ServerContext), used by every io and relay
// thread. Its limits are set before the first connection and fixed after.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "admission/refusal_log.h"
#include "admission/refusal.h"
#include "admission/source_key.h"
#include "admission/token_bucket.h"

namespace drawbridge::admission {

struct Limits {
  int max_connections = 100000;            // open connections, all sources; 0: no cap
  int max_handshakes_in_flight = 4096;     // connections not yet relaying; 0: no cap
  int max_connections_per_source = 1000;   // 0: no cap
  double tls_handshakes_per_second_per_source = 500;  // 0: no limit
  double cancels_per_second_per_source = 50;          // 0: no limit
  // Most sources the table holds at once; 0: max(65536, 2 * max_connections). Tests set it
  // small.
  size_t max_tracked_sources = 0;
};

class Admission {
 public:
  using Clock = std::chrono::steady_clock;
  // The time source of Admit(ip) and of a slot's release; unset: Clock::now. Tests inject one.
  using ClockFn = std::function<Clock::time_point()>;

  explicit Admission(Limits limits = {}, ClockFn clock = nullptr);
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // Replaces the limits; only before the first Admit() (the server sets them from its options
  // before its threads start).
  void SetLimits(Limits limits);
  const Limits& limits() const { return limits_; }

  // One admitted connection: counts against the global cap, the handshake cap (until
  // HandshakeDone()) and its source's cap until released, by Release() or its destructor,
  // exactly once. Movable, so it can follow the connection from its negotiation to its relay
  // session; used by one thread at a time (whoever owns the connection). The Admission must
  // outlive it.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;  // releases what this slot held first
    ~Slot();

    // The connection is no longer negotiating (handed to the relay, or refused): it leaves the
    // handshake count and keeps its connection counts. Idempotent.
    void HandshakeDone();
    // Releases everything now; idempotent.
    void Release();
    bool held() const { return owner_ != nullptr; }
    bool handshaking() const { return handshaking_; }

   private:
    friend class Admission;
    Admission* owner_ = nullptr;
    SourceId source_;
    bool tracked_ = false;  // counted in the source table
    bool handshaking_ = false;
  };

  // At accept: kNone and a held slot, or the refusal and an empty slot. Checks the source's
  // cap, then the global one, then the handshake cap.
  std::pair<Refusal, Slot> Admit(std::string_view source_ip);
  std::pair<Refusal, Slot> Admit(std::string_view source_ip, Clock::time_point now);
  // Takes one TLS handshake (one cancel request) from the source's bucket: kNone, or
  // kTlsHandshakeRate (kCancelRate) when the bucket is empty.
  Refusal ChargeTlsHandshake(std::string_view source_ip, Clock::time_point now);
  Refusal ChargeCancel(std::string_view source_ip, Clock::time_point now);

  // Forgets every source whose entry is the same as none at `now` (no connection, buckets
  // refilled), in every shard; returns how many. Calls above do this a few entries at a time
  // in the shard they touch; this is for an idle moment (and for tests).
  size_t ForgetIdle(Clock::time_point now);

  uint64_t Refusals(Refusal r) const;
  int64_t connections() const { return connections_.load(); }
  int64_t handshaking() const { return handshaking_.load(); }
  int64_t sources_tracked() const { return tracked_.load(); }
  uint64_t sources_forgotten() const { return forgotten_.load(); }
  size_t source_capacity() const { return shard_capacity_ * kShards; }

  // drawbridge_admission_refusals_total{reason=...} (every reason, also 0),
  // drawbridge_connections_handshaking, drawbridge_admission_sources_tracked and
  // drawbridge_admission_sources_forgotten_total, in Prometheus text format.
  std::string Prometheus() const;

  // Bounds the log lines of refusals (admission/refusal_log.h): how many refusals of `r` the
  // line due now reports, 0 if none is due.
  uint64_t LogDue(Refusal r, Clock::time_point now) { return log_.Note(r, now); }

 private:
  static constexpr size_t kShards = 64;

  struct Entry {
    int connections = 0;
    TokenBucket tls, cancels;
    // Since when it has had no connection and no charge (when it has no connection).
    Clock::time_point idle_since{};
    // Its place in the shard's idle list: listed exactly when it has no connection.
    std::list<SourceId>::iterator idle;
    bool listed = false;
  };
  struct IdHash {
    uint64_t seed;
    size_t operator()(const SourceId& id) const { return HashSourceId(id, seed); }
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<SourceId, Entry, IdHash> entries;
    std::list<SourceId> idle;  // entries without connections, longest idle first
    explicit Shard(uint64_t seed) : entries(16, IdHash{seed}) {}
  };

  Shard& ShardOf(const SourceId& id);
  // With the shard locked: the source's entry, created if need be; null if the shard is full
  // of sources with open connections. `created` says whether it is new.
  Entry* FindOrCreate(Shard& s, const SourceId& id, Clock::time_point now, bool* created);
  // With the shard locked: forgets up to `max` entries idle for the refill time; how many.
  size_t Sweep(Shard& s, Clock::time_point now, size_t max);
  void Erase(Shard& s, std::unordered_map<SourceId, Entry, IdHash>::iterator it);
  void MarkIdle(Shard& s, const SourceId& id, Entry& e, Clock::time_point now);
  void MarkBusy(Shard& s, Entry& e);
  Refusal Charge(std::string_view source_ip, Clock::time_point now, bool tls);
  void Release(Slot& slot);
  void Refuse(Refusal r) { refusals_[static_cast<size_t>(r)]++; }
  Clock::time_point Now() const { return clock_ ? clock_() : Clock::now(); }

  Limits limits_;
  ClockFn clock_;
  bool tracking_ = false;            // any per-source limit is on
  Clock::duration refill_{};         // an idle entry older than this is the same as none
  size_t shard_capacity_ = 0;
  uint64_t seed_ = 0;
  std::array<std::unique_ptr<Shard>, kShards> shards_;
  std::atomic<int64_t> connections_{0}, handshaking_{0}, tracked_{0};
  std::atomic<uint64_t> forgotten_{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Refusal::kCount)> refusals_{};
  RefusalLog log_;
};

}  // namespace drawbridge::admission
