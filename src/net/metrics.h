// Counters of one server's data plane (net/server_context.h). Safe from any thread; lock-free
// except the per-app counter, which takes a mutex once per routed connection.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>

#include "fleet/peer_refusal.h"
#include "pg/startup.h"

namespace drawbridge::net {

// Refusals and failures that happen in the network layer, next to pg::RefuseReason.
enum class NetReason {
  kNoRoute,
  kHandshakeTimeout,
  kTlsHandshakeFailed,
  kDirectTlsWithoutAlpn,
  kMachineUnreachable,
  kNoMachines,  // the route's app has no machine at all
  kCancelUnknownKey,
  kClientClosedEarly,
  kNoHealthyMachine,   // no machine of the app is eligible (all failing their checks)
  kNoMachineWithRole,  // none of the role the service's target_session_attrs asks for
  kMachineHardLimit,   // every machine at its hard limit for the whole wait
  kSourceNotAllowed,   // the client's address is outside the app's allowed_sources
  kRoleMismatch,       // the machine's login reported the wrong role for the target
  kCount,
};
const char* NetReasonName(NetReason r);

// A Prometheus histogram of durations with fixed buckets (upper bounds in seconds, ascending,
// at most kMaxBuckets). Lock-free: one atomic increment per bucket hit, and the sum kept in
// microseconds. Rendered cumulative, as Prometheus wants it.
class Histogram {
 public:
  static constexpr size_t kMaxBuckets = 16;
  explicit Histogram(std::span<const double> bounds) : bounds_(bounds) {}
  void Observe(std::chrono::steady_clock::duration d);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // HELP, TYPE, the `_bucket{le=...}` lines, `_sum` and `_count`.
  void Render(std::string* out, const char* name, const char* help) const;

 private:
  std::span<const double> bounds_;
  std::array<std::atomic<uint64_t>, kMaxBuckets + 1> buckets_{};  // the last: above every bound
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_us_{0};
};

// Connections per app, for drawbridge_app_connections_total{app}: at most kMaxApps apps get a
// label of their own, the rest count under app="other", so a node serving many apps cannot
// grow /metrics without bound.
class AppCounter {
 public:
  static constexpr size_t kMaxApps = 1000;
  void Count(const std::string& app);
  uint64_t Get(const std::string& app) const;  // "other": the sum beyond kMaxApps
  void Render(std::string* out) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> counts_;
  uint64_t other_ = 0;
};

class Metrics {
 public:
  void Refused(pg::RefuseReason r) { pg_[static_cast<size_t>(r)]++; }
  void Failed(NetReason r) { net_[static_cast<size_t>(r)]++; }
  uint64_t Failures(NetReason r) const { return net_[static_cast<size_t>(r)].load(); }
  void PeerRefused(fleet::PeerRefusal r) { peer_refused_[static_cast<size_t>(r)]++; }
  uint64_t PeerRefusals(fleet::PeerRefusal r) const {
    return peer_refused_[static_cast<size_t>(r)].load();
  }
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> closed{0};
  std::atomic<uint64_t> active{0};
  // Cancels this node sent to a machine: from its own clients, and from other nodes.
  std::atomic<uint64_t> cancels_forwarded{0};
  // Fleet mode: cancels whose key names another node, sent to it over the node channel; and
  // cancels received from other nodes (authenticated and fresh: whatever became of them).
  std::atomic<uint64_t> cancels_to_peer{0};
  std::atomic<uint64_t> cancels_from_peer{0};
  std::atomic<uint64_t> accept_errors{0};  // accept() failed: out of descriptors or memory
  // Connections the edge ended (or refused before they reached a machine) because their app
  // no longer holds the address they came to: the address was released or the app destroyed.
  std::atomic<uint64_t> revoked{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};

  // Successful TLS handshakes with clients (the edge's side: first ClientHello byte read to
  // the handshake's end), successful machine connects (resolution included), and relayed
  // sessions (accept to close, for connections that reached the relay).
  Histogram tls_handshake_seconds{kHandshakeBuckets};
  Histogram machine_connect_seconds{kHandshakeBuckets};
  Histogram session_seconds{kSessionBuckets};
  // Connections routed to each app (counted once the app is known).
  AppCounter app_connections;

  // One logfmt line with every counter.
  std::string Summary() const;
  // Prometheus text exposition format (version 0.0.4).
  std::string Prometheus() const;

  static constexpr std::array<double, 13> kHandshakeBuckets{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  static constexpr std::array<double, 12> kSessionBuckets{
      0.01, 0.1, 1, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400};

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(pg::RefuseReason::kCount)> pg_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(NetReason::kCount)> net_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(fleet::PeerRefusal::kCount)>
      peer_refused_{};
};

}  // namespace drawbridge::net
