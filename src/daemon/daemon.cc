#include "daemon/daemon.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include "api/admin_server.h"
#include "base/snapshot.h"
#include "config/fly_toml.h"
#include "control/plane.h"
#include "control/route_table.h"
#include "dns/server.h"
#include "net/metrics.h"
#include "net/server.h"
#include "store/store.h"
#include "tls/ca.h"
#include "tls/cert_store.h"

extern char** environ;

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
  if (f.certs.size() != f.keys.size()) return base::Status::Error("give one --key for each --cert");
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
  if (entries.empty()) return base::Status::Error(f.config_path + ": no [[services.ports]]");
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
  spdlog::info("{}", net::Metrics::Get().Summary());
  return 0;
}

// ---- control-plane mode ----

// The file's bytes; empty if it cannot be read (the certificate loader then says which failed).
std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

base::Status MakeDir(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || ::chmod(path.c_str(), mode) != 0) {
    return base::Status::Error(path + ": cannot create: " + (ec ? ec.message() : std::strerror(errno)));
  }
  return {};
}

// The admin token: created once, 0600, one line of 64 hex digits.
base::Result<std::string> EnsureToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  if (in && std::getline(in, token) && token.size() >= 32) return token;
  unsigned char raw[32];
  RAND_bytes(raw, sizeof raw);
  char hex[65];
  for (int i = 0; i < 32; ++i) std::snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  token.assign(hex, 64);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return base::Status::Error(path + ": cannot write");
  ::fchmod(fd, 0600);
  std::string line = token + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::fsync(fd);
  ::close(fd);
  if (!ok) return base::Status::Error(path + ": cannot write");
  return token;
}

int Run(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Addresses of a pool reach this host's wildcard listeners only if the kernel treats the pool
// as local. 127.0.0.0/8 always is; other pools get a "local" route on lo when we may add one.
void MakeLocallyDeliverable(const control::IpPool& pool) {
  if (!pool.v6() && control::IpPool::Parse("127.0.0.0/8")->Contains(pool.At(0))) {
    spdlog::info("IPv4 pool {} is loopback: locally deliverable", pool.ToString());
    return;
  }
  std::string family = pool.v6() ? "-6" : "-4";
  int rc = Run({"ip", family, "route", "replace", "local", pool.ToString(), "dev", "lo"});
  if (rc == 0) {
    spdlog::info("{} pool {} made locally deliverable (local route on lo)",
                 pool.v6() ? "IPv6" : "IPv4", pool.ToString());
  } else {
    spdlog::warn(
        "{} pool {} is not locally deliverable: adding a local route failed ({}). Addresses "
        "from it will not reach this edge until you run, as root: ip {} route add local {} dev "
        "lo (or route the pool to this host on your network)",
        pool.v6() ? "IPv6" : "IPv4", pool.ToString(),
        rc < 0 ? "the ip command could not run" : "ip exited with " + std::to_string(rc), family,
        pool.ToString());
  }
}

int ServeControlPlane(const Flags& f) {
  std::string dir = f.data_dir.empty() ? DefaultDataDir() : f.data_dir;
  for (const auto& [path, mode] : {std::pair{dir, 0700}, {dir + "/ca", 0700}, {dir + "/certs", 0700}}) {
    if (auto s = MakeDir(path, mode); !s.ok()) {
      spdlog::critical("{}", s.message());
      return 1;
    }
  }
  auto token = EnsureToken(dir + "/admin.token");
  if (!token.ok()) {
    spdlog::critical("{}", token.message());
    return 1;
  }
  auto store = store::OpenSqliteStore(dir + "/state.db");
  if (!store.ok()) {
    spdlog::critical("store: {}", store.message());
    return 1;
  }
  control::PlaneOptions plane_options;
  plane_options.domain = f.domain;
  plane_options.v4_pool = f.v4_pool;
  plane_options.v6_pool = f.v6_pool;

  // Certificates: the operator's (--cert) first, else a default for the zone apex from the
  // built-in CA (deliberately not a wildcard: a name must verify only on its own app); then
  // every certificate in the store (one per app host), rebuilt when the store changes.
  auto ca = tls::EnsureCa(dir + "/ca", "Drawbridge CA for " + f.domain);
  if (!ca.ok()) {
    spdlog::critical("CA: {}", ca.message());
    return 1;
  }
  if (f.certs.size() != f.keys.size()) {
    spdlog::critical("give one --key for each --cert");
    return 1;
  }
  std::vector<tls::CertSet::Pem> base_certs;
  for (size_t i = 0; i < f.certs.size(); ++i) {
    base_certs.push_back({ReadWholeFile(f.certs[i]), ReadWholeFile(f.keys[i])});
    if (auto ctx = tls::NewServerContextFromPem(base_certs.back().cert_pem,
                                                base_certs.back().key_pem);
        !ctx.ok()) {
      spdlog::critical("{} / {}: {}", f.certs[i], f.keys[i], ctx.message());
      return 1;
    }
  }
  if (base_certs.empty()) {
    std::string crt = dir + "/certs/default.crt", key = dir + "/certs/default.key";
    if (::access(crt.c_str(), F_OK) != 0) {
      auto pem = tls::IssueLeaf(*ca, {f.domain}, 825);
      if (!pem.ok()) {
        spdlog::critical("certificate: {}", pem.message());
        return 1;
      }
      if (auto s = tls::WriteFileAtomic(key, pem->key_pem, 0600); !s.ok()) {
        spdlog::critical("{}", s.message());
        return 1;
      }
      if (auto s = tls::WriteFileAtomic(crt, pem->cert_pem, 0644); !s.ok()) {
        spdlog::critical("{}", s.message());
        return 1;
      }
    }
    base_certs.push_back({ReadWholeFile(crt), ReadWholeFile(key)});
  }
  plane_options.ca_dir = dir + "/ca";
  auto plane = control::ControlPlane::Create(store->get(), plane_options);
  if (!plane.ok()) {
    spdlog::critical("{}", plane.message());
    return 1;
  }
  MakeLocallyDeliverable((*plane)->v4_pool());
  MakeLocallyDeliverable((*plane)->v6_pool());
  tls::CertStore certs;

  control::ControlPlane* cp = plane->get();
  cp->RenewDueCerts();
  control::RouteTableHolder routes;
  net::ServerOptions options = ServerOptionsFrom(f);
  options.on_server_version = [cp](const std::string& app, const std::string& machine,
                                   const std::string& version) {
    cp->ObserveServerVersion(app, machine, version);
  };
  net::Server server(options, &routes, &certs);

  base::Snapshot<dns::Zone> zone;
  std::mutex rebuild_mu;
  int64_t certs_revision = -1;
  auto rebuild = [&](bool sync_listeners) {
    std::lock_guard lock(rebuild_mu);
    // Certificates first, so a new route never meets an old certificate set.
    if (auto rev = (*store)->Revision(); rev.ok() && *rev != certs_revision) {
      std::vector<tls::CertSet::Pem> pems = base_certs;
      for (auto& p : cp->CertPems()) pems.push_back({std::move(p.cert_pem), std::move(p.key_pem)});
      std::vector<std::string> errors;
      auto set = tls::CertSet::FromPem(pems, &errors);
      for (const auto& e : errors) spdlog::error("a certificate did not load: {}", e);
      if (set.ok()) {
        certs.Swap(*set);
        certs_revision = *rev;
      } else {
        spdlog::error("certificates not reloaded, the previous set keeps serving: {}",
                      set.message());
      }
    }
    // The DNS zone: visible to the next query, before the API call that changed it returns.
    if (auto data = cp->BuildZoneData(); data.ok()) {
      auto z = std::make_shared<dns::Zone>();
      z->domain = f.domain;
      z->ns_name = "ns1." + f.domain;
      z->serial = static_cast<uint32_t>(data->revision);
      z->public_ips = std::move(data->public_ips);
      z->internal_ips = std::move(data->internal_ips);
      zone.Swap(std::move(z));
    } else {
      spdlog::error("DNS zone not rebuilt: {}", data.message());
    }
    auto table = cp->BuildRouteTable();
    if (!table.ok()) {
      spdlog::error("route table not rebuilt, the previous one keeps serving: {}", table.message());
      return;
    }
    auto current = routes.Current();
    if (current && current->version() == (*table)->version()) return;
    routes.Swap(*table);
    spdlog::info("routes: revision {} applied ({} public ports)", (*table)->version(),
                 (*table)->Ports().size());
    if (sync_listeners) {
      if (auto s = server.SyncListeners(); !s.ok()) spdlog::error("listeners: {}", s.message());
    }
  };
  rebuild(false);
  (*store)->Watch([&](int64_t) { rebuild(true); });

  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  dns::Server dns_server([&]() { return zone.Current(); });
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
  std::string store_desc = (*store)->Describe();
  api_ctx.status_json = [&]() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    auto table = routes.Current();
    auto& m = net::Metrics::Get();
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
    auto table = routes.Current();
    return net::Metrics::Get().Prometheus() +
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
  server.Run([&] { rebuild(true); },
             [&] {
               (*store)->Poll();
               if (++ticks % 60 == 0) {
                 if (int n = cp->RenewDueCerts(); n > 0) spdlog::info("renewed {} certificates", n);
               }
             });
  admin.Stop();
  dns_server.Stop();
  spdlog::info("{}", net::Metrics::Get().Summary());
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
