#include "admission/admission.h"

#include <openssl/rand.h>

#include <algorithm>

namespace drawbridge::admission {

namespace {

// Sources forgotten per call, at most, besides the one a full shard makes room for: enough
// to keep up with the calls that create entries (one each), small enough to bound a call.
constexpr size_t kSweepPerCall = 4;

// Adds one to `counter` unless that would pass `cap` (0: no cap). True if it did.
bool Reserve(std::atomic<int64_t>& counter, int cap) {
  int64_t now = counter.load();
  do {
    if (cap > 0 && now >= cap) return false;
  } while (!counter.compare_exchange_weak(now, now + 1));
  return true;
}

}  // namespace

const char* RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kNone: return "none";
    case Refusal::kMaxConnections: return "max_connections";
    case Refusal::kMaxHandshakes: return "max_handshakes";
    case Refusal::kPerSourceConnections: return "per_source_connections";
    case Refusal::kTlsHandshakeRate: return "tls_handshake_rate";
    case Refusal::kCancelRate: return "cancel_rate";
    case Refusal::kCount: break;
  }
  return "unknown";
}

Admission::Admission(Limits limits, ClockFn clock) : clock_(std::move(clock)) {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed_), sizeof seed_) != 1) {
    // No randomness: the table still works, only its shards become predictable.
    seed_ = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  for (auto& s : shards_) s = std::make_unique<Shard>(seed_);
  SetLimits(limits);
}

Admission::~Admission() = default;

void Admission::SetLimits(Limits limits) {
  limits_ = limits;
  tracking_ = limits.max_connections_per_source > 0 ||
              limits.tls_handshakes_per_second_per_source > 0 ||
              limits.cancels_per_second_per_source > 0;
  refill_ = std::max(TokenBucket::RefillTime(limits.tls_handshakes_per_second_per_source),
                     TokenBucket::RefillTime(limits.cancels_per_second_per_source));
  size_t total = limits.max_tracked_sources;
  if (total == 0) {
    total = std::max<size_t>(65536, 2 * static_cast<size_t>(std::max(0, limits.max_connections)));
  }
  shard_capacity_ = std::max<size_t>(1, (total + kShards - 1) / kShards);
}

// ---- Slot -------------------------------------------------------------------------------------

Admission::Slot::Slot(Slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      source_(other.source_),
      tracked_(std::exchange(other.tracked_, false)),
      handshaking_(std::exchange(other.handshaking_, false)) {}

Admission::Slot& Admission::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    source_ = other.source_;
    tracked_ = std::exchange(other.tracked_, false);
    handshaking_ = std::exchange(other.handshaking_, false);
  }
  return *this;
}

Admission::Slot::~Slot() { Release(); }

void Admission::Slot::HandshakeDone() {
  if (owner_ == nullptr || !handshaking_) return;
  handshaking_ = false;
  owner_->handshaking_--;
}

void Admission::Slot::Release() {
  if (owner_ == nullptr) return;
  HandshakeDone();
  owner_->Release(*this);
  owner_ = nullptr;
  tracked_ = false;
}

void Admission::Release(Slot& slot) {
  connections_--;
  if (!slot.tracked_) return;
  Shard& s = ShardOf(slot.source_);
  Clock::time_point now = Now();
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(slot.source_);
  // Always found: an entry with connections is never forgotten.
  if (it == s.entries.end()) return;
  Sweep(s, now, kSweepPerCall);  // never this entry: it has a connection
  if (--it->second.connections == 0) {
    if (refill_ == Clock::duration::zero()) {
      Erase(s, it);  // no rate to remember: nothing left to know about the source
    } else {
      MarkIdle(s, slot.source_, it->second, now);
    }
  }
}

// ---- The source table ---------------------------------------------------------------------------

Admission::Shard& Admission::ShardOf(const SourceId& id) {
  // The hash's high bits pick the shard; the map's buckets use its low bits.
  size_t h = HashSourceId(id, seed_);
  return *shards_[(h >> (sizeof(size_t) * 8 - 6)) % kShards];
}

void Admission::Erase(Shard& s, std::unordered_map<SourceId, Entry, IdHash>::iterator it) {
  MarkBusy(s, it->second);
  s.entries.erase(it);
  tracked_--;
}

void Admission::MarkIdle(Shard& s, const SourceId& id, Entry& e, Clock::time_point now) {
  // At the back: the list stays ordered by idle_since (up to clock reads racing by a few
  // microseconds, which only delays a sweep).
  if (e.listed) {
    s.idle.splice(s.idle.end(), s.idle, e.idle);
  } else {
    e.idle = s.idle.insert(s.idle.end(), id);
    e.listed = true;
  }
  e.idle_since = now;
}

void Admission::MarkBusy(Shard& s, Entry& e) {
  if (!e.listed) return;
  s.idle.erase(e.idle);
  e.listed = false;
}

size_t Admission::Sweep(Shard& s, Clock::time_point now, size_t max) {
  size_t n = 0;
  for (; n < max && !s.idle.empty(); ++n) {
    auto it = s.entries.find(s.idle.front());
    if (now - it->second.idle_since < refill_) break;  // the rest are younger
    Erase(s, it);
  }
  return n;
}

size_t Admission::ForgetIdle(Clock::time_point now) {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    n += Sweep(*s, now, s->entries.size());
  }
  return n;
}

Admission::Entry* Admission::FindOrCreate(Shard& s, const SourceId& id, Clock::time_point now,
                                          bool* created) {
  *created = false;
  Sweep(s, now, kSweepPerCall);
  if (auto it = s.entries.find(id); it != s.entries.end()) return &it->second;
  if (s.entries.size() >= shard_capacity_) {
    if (s.idle.empty()) return nullptr;  // every source here has open connections
    // Full: the source idle longest goes, whether or not its buckets have refilled.
    Erase(s, s.entries.find(s.idle.front()));
    forgotten_++;
  }
  auto [it, inserted] = s.entries.try_emplace(id);
  tracked_++;
  *created = true;
  MarkIdle(s, id, it->second, now);  // no connections yet
  return &it->second;
}

// ---- Admission ----------------------------------------------------------------------------------

std::pair<Refusal, Admission::Slot> Admission::Admit(std::string_view source_ip) {
  return Admit(source_ip, Now());
}

std::pair<Refusal, Admission::Slot> Admission::Admit(std::string_view source_ip,
                                                     Clock::time_point now) {
  Slot slot;
  auto reserve_global = [&]() -> Refusal {
    if (!Reserve(connections_, limits_.max_connections)) return Refusal::kMaxConnections;
    if (!Reserve(handshaking_, limits_.max_handshakes_in_flight)) {
      connections_--;
      return Refusal::kMaxHandshakes;
    }
    return Refusal::kNone;
  };
  if (!tracking_) {
    Refusal r = reserve_global();
    if (r != Refusal::kNone) {
      Refuse(r);
      return {r, Slot()};
    }
    slot.owner_ = this;
    slot.handshaking_ = true;
    return {Refusal::kNone, std::move(slot)};
  }
  SourceId id = SourceIdOf(source_ip);
  Shard& s = ShardOf(id);
  Refusal r = Refusal::kNone;
  {
    std::lock_guard lock(s.mu);
    bool created = false;
    Entry* e = FindOrCreate(s, id, now, &created);
    if (e == nullptr) {
      r = Refusal::kMaxConnections;
    } else if (limits_.max_connections_per_source > 0 &&
               e->connections >= limits_.max_connections_per_source) {
      r = Refusal::kPerSourceConnections;
    } else {
      r = reserve_global();
    }
    if (r == Refusal::kNone) {
      if (e->connections++ == 0) MarkBusy(s, *e);
    } else if (created) {
      Erase(s, s.entries.find(id));  // a refused new source leaves nothing behind
    }
  }
  if (r != Refusal::kNone) {
    Refuse(r);
    return {r, Slot()};
  }
  slot.owner_ = this;
  slot.source_ = id;
  slot.tracked_ = true;
  slot.handshaking_ = true;
  return {Refusal::kNone, std::move(slot)};
}

Refusal Admission::ChargeTlsHandshake(std::string_view source_ip, Clock::time_point now) {
  return Charge(source_ip, now, true);
}

Refusal Admission::ChargeCancel(std::string_view source_ip, Clock::time_point now) {
  return Charge(source_ip, now, false);
}

Refusal Admission::Charge(std::string_view source_ip, Clock::time_point now, bool tls) {
  double rate = tls ? limits_.tls_handshakes_per_second_per_source
                    : limits_.cancels_per_second_per_source;
  if (rate <= 0) return Refusal::kNone;
  SourceId id = SourceIdOf(source_ip);
  Shard& s = ShardOf(id);
  bool ok = true;
  {
    std::lock_guard lock(s.mu);
    bool created = false;
    Entry* e = FindOrCreate(s, id, now, &created);
    // A shard full of sources with open connections: this charge goes unmetered rather than
    // refusing a source for what others hold.
    if (e == nullptr) return Refusal::kNone;
    ok = (tls ? e->tls : e->cancels).Take(rate, now);
    if (e->connections == 0) MarkIdle(s, id, *e, now);  // charged: its buckets are not full now
  }
  if (ok) return Refusal::kNone;
  Refusal r = tls ? Refusal::kTlsHandshakeRate : Refusal::kCancelRate;
  Refuse(r);
  return r;
}

uint64_t Admission::Refusals(Refusal r) const { return refusals_[static_cast<size_t>(r)].load(); }

std::string Admission::Prometheus() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  metric("drawbridge_admission_refusals_total", "counter",
         "Connections, TLS handshakes and cancel requests refused by admission control, by "
         "reason.");
  for (size_t i = 1; i < refusals_.size(); ++i) {
    out += std::string("drawbridge_admission_refusals_total{reason=\"") +
           RefusalName(static_cast<Refusal>(i)) + "\"} " + std::to_string(refusals_[i].load()) +
           "\n";
  }
  metric("drawbridge_connections_handshaking", "gauge",
         "Connections admitted and still negotiating (not yet relaying), against "
         "max_handshakes_in_flight.");
  out += "drawbridge_connections_handshaking " + std::to_string(handshaking_.load()) + "\n";
  metric("drawbridge_admission_sources_tracked", "gauge",
         "Sources (IPv4 addresses, IPv6 /64s) in admission control's table now.");
  out += "drawbridge_admission_sources_tracked " + std::to_string(tracked_.load()) + "\n";
  metric("drawbridge_admission_sources_forgotten_total", "counter",
         "Idle sources dropped from the full table before their rate buckets had refilled.");
  out += "drawbridge_admission_sources_forgotten_total " + std::to_string(forgotten_.load()) +
         "\n";
  return out;
}

}  // namespace drawbridge::admission
