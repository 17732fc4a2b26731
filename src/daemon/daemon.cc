#include "daemon/daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api/admin_server.h"
#include "api/admin_token.h"
#include "config/fly_toml.h"
#include "control/route_table.h"
#include "dns/server.h"
#include "net/local_delivery.h"
#include "net/metrics.h"
#include "net/server.h"
#include "plane/plane.h"
#include "publish/base_certs.h"
#include "publish/publisher.h"
#include "store/store.h"
#include "tls/ca.h"
#include "tls/ca_issuer.h"
#include "tls/cert_store.h"

namespace drawbridge::daemon {

namespace {

net::ServerOptions ServerOptionsFrom(const Flags& f) {
  net::ServerOptions options;
  options.threads = f.threads;
  options.limits.handshake_timeout = std::chrono::milliseconds(f.handshake_timeout_ms);
  options.limits.connect_timeout = std::chrono::milliseconds(f.connect_timeout_ms);
  options.limits.drain_timeout = std::chrono::milliseconds(f.drain_timeout_ms);
  return options;
}

base::Result<std::shared_ptr<const tls::CertSet>> LoadOperatorCerts(const Flags& f) {
  if (f.certs.size() != f.keys.size()) {
    return base::Status::InvalidArgument("give one --key for each --cert");
  }
  std::vector<tls::CertFiles> files;
  for (size_t i = 0; i < f.certs.size(); ++i) files.push_back({f.certs[i], f.keys[i]});
  return tls::CertSet::Load(files);
}

void Ready() {
  std::fprintf(stderr, "drawbridge: ready\n");
  std::fflush(stderr);
}

// ---- static mode: one fly.toml, machines from the command line ----

base::Result<std::shared_ptr<const control::RouteTable>> LoadStaticRoutes(const Flags& f,
                                                                          uint64_t version) {
  auto parsed = config::LoadFlyToml(f.config_path);
  if (!parsed.ok()) return parsed.status();
  for (const auto& w : parsed->warnings) spdlog::warn("{}", w);
  std::vector<control::Machine> machines;
  for (size_t i = 0; i < f.machines.size(); ++i) {
    machines.push_back({"m" + std::to_string(i + 1), f.machines[i]});
  }
  auto entries = control::RoutesForApp(parsed->config, machines);
  if (entries.empty()) {
    return base::Status::InvalidArgument(f.config_path + ": no [[services.ports]]");
  }
  return std::make_shared<const control::RouteTable>(version, std::move(entries));
}

int ServeStatic(const Flags& f) {
  if (f.machines.empty()) {
    spdlog::critical("--config needs at least one --machine");
    return 1;
  }
  if (f.certs.empty()) {
    spdlog::critical("--config needs --cert and --key");
    return 1;
  }
  control::RouteTableHolder routes;
  tls::CertStore certs;
  uint64_t version = 1;
  auto table = LoadStaticRoutes(f, version);
  if (!table.ok()) {
    spdlog::critical("{}", table.message());
    return 1;
  }
  auto cert_set = LoadOperatorCerts(f);
  if (!cert_set.ok()) {
    spdlog::critical("certificates: {}", cert_set.message());
    return 1;
  }
  routes.Swap(*table);
  certs.Swap(*cert_set);
  net::Server server(ServerOptionsFrom(f), &routes, &certs);
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  Ready();
  server.Run([&] {
    // A bad file keeps the previous state serving.
    if (auto t = LoadStaticRoutes(f, version + 1); t.ok()) {
      routes.Swap(*t);
      ++version;
      spdlog::info("routes: version {} applied", version);
    } else {
      spdlog::error("routes not reloaded: {}", t.message());
    }
    if (auto c = LoadOperatorCerts(f); c.ok()) {
      certs.Swap(*c);
      spdlog::info("certificates reloaded");
    } else {
      spdlog::error("certificates not reloaded: {}", c.message());
    }
  });
  spdlog::info("{}", server.metrics().Summary());
  return 0;
}

// ---- control-plane mode ----

base::Status MakeDir(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || ::chmod(path.c_str(), mode) != 0) {
    return base::Status::Internal(path + ": cannot create: " +
                                  (ec ? ec.message() : std::strerror(errno)));
  }
  return {};
}

// How long an admin API request that changed state waits for the change to be served before it
// is answered anyway (logged): publishing takes milliseconds, so this only bounds a stuck one.
constexpr auto kPublishWait = std::chrono::seconds(5);

int ServeControlPlane(const Flags& f) {
  std::string dir = f.data_dir.empty() ? DefaultDataDir() : f.data_dir;
  for (const auto& [path, mode] : {std::pair{dir, 0700}, {dir + "/ca", 0700}, {dir + "/certs", 0700}}) {
    if (auto s = MakeDir(path, mode); !s.ok()) {
      spdlog::critical("{}", s.message());
      return 1;
    }
  }
  auto token = api::EnsureAdminToken(dir + "/admin.token");
  if (!token.ok()) {
    spdlog::critical("{}", token.message());
    return 1;
  }
  auto store = store::OpenSqliteStore(dir + "/state.db");
  if (!store.ok()) {
    spdlog::critical("store: {}", store.message());
    return 1;
  }
  plane::PlaneOptions plane_options;
  plane_options.domain = f.domain;
  plane_options.v4_pool = f.v4_pool;
  plane_options.v6_pool = f.v6_pool;

  auto ca = tls::EnsureCa(dir + "/ca", "Drawbridge CA for " + f.domain);
  if (!ca.ok()) {
    spdlog::critical("CA: {}", ca.message());
    return 1;
  }
  auto base_certs = publish::LoadBaseCerts(f.certs, f.keys, dir + "/certs", *ca, f.domain);
  if (!base_certs.ok()) {
    spdlog::critical("{}", base_certs.message());
    return 1;
  }
  tls::CaCertIssuer issuer(*ca);
  auto control_plane = plane::ControlPlane::Create(store->get(), plane_options, &issuer);
  if (!control_plane.ok()) {
    spdlog::critical("{}", control_plane.message());
    return 1;
  }
  net::MakeLocallyDeliverable((*control_plane)->v4_pool());
  net::MakeLocallyDeliverable((*control_plane)->v6_pool());
  plane::ControlPlane* cp = control_plane->get();
  cp->certificates().RenewDue();

  // Certificates (the operator's or the apex's first, then the store's), the DNS zone and the
  // route table, published on the publisher's thread after each commit.
  publish::Publisher publisher(cp, {f.domain, std::move(*base_certs)});
  if (auto s = publisher.PublishNow(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  net::ServerOptions options = ServerOptionsFrom(f);
  options.on_server_version = [cp](const std::string& app, const std::string& machine,
                                   const std::string& version) {
    if (auto s = cp->releases().ObserveServerVersion(app, machine, version); !s.ok()) {
      spdlog::warn("app {} machine {}: {}", app, machine, s.message());
    }
  };
  net::Server server(options, publisher.routes(), publisher.certs());
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  publisher.Start([&server] {
    if (auto s = server.SyncListeners(); !s.ok()) spdlog::error("listeners: {}", s.message());
  });
  // Its thread calls SyncListeners, which would wait forever on stopped workers: on every way
  // out, the publisher stops before the server does.
  struct StopFirst {
    publish::Publisher* publisher;
    ~StopFirst() { publisher->Stop(); }
  } stop_publisher_first{&publisher};
  dns::Server dns_server([&publisher]() { return publisher.zone(); });
  if (f.dns_port > 0) {
    if (auto s = dns_server.Start("::", f.dns_port); !s.ok()) {
      spdlog::warn("DNS: {}; <app>.{} will not resolve through this daemon", s.message(),
                   f.domain);
    } else {
      spdlog::info("DNS: authoritative for {} and internal on port {} (UDP and TCP)", f.domain,
                   f.dns_port);
    }
  }
  api::ApiContext api_ctx;
  api_ctx.plane = cp;
  api_ctx.token = *token;
  // "Visible at once": a request that changed state is answered once the change is served.
  api_ctx.wait_published = [&publisher] { publisher.WaitForStore(kPublishWait); };
  std::string store_desc = (*store)->Describe();
  api_ctx.status_json = [&]() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    auto table = publisher.routes()->Current();
    const auto& m = server.metrics();
    nlohmann::json j = {{"version", "0.1.0"},
                        {"store", store_desc},
                        {"node", host},
                        {"domain", f.domain},
                        {"routes_version", table ? table->version() : 0},
                        {"ports", table ? table->Ports() : std::vector<int>{}},
                        {"connections", {{"active", m.active.load()}, {"accepted", m.accepted.load()}}}};
    return j.dump();
  };
  api_ctx.metrics_text = [&]() {
    auto table = publisher.routes()->Current();
    return server.metrics().Prometheus() +
           "# HELP drawbridge_routes_version Revision of the route table being served.\n"
           "# TYPE drawbridge_routes_version gauge\n"
           "drawbridge_routes_version " +
           std::to_string(table ? table->version() : 0) + "\n";
  };
  api::AdminServer admin(api_ctx);
  if (auto s = admin.Start(f.api_port, dir + "/admin.sock"); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  spdlog::info("data dir {}, store {}, admin API {}{}, domain {}", dir, store_desc,
               f.api_port > 0 ? "http://127.0.0.1:" + std::to_string(f.api_port) + " and " : "",
               dir + "/admin.sock", f.domain);
  Ready();
  int ticks = 0;
  server.Run([&] { publisher.Refresh(); },
             [&] {
               (*store)->Poll();
               if (++ticks % 60 == 0) {
                 if (int n = cp->certificates().RenewDue(); n > 0) spdlog::info("renewed {} certificates", n);
               }
             });
  admin.Stop();
  publisher.Stop();
  dns_server.Stop();
  spdlog::info("{}", server.metrics().Summary());
  return 0;
}

}  // namespace

std::string DefaultDataDir() {
  if (::geteuid() == 0) return "/var/lib/drawbridge";
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    return std::string(xdg) + "/drawbridge";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/drawbridge";
}

int Serve(const Flags& flags) {
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  return flags.config_path.empty() ? ServeControlPlane(flags) : ServeStatic(flags);
}

}  // namespace drawbridge::daemon
