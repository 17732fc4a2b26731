// `drawbridge serve`: wires the store, the control plane, the admin API, the certificates and
// the edge together, and runs until SIGTERM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace drawbridge::daemon {

struct Flags {
  // Control-plane mode (the default).
  std::string data_dir;  // empty: DefaultDataDir()
  int api_port = 4280;   // 0: Unix socket only
  std::string domain = "drawbridge.test";
  std::string v4_pool = "127.0.10.0/24";
  // A v4 pool outside 127.0.0.0/8 is routed to lo for the whole host: only when asked for.
  bool route_v4_pool = false;
  std::string v6_pool = "fd5b:d8e0:7a1f::/64";
  int dns_port = 53;  // the authoritative DNS server on [::] (UDP and TCP); 0: off
  // How long a released dedicated address stays out of allocation (plane/ips.h); 0: not at all.
  int64_t ip_quarantine_s = 24 * 3600;
  // Networks (CIDR) besides loopback whose queries for <app>.internal are answered; every
  // other source gets REFUSED for them (docs/dns.md).
  std::vector<std::string> dns_internal_from;
  // Fleet mode (docs/fleet.md): the store and this node's place in the fleet.
  std::string store_url;          // empty: SQLite in the data dir; etcd://HOST:PORT[,HOST:PORT]
  std::string node;               // empty: this host's name (its first label, lower case)
  std::string fleet_secret_file;  // required with etcd
  std::string etcd_prefix;        // empty: /drawbridge/
  std::string etcd_cacert, etcd_cert, etcd_key;  // TLS to etcd (client certificate)
  std::string etcd_user, etcd_password_file;     // etcd authentication
  std::string peer_listen;        // the node channel's UDP ADDR:PORT; empty: 127.0.0.1:0
  // Static mode: one app from a fly.toml in front of --machine addresses.
  std::string config_path;
  std::vector<std::string> machines;
  // Certificates given by the operator; default: the built-in CA issues them.
  std::vector<std::string> certs;
  std::vector<std::string> keys;

  int threads = 0;
  std::string log_level = "info";
  int handshake_timeout_ms = 10'000;
  int connect_timeout_ms = 5'000;
  int drain_timeout_ms = 30'000;
  // Admission control (docs/connection.md, "Admission"), checked at accept before any TLS or
  // machine work; the defaults are admission::Limits'. 0 turns a per-source cap or rate off.
  int max_connections = 100'000;
  int max_handshakes_in_flight = 4'096;
  int max_connections_per_source = 1'000;
  double tls_handshakes_per_second_per_source = 500;
  double cancels_per_second_per_source = 50;
  // How long a client waits for a machine below its hard_limit before FATAL 53300.
  int hard_limit_wait_ms = 2'000;
};

// /var/lib/drawbridge for root, else $XDG_DATA_HOME/drawbridge or ~/.local/share/drawbridge.
std::string DefaultDataDir();

int Serve(const Flags& flags);

}  // namespace drawbridge::daemon
