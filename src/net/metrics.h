// Counters of one server's data plane (net/server_context.h). Lock-free; safe from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
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
  kCount,
};
const char* NetReasonName(NetReason r);

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

  // One logfmt line with every counter.
  std::string Summary() const;
  // Prometheus text exposition format (version 0.0.4).
  std::string Prometheus() const;

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(pg::RefuseReason::kCount)> pg_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(NetReason::kCount)> net_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(fleet::PeerRefusal::kCount)>
      peer_refused_{};
};

}  // namespace drawbridge::net
