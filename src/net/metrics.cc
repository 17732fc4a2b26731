#include "net/metrics.h"

namespace drawbridge::net {

const char* NetReasonName(NetReason r) {
  switch (r) {
    case NetReason::kNoRoute: return "no_route";
    case NetReason::kHandshakeTimeout: return "handshake_timeout";
    case NetReason::kTlsHandshakeFailed: return "tls_handshake_failed";
    case NetReason::kDirectTlsWithoutAlpn: return "direct_tls_without_alpn";
    case NetReason::kMachineUnreachable: return "machine_unreachable";
    case NetReason::kNoMachines: return "no_machines";
    case NetReason::kCancelUnknownKey: return "cancel_unknown_key";
    case NetReason::kClientClosedEarly: return "client_closed_early";
    case NetReason::kCount: break;
  }
  return "unknown";
}

std::string Metrics::Summary() const {
  std::string out = "counters accepted=" + std::to_string(accepted.load()) +
                    " closed=" + std::to_string(closed.load()) +
                    " active=" + std::to_string(active.load()) +
                    " cancels_forwarded=" + std::to_string(cancels_forwarded.load()) +
                    " cancels_to_peer=" + std::to_string(cancels_to_peer.load()) +
                    " cancels_from_peer=" + std::to_string(cancels_from_peer.load()) +
                    " accept_errors=" + std::to_string(accept_errors.load()) +
                    " revoked=" + std::to_string(revoked.load()) +
                    " bytes_in=" + std::to_string(bytes_in.load()) +
                    " bytes_out=" + std::to_string(bytes_out.load());
  for (size_t i = 1; i < pg_.size(); ++i) {
    out += std::string(" refused_") + pg::RefuseReasonName(static_cast<pg::RefuseReason>(i)) +
           "=" + std::to_string(pg_[i].load());
  }
  for (size_t i = 0; i < net_.size(); ++i) {
    out += std::string(" failed_") + NetReasonName(static_cast<NetReason>(i)) + "=" +
           std::to_string(net_[i].load());
  }
  for (size_t i = 0; i < peer_refused_.size(); ++i) {
    out += std::string(" peer_refused_") +
           fleet::PeerRefusalName(static_cast<fleet::PeerRefusal>(i)) + "=" +
           std::to_string(peer_refused_[i].load());
  }
  return out;
}

std::string Metrics::Prometheus() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto sample = [&](const std::string& name, uint64_t v) {
    out += name + " " + std::to_string(v) + "\n";
  };
  metric("drawbridge_connections_accepted_total", "counter", "Connections accepted.");
  sample("drawbridge_connections_accepted_total", accepted.load());
  metric("drawbridge_connections_closed_total", "counter", "Connections closed.");
  sample("drawbridge_connections_closed_total", closed.load());
  metric("drawbridge_connections_active", "gauge", "Connections open now.");
  sample("drawbridge_connections_active", active.load());
  metric("drawbridge_cancels_forwarded_total", "counter",
         "Cancel requests forwarded to a machine (from clients, and from other nodes).");
  sample("drawbridge_cancels_forwarded_total", cancels_forwarded.load());
  metric("drawbridge_cancels_to_peer_total", "counter",
         "Cancel requests whose key names another node of the fleet, sent to that node.");
  sample("drawbridge_cancels_to_peer_total", cancels_to_peer.load());
  metric("drawbridge_cancels_from_peer_total", "counter",
         "Cancel requests received from other nodes of the fleet (authenticated, fresh).");
  sample("drawbridge_cancels_from_peer_total", cancels_from_peer.load());
  metric("drawbridge_peer_cancels_refused_total", "counter",
         "Cancel requests from other nodes (or datagrams claiming to be) that went nowhere, by "
         "reason.");
  for (size_t i = 0; i < peer_refused_.size(); ++i) {
    sample(std::string("drawbridge_peer_cancels_refused_total{reason=\"") +
               fleet::PeerRefusalName(static_cast<fleet::PeerRefusal>(i)) + "\"}",
           peer_refused_[i].load());
  }
  metric("drawbridge_accept_errors_total", "counter",
         "accept() failures (out of descriptors or memory); each pauses that listener 100 ms.");
  sample("drawbridge_accept_errors_total", accept_errors.load());
  metric("drawbridge_connections_revoked_total", "counter",
         "Connections ended because their app no longer holds the address they came to "
         "(address released or app destroyed).");
  sample("drawbridge_connections_revoked_total", revoked.load());
  metric("drawbridge_bytes_total", "counter", "Bytes relayed, by direction (of closed connections).");
  sample("drawbridge_bytes_total{direction=\"client_to_machine\"}", bytes_in.load());
  sample("drawbridge_bytes_total{direction=\"machine_to_client\"}", bytes_out.load());
  metric("drawbridge_refusals_total", "counter",
         "Connections refused during the Postgres startup, by reason.");
  for (size_t i = 1; i < pg_.size(); ++i) {
    sample(std::string("drawbridge_refusals_total{reason=\"") +
               pg::RefuseReasonName(static_cast<pg::RefuseReason>(i)) + "\"}",
           pg_[i].load());
  }
  metric("drawbridge_failures_total", "counter", "Connections that failed in the edge, by reason.");
  for (size_t i = 0; i < net_.size(); ++i) {
    sample(std::string("drawbridge_failures_total{reason=\"") +
               NetReasonName(static_cast<NetReason>(i)) + "\"}",
           net_[i].load());
  }
  return out;
}

}  // namespace drawbridge::net
