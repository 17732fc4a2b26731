// dns_test_server: serves a fixed dns::Zone from a JSON file, for tests/integration/test_dns.py.
//
//   dns_test_server --zone ZONE.json [--address 127.0.0.1] [--port 0] [--idle-ms 10000]
//                   [--max-tcp 256]
//
// ZONE.json has the fields of dns::Zone: {"domain": ..., "ns_name": ..., "ns_addresses": [...],
// "serial": N, "ttl": N, "public_ips": {app: [ip, ...]}, "internal_ips": {app: [ip, ...]}}.
// Prints "ready <port>" once both sockets are bound. SIGHUP re-reads the file and prints
// "reloaded <serial>" (a bad file prints "reload failed: ..." and keeps the old zone); SIGTERM
// or SIGINT stops it.
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "dns/server.h"

namespace {

using drawbridge::dns::Zone;

std::shared_ptr<const Zone> LoadZone(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read " + path;
    return nullptr;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *error = path + " is not a JSON object";
    return nullptr;
  }
  auto z = std::make_shared<Zone>();
  try {
    z->domain = j.value("domain", "");
    z->ns_name = j.value("ns_name", "");
    z->ns_addresses = j.value("ns_addresses", std::vector<std::string>{});
    z->serial = j.value("serial", 1u);
    z->ttl = j.value("ttl", 60u);
    using Map = std::map<std::string, std::vector<std::string>>;
    z->public_ips = j.value("public_ips", Map{});
    z->internal_ips = j.value("internal_ips", Map{});
  } catch (const nlohmann::json::exception& e) {
    *error = path + ": " + e.what();
    return nullptr;
  }
  return z;
}

}  // namespace

int main(int argc, char** argv) {
  std::string zone_path, address = "127.0.0.1";
  int port = 0;
  drawbridge::dns::ServerOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--zone") {
      zone_path = value;
    } else if (flag == "--address") {
      address = value;
    } else if (flag == "--port") {
      port = std::atoi(value.c_str());
    } else if (flag == "--idle-ms") {
      options.tcp_idle_timeout = std::chrono::milliseconds(std::atoi(value.c_str()));
    } else if (flag == "--max-tcp") {
      options.max_tcp_connections = std::atoi(value.c_str());
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (zone_path.empty() || argc % 2 == 0) {
    std::fprintf(stderr,
                 "usage: %s --zone ZONE.json [--address A] [--port P] [--idle-ms MS] "
                 "[--max-tcp N]\n",
                 argv[0]);
    return 2;
  }
  // stdout carries only "ready" and "reloaded" lines; logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("dns_test_server"));
  std::string error;
  std::shared_ptr<const Zone> zone = LoadZone(zone_path, &error);
  if (!zone) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::mutex mu;

  // Signals are taken with sigwait() on this thread; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  drawbridge::dns::Server server(
      [&]() {
        std::lock_guard lock(mu);
        return zone;
      },
      options);
  drawbridge::base::Status s = server.Start(address, port);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  std::printf("ready %d\n", server.udp_port());
  std::fflush(stdout);
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig != SIGHUP) break;
    auto fresh = LoadZone(zone_path, &error);
    if (!fresh) {
      std::printf("reload failed: %s\n", error.c_str());
    } else {
      std::lock_guard lock(mu);
      zone = fresh;
      std::printf("reloaded %u\n", zone->serial);
    }
    std::fflush(stdout);
  }
  server.Stop();
  return 0;
}
