// drawbridge: the daemon (`serve`) and, later, the CLI that talks to it.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "config/fly_toml.h"
#include "control/route_table.h"
#include "net/metrics.h"
#include "net/server.h"
#include "tls/cert_store.h"

namespace {

using namespace drawbridge;

struct ServeFlags {
  std::string config_path;
  std::vector<std::string> machines;
  std::vector<std::string> certs;
  std::vector<std::string> keys;
  int threads = 0;
  std::string log_level = "info";
  int handshake_timeout_ms = 10'000;
  int connect_timeout_ms = 5'000;
  int drain_timeout_ms = 30'000;
};

// Loads the fly.toml and turns it into a route table. Warnings are logged.
base::Result<std::shared_ptr<const control::RouteTable>> LoadRoutes(const ServeFlags& f,
                                                                    uint64_t version) {
  auto parsed = config::LoadFlyToml(f.config_path);
  if (!parsed.ok()) return parsed.status();
  for (const auto& w : parsed->warnings) spdlog::warn("{}", w);
  std::vector<control::Machine> machines;
  for (size_t i = 0; i < f.machines.size(); ++i) {
    machines.push_back({"m" + std::to_string(i + 1), f.machines[i]});
  }
  auto entries = control::RoutesForApp(parsed->config, machines);
  if (entries.empty()) return base::Status::Error(f.config_path + ": no [[services.ports]]");
  return std::make_shared<const control::RouteTable>(version, std::move(entries));
}

base::Result<std::shared_ptr<const tls::CertSet>> LoadCerts(const ServeFlags& f) {
  if (f.certs.size() != f.keys.size()) {
    return base::Status::Error("give one --key for each --cert");
  }
  std::vector<tls::CertFiles> files;
  for (size_t i = 0; i < f.certs.size(); ++i) files.push_back({f.certs[i], f.keys[i]});
  return tls::CertSet::Load(files);
}

int Serve(const ServeFlags& f) {
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  control::RouteTableHolder routes;
  tls::CertStore certs;
  uint64_t version = 1;
  auto table = LoadRoutes(f, version);
  if (!table.ok()) {
    spdlog::critical("{}", table.message());
    return 1;
  }
  auto cert_set = LoadCerts(f);
  if (!cert_set.ok()) {
    spdlog::critical("certificates: {}", cert_set.message());
    return 1;
  }
  routes.Swap(*table);
  certs.Swap(*cert_set);

  net::ServerOptions options;
  options.threads = f.threads;
  options.limits.handshake_timeout = std::chrono::milliseconds(f.handshake_timeout_ms);
  options.limits.connect_timeout = std::chrono::milliseconds(f.connect_timeout_ms);
  options.limits.drain_timeout = std::chrono::milliseconds(f.drain_timeout_ms);
  net::Server server(options, &routes, &certs);
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  std::fprintf(stderr, "drawbridge: ready\n");
  std::fflush(stderr);
  server.Run([&] {
    // A bad file keeps the previous state serving.
    if (auto t = LoadRoutes(f, version + 1); t.ok()) {
      routes.Swap(*t);
      ++version;
      spdlog::info("routes: version {} applied", version);
    } else {
      spdlog::error("routes not reloaded: {}", t.message());
    }
    if (auto c = LoadCerts(f); c.ok()) {
      certs.Swap(*c);
      spdlog::info("certificates reloaded");
    } else {
      spdlog::error("certificates not reloaded: {}", c.message());
    }
  });
  spdlog::info("{}", net::Metrics::Get().Summary());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt("drawbridge"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");

  CLI::App app{"Drawbridge: a PostgreSQL-aware TLS edge"};
  app.require_subcommand(1);
  ServeFlags f;
  auto* serve = app.add_subcommand("serve", "run the edge");
  serve->add_option("-c,--config", f.config_path, "fly.toml with [[services]]")->required();
  serve->add_option("--machine", f.machines, "address of a machine of the app (repeatable)")
      ->required();
  serve->add_option("--cert", f.certs, "PEM certificate chain (repeatable)")->required();
  serve->add_option("--key", f.keys, "PEM private key, one per --cert")->required();
  serve->add_option("--threads", f.threads, "event loops (default: one per core)");
  serve->add_option("--log-level", f.log_level, "debug, info, warn, error");
  serve->add_option("--handshake-timeout-ms", f.handshake_timeout_ms, "accept to routed startup");
  serve->add_option("--connect-timeout-ms", f.connect_timeout_ms, "per machine connect attempt");
  serve->add_option("--drain-timeout-ms", f.drain_timeout_ms, "SIGTERM to forced close");
  auto* version = app.add_subcommand("version", "print the version");
  CLI11_PARSE(app, argc, argv);
  if (version->parsed()) {
    std::printf("drawbridge 0.1.0\n");
    return 0;
  }
  return Serve(f);
}
