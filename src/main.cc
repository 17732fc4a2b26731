// drawbridge: `serve` runs the daemon; every other command is the CLI, which talks to the
// daemon's admin API.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "base/parse_int.h"
#include "cli/cli.h"
#include "daemon/daemon.h"

namespace {

// "0", or a whole number followed by s, m, h or d ("90s", "30m", "24h", "7d"): seconds, up to
// 365 days; -1 for anything else.
int64_t ParseDurationSeconds(const std::string& text) {
  if (text == "0") return 0;
  if (text.size() < 2) return -1;
  constexpr std::string_view kUnits = "smhd";
  constexpr int64_t kSeconds[] = {1, 60, 3600, 86400};
  size_t u = kUnits.find(text.back());
  if (u == std::string_view::npos) return -1;
  constexpr int64_t kMax = 365 * 86400;
  auto n = drawbridge::base::ParseInt(std::string_view(text).substr(0, text.size() - 1), 0,
                                      kMax / kSeconds[u]);
  return n.ok() ? *n * kSeconds[u] : -1;
}

// A rate per second, 0 (no limit) to `max`: a finite decimal number. CLI::Range alone would let
// "nan" through (it compares false both ways); worded as CLI::Range words its refusals.
CLI::Validator RateRange(double max) {
  return CLI::Validator(
      [max](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        double v = std::strtod(text.c_str(), &end);
        bool number = !text.empty() && end == text.c_str() + text.size() && errno == 0 &&
                      std::isfinite(v);
        if (number && v >= 0 && v <= max) return "";
        return "Value " + text + " not in range 0 to " + std::to_string(static_cast<int64_t>(max));
      },
      "FLOAT in [0 - " + std::to_string(static_cast<int64_t>(max)) + "]");
}

int ServeMain(int argc, char** argv) {
  using drawbridge::daemon::Flags;
  Flags f;
  CLI::App app{"drawbridge serve: the edge, the control plane and the admin API"};
  app.name("drawbridge serve");
  app.add_option("--data-dir", f.data_dir, "state, CA, token and admin socket")
      ->default_str(drawbridge::daemon::DefaultDataDir());
  app.add_option("--api-port", f.api_port, "admin API on 127.0.0.1 (0: Unix socket only)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--domain", f.domain, "public zone: app NAME is NAME.<domain>")
      ->capture_default_str();
  app.add_option("--v4-pool", f.v4_pool, "public IPv4 pool (outside 127.0.0.0/8: see --route-v4-pool)")
      ->capture_default_str();
  app.add_flag("--route-v4-pool", f.route_v4_pool,
               "allow a --v4-pool outside 127.0.0.0/8: the whole pool is routed to lo on this host "
               "(removed at exit)");
  app.add_option("--v6-pool", f.v6_pool, "public IPv6 pool")->capture_default_str();
  app.add_option("--dns-port", f.dns_port,
                 "authoritative DNS for <domain> and .internal on [::], UDP and TCP (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--dns-internal-from", f.dns_internal_from,
                 "a network (CIDR) besides loopback whose <app>.internal queries are answered "
                 "(repeatable); other sources get REFUSED");
  app.add_option("--store", f.store_url,
                 "where the control plane's state lives: etcd://HOST:PORT[,HOST:PORT...] makes "
                 "this daemon a node of a fleet (default: SQLite in the data dir)");
  app.add_option("--node", f.node,
                 "this node's name in the fleet, a DNS label (default: the host name's first "
                 "label)");
  app.add_option("--fleet-secret-file", f.fleet_secret_file,
                 "the fleet's shared secret (mode 0600; required with --store etcd://)");
  app.add_option("--etcd-prefix", f.etcd_prefix,
                 "the key prefix of this fleet's state in etcd (default /drawbridge/)");
  app.add_option("--etcd-cacert", f.etcd_cacert, "CA certificate that signed etcd's (HTTPS)");
  app.add_option("--etcd-cert", f.etcd_cert, "client certificate for etcd (HTTPS)");
  app.add_option("--etcd-key", f.etcd_key, "client certificate's private key for etcd");
  app.add_option("--etcd-user", f.etcd_user, "etcd user (with --etcd-password-file)");
  app.add_option("--etcd-password-file", f.etcd_password_file,
                 "file holding the etcd user's password (mode 0600)");
  app.add_option("--peer-listen", f.peer_listen,
                 "ADDR:PORT of the UDP channel cancels are forwarded over between nodes "
                 "(default 127.0.0.1:0, any free port)");
  app.add_option("-c,--config", f.config_path,
                 "static mode: serve this fly.toml in front of --machine (no control plane)");
  app.add_option("--machine", f.machines, "static mode: a machine address (repeatable)");
  app.add_option("--cert", f.certs, "PEM certificate chain (repeatable); default: built-in CA");
  app.add_option("--key", f.keys, "PEM private key, one per --cert");
  app.add_option("--threads", f.threads,
                 "io event loops, and the most relay loops the edge may use (it adds them as the "
                 "load needs; default: one per core)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--log-level", f.log_level, "debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  // Up to a day: a timeout is a bound, and 0 or less would close everything at once.
  constexpr int kDayMs = 24 * 3600 * 1000;
  app.add_option("--handshake-timeout-ms", f.handshake_timeout_ms, "accept to routed startup")
      ->capture_default_str()
      ->check(CLI::Range(1, kDayMs));
  app.add_option("--connect-timeout-ms", f.connect_timeout_ms, "per machine connect attempt")
      ->capture_default_str()
      ->check(CLI::Range(1, kDayMs));
  app.add_option("--drain-timeout-ms", f.drain_timeout_ms, "SIGTERM to forced close")
      ->capture_default_str()
      ->check(CLI::Range(0, kDayMs));
  // Admission control: checked at accept, before any TLS or machine work. The upper bounds only
  // refuse typing mistakes: no host holds ten million connections.
  constexpr int kMaxCount = 10'000'000;
  constexpr double kMaxRate = 1'000'000;
  app.add_option("--max-connections", f.max_connections,
                 "connections open at once on this node; a new one beyond is refused at accept")
      ->capture_default_str()
      ->check(CLI::Range(1, kMaxCount));
  app.add_option("--max-handshakes-in-flight", f.max_handshakes_in_flight,
                 "connections still negotiating (TLS, startup, machine connect) at once; a new "
                 "one beyond is refused at accept")
      ->capture_default_str()
      ->check(CLI::Range(1, kMaxCount));
  app.add_option("--max-connections-per-source", f.max_connections_per_source,
                 "connections open at once from one source address (IPv6: one /64); 0: no cap")
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxCount));
  app.add_option("--tls-handshakes-per-second-per-source", f.tls_handshakes_per_second_per_source,
                 "TLS handshakes started per second from one source (a burst of one second's "
                 "worth); charged before any private-key work; 0: no limit")
      ->default_str("500")
      ->check(RateRange(kMaxRate));
  app.add_option("--cancels-per-second-per-source", f.cancels_per_second_per_source,
                 "CancelRequests per second from one source (beyond: dropped); 0: no limit")
      ->default_str("50")
      ->check(RateRange(kMaxRate));
  app.add_option("--hard-limit-wait-ms", f.hard_limit_wait_ms,
                 "how long a client waits while every machine of its app is at its hard_limit "
                 "before FATAL 53300 (0 to 10 minutes)")
      ->capture_default_str()
      ->check(CLI::Range(0, 600'000));
  std::string ip_quarantine = "24h";
  app.add_option("--ip-quarantine", ip_quarantine,
                 "how long a released address is kept from the next allocation: 90s, 30m, 24h, "
                 "7d (up to 365d) or 0 (reusable at once)")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        return ParseDurationSeconds(v) < 0 ? "expected 0 or a duration like 90s, 30m, 24h or 7d "
                                             "(up to 365d)"
                                           : "";
      });
  CLI11_PARSE(app, argc, argv);
  f.ip_quarantine_s = ParseDurationSeconds(ip_quarantine);
  return drawbridge::daemon::Serve(f);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt("drawbridge"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  if (argc >= 2 && std::strcmp(argv[1], "serve") == 0) return ServeMain(argc - 1, argv + 1);
  return drawbridge::cli::Main(argc, argv);
}
