#include "daemon/daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api/admin_server.h"
#include "api/admin_token.h"
#include "api/idempotency.h"
#include "base/cidr.h"
#include "base/host_name.h"
#include "base/utc_time.h"
#include "config/fly_toml.h"
#include "control/ip_pool.h"
#include "control/route_table.h"
#include "daemon/data_dir_lock.h"
#include "daemon/fleet_flags.h"
#include "daemon/fleet_node.h"
#include "dns/server.h"
#include "fleet/cancel_keys.h"
#include "fleet/node_registry.h"
#include "fleet/peer_channel.h"
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
  options.limits.hard_limit_wait = std::chrono::milliseconds(f.hard_limit_wait_ms);
  options.admission.max_connections = f.max_connections;
  options.admission.max_handshakes_in_flight = f.max_handshakes_in_flight;
  options.admission.max_connections_per_source = f.max_connections_per_source;
  options.admission.tls_handshakes_per_second_per_source = f.tls_handshakes_per_second_per_source;
  options.admission.cancels_per_second_per_source = f.cancels_per_second_per_source;
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
  // Static mode has no status to report a port in: one it cannot open is fatal at start.
  for (const auto& l : server.Listeners()) {
    if (!l.listening) {
      spdlog::critical("port {}: {}", l.port, l.error);
      return 1;
    }
  }
  server.Run(Ready, [&] {
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

// Tells the edge who holds which public address now, so that connections whose app no longer
// holds theirs (released, or the app destroyed) end (net::Server::SetAddressHolders). A read
// that fails keeps the previous view: no connection is ended on a guess.
void PublishAddressHolders(plane::ControlPlane* cp, net::Server* server) {
  int64_t revision = 0;
  auto holders = cp->ips().Holders(&revision);
  if (!holders.ok()) {
    spdlog::warn("address holders not refreshed: {}", holders.message());
    return;
  }
  server->SetAddressHolders(std::make_shared<const control::AddressHolders>(
      static_cast<uint64_t>(revision), std::move(*holders)));
}

// A v4 pool outside 127.0.0.0/8 becomes a local route on lo for the whole host (every program
// on it then reaches those addresses here, not on the network): refused unless asked for.
base::Status CheckV4Pool(const Flags& f) {
  auto pool = control::IpPool::Parse(f.v4_pool);
  if (!pool.ok() || pool->v6() || net::IsLoopbackV4(*pool) || f.route_v4_pool) return {};
  return base::Status::InvalidArgument(
      "--v4-pool " + f.v4_pool +
      " is not inside 127.0.0.0/8: the daemon would route all of it to lo, taking those "
      "addresses off the network for every program on this host. Pass --route-v4-pool to do "
      "so anyway (the route is removed when the daemon exits)");
}

// The flags that the parser cannot judge alone, checked before anything is created; fills
// `dns_options` (loopback may read <app>.internal, and the networks of --dns-internal-from).
base::Status CheckControlPlaneFlags(const Flags& f, dns::ServerOptions* dns_options) {
  if (auto s = CheckV4Pool(f); !s.ok()) return s;
  // Every app's host name, certificate and DNS record ends in it: refused before any is made.
  // Written as stored and compared (lower case, no root dot), so that a certificate's key in
  // the store is the name `certs show` and `certs remove` look up.
  if (!base::IsHostName(f.domain)) {
    return base::Status::InvalidArgument(
        "--domain \"" + f.domain +
        "\" is not a DNS name: labels of 1-63 letters, digits and '-' (not starting or ending "
        "with '-'), separated by dots, at most 253 characters");
  }
  if (base::NormalizeHost(f.domain) != f.domain) {
    return base::Status::InvalidArgument("--domain \"" + f.domain +
                                         "\": write it in lower case and without a trailing "
                                         "dot: " + base::NormalizeHost(f.domain));
  }
  for (const auto& cidr : f.dns_internal_from) {
    auto network = base::ParseCidr(cidr);
    if (!network.ok()) return network.status().WithPrefix("--dns-internal-from: ");
    dns_options->internal_from.push_back(*network);
  }
  return {};
}

// At start: the CA's certificates that serve no one leave the store, and every app with an
// address has the CA's certificate for its name under `domain`.
void TidyCertificates(plane::ControlPlane* cp, const std::string& domain) {
  // The CA's certificates of another --domain, or of apps destroyed before destroy took their
  // certificates along, serve no one: their keys leave the store (the operator's stay).
  if (auto gone = cp->certificates().RemoveOrphanedCaCerts(); !gone.ok()) {
    spdlog::warn("certificates of old hosts not removed: {}", gone.message());
  } else {
    for (const auto& c : *gone) {
      spdlog::info("certificate for {} removed: issued by the built-in CA for no app of {}",
                   c.host, domain);
    }
  }
  // An app with an address has the CA's certificate for <app>.<domain>; after a --domain
  // change (its old one just went) it gets the new name's now, not at its next address.
  if (auto apps = cp->apps().List(); apps.ok()) {
    for (const auto& a : *apps) {
      if (a.ips == 0) continue;
      if (auto issued = cp->certificates().EnsureAppCert(a.name); issued.ok() && *issued) {
        spdlog::info("certificate for {}.{} issued by the built-in CA", a.name, domain);
      }
    }
  }
}

int ServeControlPlane(const Flags& f) {
  dns::ServerOptions dns_options;
  if (auto s = CheckControlPlaneFlags(f, &dns_options); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  auto choice = CheckFleetFlags(f);
  if (!choice.ok()) {
    spdlog::critical("{}", choice.message());
    return 1;
  }
  std::string dir = f.data_dir.empty() ? DefaultDataDir() : f.data_dir;
  for (const auto& [path, mode] : {std::pair{dir, 0700}, {dir + "/ca", 0700}, {dir + "/certs", 0700}}) {
    if (auto s = MakeDir(path, mode); !s.ok()) {
      spdlog::critical("{}", s.message());
      return 1;
    }
  }
  // Before anything else in the data dir is touched; held until this function returns.
  auto lock = DataDirLock::Acquire(dir);
  if (!lock.ok()) {
    spdlog::critical("{}", lock.message());
    return 1;
  }
  auto token = api::EnsureAdminToken(dir + "/admin.token");
  if (!token.ok()) {
    spdlog::critical("{}", token.message());
    return 1;
  }
  // The store: SQLite in the data dir, or (fleet mode) etcd, opened by the fleet node along
  // with the fleet check, the node id and the fleet's CA in <dir>/ca.
  std::unique_ptr<store::Store> own_store;
  std::unique_ptr<FleetNode> fleet_node;
  if (choice->etcd) {
    auto node = FleetNode::Open(f, *choice, dir);
    if (!node.ok()) {
      spdlog::critical("{}", node.message());
      return 1;
    }
    fleet_node = std::move(*node);
    spdlog::info("node {} (id {}) of the fleet in {}", fleet_node->name(),
                 fleet_node->node_id(), fleet_node->store()->Describe());
  } else {
    auto opened = store::OpenSqliteStore(dir + "/state.db");
    if (!opened.ok()) {
      spdlog::critical("store: {}", opened.message());
      return 1;
    }
    own_store = std::move(*opened);
  }
  store::Store* st = fleet_node ? fleet_node->store() : own_store.get();
  // The name in status and nodes list: --node, the host name's first label, else the host name.
  std::string node_name = choice->node;
  if (node_name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node_name = host;
  }
  plane::PlaneOptions plane_options;
  plane_options.domain = f.domain;
  plane_options.v4_pool = f.v4_pool;
  plane_options.v6_pool = f.v6_pool;
  plane_options.ip_quarantine = std::chrono::seconds(f.ip_quarantine_s);

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
  auto control_plane = plane::ControlPlane::Create(st, plane_options, &issuer);
  if (!control_plane.ok()) {
    spdlog::critical("{}", control_plane.message());
    return 1;
  }
  // Destroyed after the server below: the routes this daemon added go once nothing listens.
  net::LocalDelivery local_delivery;
  local_delivery.MakeLocallyDeliverable((*control_plane)->v4_pool());
  local_delivery.MakeLocallyDeliverable((*control_plane)->v6_pool());
  plane::ControlPlane* cp = control_plane->get();
  TidyCertificates(cp, f.domain);
  cp->certificates().RenewDue();

  // Certificates (the operator's or the apex's first, then the store's), the DNS zone and the
  // route table, published on the publisher's thread after each commit.
  publish::Publisher publisher(cp, {f.domain, std::move(*base_certs)});
  if (auto s = publisher.PublishNow(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  net::ServerOptions options = ServerOptionsFrom(f);
  // Ports this daemon serves itself: an app's port that names one is reported, not opened.
  if (f.api_port > 0) options.reserved_ports[f.api_port] = "this daemon's admin API";
  if (f.dns_port > 0) options.reserved_ports[f.dns_port] = "this daemon's DNS server";
  // Fleet mode: a busy public port is joined when a node of this fleet on this host serves it.
  if (fleet_node) {
    options.may_share = [&fleet_node](int port) { return fleet_node->MayShare(port); };
  }
  // Fleet mode: cancel keys that name this node, and the node channel that carries a cancel
  // landing here to the node that holds its session (docs/connection.md, "Cancel requests").
  std::unique_ptr<fleet::PeerChannel> peer_channel;
  if (fleet_node) {
    auto channel = fleet::PeerChannel::Open(f.peer_listen.empty() ? "127.0.0.1:0" : f.peer_listen,
                                            fleet_node->node_id(), fleet_node->keys().peer);
    if (!channel.ok()) {
      spdlog::critical("--peer-listen: {}", channel.message());
      return 1;
    }
    peer_channel = std::move(*channel);
    options.cancel_keys = std::make_shared<const fleet::CancelKeys>(fleet_node->node_id(),
                                                                    fleet_node->keys().cancel);
    options.forward_cancel = [&fleet_node, channel = peer_channel.get()](
                                 int node, const pg::CancelKey& key,
                                 const std::vector<std::string>& apps) {
      auto directory = [&fleet_node](int id) -> std::optional<std::string> {
        for (const auto& n : fleet_node->Nodes()) {
          if (n.id == id) return n.peer;
        }
        return std::nullopt;
      };
      return channel->SendTo(node, directory, key, apps);
    };
  }
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
  // The node channel's thread hands cancels to the server: it stops before the server goes.
  struct StopChannelFirst {
    fleet::PeerChannel* channel;
    ~StopChannelFirst() {
      if (channel) channel->Stop();
    }
  } stop_channel_first{peer_channel.get()};
  if (peer_channel) {
    peer_channel->Start(
        {[&server](fleet::PeerCancel c) {
           server.CancelFromPeer(c.from_node, std::move(c.key), std::move(c.apps));
         },
         [&server](fleet::PeerRefusal why, const std::string&) { server.PeerCancelRefused(why); }});
    spdlog::info("node channel on {} (UDP): cancels landing on other nodes come here",
                 peer_channel->address());
  }

  // This node as `nodes list` shows it, with live values (any thread).
  const int64_t started = static_cast<int64_t>(std::time(nullptr));
  const std::string host_id = fleet::HostId();
  auto self_info = [&, started]() {
    fleet::NodeInfo n;
    n.name = node_name;
    n.id = fleet_node ? fleet_node->node_id() : 0;
    n.host = host_id;
    n.pid = ::getpid();
    if (peer_channel) n.peer = peer_channel->address();
    n.started = started;
    n.last_seen = static_cast<int64_t>(std::time(nullptr));
    n.applied_revision = std::max<int64_t>(0, publisher.published_revision());
    store::StoreHealth health = st->Health();
    n.store_healthy = health.healthy;
    n.store_error = health.error;
    for (const auto& l : server.Listeners()) {
      if (l.listening) {
        n.listening.push_back(l.port);
      } else {
        n.port_errors[l.port] = l.error;
      }
    }
    return n;
  };
  if (fleet_node) fleet_node->StartRegistry(self_info);
  // Its thread reads the server and the publisher: it stops before either goes.
  struct StopRegistryFirst {
    FleetNode* node;
    ~StopRegistryFirst() {
      if (node) node->StopRegistry();
    }
  } stop_registry_first{fleet_node.get()};
  // After the registry exists: the publisher's thread touches it (and loops read it).
  PublishAddressHolders(cp, &server);
  publisher.Start([&server, cp, &fleet_node] {
    server.SyncListeners();
    PublishAddressHolders(cp, &server);
    if (fleet_node) fleet_node->Touch();  // the other nodes learn this node's ports now
  });
  // Its thread calls SyncListeners, which would wait forever on stopped workers: on every way
  // out, the publisher stops before the server does.
  struct StopFirst {
    publish::Publisher* publisher;
    ~StopFirst() { publisher->Stop(); }
  } stop_publisher_first{&publisher};
  dns::Server dns_server([&publisher]() { return publisher.zone(); }, dns_options);
  if (f.dns_port > 0) {
    if (auto s = dns_server.Start("::", f.dns_port); !s.ok()) {
      spdlog::warn("DNS: {}; <app>.{} will not resolve through this daemon", s.message(),
                   f.domain);
    } else {
      std::string from = "loopback";
      for (const auto& cidr : f.dns_internal_from) from += ", " + cidr;
      spdlog::info("DNS: authoritative for {} and internal on port {} (UDP and TCP); internal "
                   "answered to {}",
                   f.domain, f.dns_port, from);
    }
  }
  api::ApiContext api_ctx;
  api_ctx.plane = cp;
  api_ctx.token = *token;
  // "Visible at once": a request that changed state is answered once the change is served.
  api_ctx.wait_published = [&publisher] { publisher.WaitForStore(kPublishWait); };
  api_ctx.port_errors = [&server](const std::vector<int>& ports) {
    std::map<int, std::string> errors;
    for (const auto& l : server.Listeners()) {
      if (!l.listening && std::find(ports.begin(), ports.end(), l.port) != ports.end()) {
        errors[l.port] = l.error;
      }
    }
    return errors;
  };
  api_ctx.requests = std::make_shared<api::RequestRecords>(st);
  // This node's view of the app's machines (each node checks and counts on its own).
  api_ctx.machine_health = [&server](const std::string& app) {
    return server.board().AppStatus(app);
  };
  api_ctx.nodes_json = [&]() {
    nlohmann::json out = nlohmann::json::array();
    auto nodes = fleet_node ? fleet_node->Nodes() : std::vector<fleet::NodeInfo>{self_info()};
    for (const auto& n : nodes) out.push_back(fleet::ToJson(n));
    return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string store_desc = st->Describe();
  // Answers from this process's own state, also while the store cannot be reached.
  api_ctx.status_json = [&]() {
    auto table = publisher.routes()->Current();
    const auto& m = server.metrics();
    store::StoreHealth health = st->Health();
    nlohmann::json j = {{"version", "0.1.0"},
                        {"store", store_desc},
                        {"store_kind", fleet_node ? "etcd" : "sqlite"},
                        {"store_endpoints", st->Endpoints()},
                        {"health", health.healthy ? "ok" : "degraded"},
                        {"degraded", !health.healthy},
                        {"store_error", health.error},
                        {"applied_revision", std::max<int64_t>(0, publisher.published_revision())},
                        {"node", node_name},
                        {"domain", f.domain},
                        {"routes_version", table ? table->version() : 0},
                        {"ports", table ? table->Ports() : std::vector<int>{}},
                        {"connections", {{"active", m.active.load()}, {"accepted", m.accepted.load()}}}};
    nlohmann::json listeners = nlohmann::json::array();
    for (const auto& l : server.Listeners()) {
      nlohmann::json entry = {{"port", l.port},
                              {"state", l.listening ? "listening" : "failed"},
                              {"since", base::UtcText(std::chrono::system_clock::to_time_t(l.since))}};
      if (!l.listening) entry["error"] = l.error;
      listeners.push_back(std::move(entry));
    }
    j["listeners"] = std::move(listeners);
    if (fleet_node) j["node_id"] = fleet_node->node_id();
    return j.dump();
  };
  api_ctx.metrics_text = [&]() {
    auto table = publisher.routes()->Current();
    store::StoreHealth health = st->Health();
    return server.metrics().Prometheus() + server.board().Prometheus() +
           server.admission().Prometheus() +
           "# HELP drawbridge_routes_version Revision of the route table being served.\n"
           "# TYPE drawbridge_routes_version gauge\n"
           "drawbridge_routes_version " +
           std::to_string(table ? table->version() : 0) +
           "\n"
           "# HELP drawbridge_store_healthy 1 while the store is reachable; 0: serving the last "
           "applied state, writes refused.\n"
           "# TYPE drawbridge_store_healthy gauge\n"
           "drawbridge_store_healthy " +
           std::string(health.healthy ? "1" : "0") +
           "\n"
           "# HELP drawbridge_store_applied_revision Store revision of the state being served.\n"
           "# TYPE drawbridge_store_applied_revision gauge\n"
           "drawbridge_store_applied_revision " +
           std::to_string(std::max<int64_t>(0, publisher.published_revision())) + "\n";
  };
  api::AdminServer admin(api_ctx);
  if (auto s = admin.Start(f.api_port, dir + "/admin.sock"); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  spdlog::info("node {}, data dir {}, store {}, admin API {}{}, domain {}", node_name, dir,
               store_desc,
               f.api_port > 0 ? "http://127.0.0.1:" + std::to_string(f.api_port) + " and " : "",
               dir + "/admin.sock", f.domain);
  int ticks = 0;
  server.Run(Ready, [&] { publisher.Refresh(); },
             [&] {
               st->Poll();
               if (++ticks % 60 == 0) {
                 if (int n = cp->certificates().RenewDue(); n > 0) spdlog::info("renewed {} certificates", n);
               }
             });
  admin.Stop();
  publisher.Stop();
  dns_server.Stop();
  local_delivery.RemoveAdded();
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
