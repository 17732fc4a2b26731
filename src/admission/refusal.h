// Why admission control refused a connection, a TLS handshake or a cancel request
// (docs/admission.md). The names are the `reason` labels of
// drawbridge_admission_refusals_total and the `reason=` of the connection's log line.
#pragma once

namespace drawbridge::admission {

enum class Refusal {
  kNone,
  kMaxConnections,        // the edge holds max_connections
  kMaxHandshakes,         // max_handshakes_in_flight connections are still negotiating
  kPerSourceConnections,  // the source holds max_connections_per_source
  kTlsHandshakeRate,      // the source's TLS handshakes per second are used up
  kCancelRate,            // the source's cancel requests per second are used up
  kCount,
};

// "max_connections", "max_handshakes", "per_source_connections", "tls_handshake_rate",
// "cancel_rate"; "none" for kNone.
const char* RefusalName(Refusal r);

}  // namespace drawbridge::admission
