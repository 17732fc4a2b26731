// `drawbridge serve`: wires the store, the control plane, the admin API, the certificates and
// the edge together, and runs until SIGTERM.
#pragma once

#include <string>
#include <vector>

namespace drawbridge::daemon {

struct Flags {
  // Control-plane mode (the default).
  std::string data_dir;  // empty: DefaultDataDir()
  int api_port = 4280;   // 0: Unix socket only
  std::string domain = "drawbridge.test";
  std::string v4_pool = "127.0.10.0/24";
  std::string v6_pool = "fd5b:d8e0:7a1f::/64";
  int dns_port = 53;  // the authoritative DNS server on [::] (UDP and TCP); 0: off
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
};

// /var/lib/drawbridge for root, else $XDG_DATA_HOME/drawbridge or ~/.local/share/drawbridge.
std::string DefaultDataDir();

int Serve(const Flags& flags);

}  // namespace drawbridge::daemon
