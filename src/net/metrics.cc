#include "net/metrics.h"

namespace drawbridge::net {

const char* NetReasonName(NetReason r) {
  switch (r) {
    case NetReason::kNoRoute: return "no_route";
    case NetReason::kHandshakeTimeout: return "handshake_timeout";
    case NetReason::kTlsHandshakeFailed: return "tls_handshake_failed";
    case NetReason::kDirectTlsWithoutAlpn: return "direct_tls_without_alpn";
    case NetReason::kMachineUnreachable: return "machine_unreachable";
    case NetReason::kCancelUnknownKey: return "cancel_unknown_key";
    case NetReason::kClientClosedEarly: return "client_closed_early";
    case NetReason::kCount: break;
  }
  return "unknown";
}

Metrics& Metrics::Get() {
  static Metrics metrics;
  return metrics;
}

std::string Metrics::Summary() const {
  std::string out = "counters accepted=" + std::to_string(accepted.load()) +
                    " closed=" + std::to_string(closed.load()) +
                    " active=" + std::to_string(active.load()) +
                    " cancels_forwarded=" + std::to_string(cancels_forwarded.load()) +
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
  return out;
}

}  // namespace drawbridge::net
