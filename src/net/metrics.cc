#include "net/metrics.h"

#include <cstdio>

#include "base/prometheus_label.h"

namespace drawbridge::net {

namespace {

// Seconds as Prometheus reads them: "0.0025", "10", "86400".
std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

void Histogram::Observe(std::chrono::steady_clock::duration d) {
  if (d.count() < 0) d = {};
  double seconds = std::chrono::duration<double>(d).count();
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<uint64_t>(
                        std::chrono::duration_cast<std::chrono::microseconds>(d).count()),
                    std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void Histogram::Render(std::string* out, const char* name, const char* help) const {
  std::string n(name);
  *out += "# HELP " + n + " " + help + "\n# TYPE " + n + " histogram\n";
  // Buckets are read one by one while others may still count: each line is cumulative over
  // the values read, and +Inf and _count say the same total.
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    *out += n + "_bucket{le=\"" + Seconds(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += buckets_[bounds_.size()].load(std::memory_order_relaxed);
  *out += n + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  uint64_t us = sum_us_.load(std::memory_order_relaxed);
  char sum[48];
  std::snprintf(sum, sizeof sum, "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
                static_cast<unsigned long long>(us % 1000000));
  *out += n + "_sum " + sum + "\n";
  *out += n + "_count " + std::to_string(cumulative) + "\n";
}

void AppCounter::Count(const std::string& app) {
  std::lock_guard lock(mu_);
  auto it = counts_.find(app);
  if (it != counts_.end()) {
    ++it->second;
  } else if (counts_.size() < kMaxApps) {
    counts_.emplace(app, 1);
  } else {
    ++other_;
  }
}

uint64_t AppCounter::Get(const std::string& app) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(app);
  uint64_t n = it == counts_.end() ? 0 : it->second;
  return app == "other" ? n + other_ : n;
}

void AppCounter::Render(std::string* out) const {
  *out += "# HELP drawbridge_app_connections_total Connections routed to each app (at most 1000 "
          "apps by name, the rest under app=\"other\").\n"
          "# TYPE drawbridge_app_connections_total counter\n";
  std::lock_guard lock(mu_);
  uint64_t other = other_;
  for (const auto& [app, n] : counts_) {
    if (app == "other") {  // an app named "other" shares the overflow's label set
      other += n;
      continue;
    }
    *out += "drawbridge_app_connections_total{app=\"" + base::PrometheusLabelValue(app) +
            "\"} " + std::to_string(n) + "\n";
  }
  if (other > 0) {
    *out += "drawbridge_app_connections_total{app=\"other\"} " + std::to_string(other) + "\n";
  }
}

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
    case NetReason::kNoHealthyMachine: return "no_healthy_machine";
    case NetReason::kNoMachineWithRole: return "no_machine_with_role";
    case NetReason::kMachineHardLimit: return "machine_hard_limit";
    case NetReason::kSourceNotAllowed: return "source_not_allowed";
    case NetReason::kRoleMismatch: return "role_mismatch";
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
  tls_handshake_seconds.Render(&out, "drawbridge_tls_handshake_seconds",
                               "Time of successful TLS handshakes with clients.");
  machine_connect_seconds.Render(&out, "drawbridge_machine_connect_seconds",
                                 "Time of successful connects to machines (name resolution "
                                 "included).");
  session_seconds.Render(&out, "drawbridge_session_seconds",
                         "Duration of relayed sessions, from accept to close.");
  app_connections.Render(&out);
  return out;
}

}  // namespace drawbridge::net
