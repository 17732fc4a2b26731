#include "daemon/fleet_node.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "fleet/membership.h"
#include "fleet/shared_ca.h"
#include "store/etcd_store.h"
#include "store/sealed_store.h"

namespace drawbridge::daemon {

namespace {

using base::Status;

// The etcd user's password: the file's first line. Refused, like the fleet secret, when group
// or others may read it.
base::Result<std::string> ReadPasswordFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::InvalidArgument("--etcd-password-file " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & 077) != 0) {
    return Status::InvalidArgument("--etcd-password-file " + path +
                                   ": group or others may read it; chmod 600 " + path);
  }
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return Status::InvalidArgument("--etcd-password-file " + path + ": cannot read it or empty");
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) return Status::InvalidArgument("--etcd-password-file " + path + ": empty");
  return line;
}

}  // namespace

bool PidAlive(int64_t pid) {
  if (pid <= 0 || pid > INT32_MAX) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

base::Result<std::unique_ptr<FleetNode>> FleetNode::Open(const Flags& f, const StoreChoice& choice,
                                                         const std::string& data_dir) {
  std::unique_ptr<FleetNode> node(new FleetNode());
  node->name_ = choice.node;
  node->host_ = fleet::HostId();
  auto keys = fleet::LoadFleetSecret(f.fleet_secret_file);
  if (!keys.ok()) return keys.status().WithPrefix("--fleet-secret-file: ");
  node->keys_ = std::move(*keys);

  store::EtcdOptions options;
  options.endpoints = choice.endpoints;
  options.prefix = choice.prefix;
  options.ca_file = f.etcd_cacert;
  options.cert_file = f.etcd_cert;
  options.key_file = f.etcd_key;
  options.user = f.etcd_user;
  if (!f.etcd_password_file.empty()) {
    auto password = ReadPasswordFile(f.etcd_password_file);
    if (!password.ok()) return password.status();
    options.password = std::move(*password);
  }
  options.cache_path = data_dir + "/store-cache.json";
  options.writer = choice.node;
  options.quiet_prefixes = kQuietPrefixes;
  auto etcd = store::OpenEtcdStore(std::move(options));
  if (!etcd.ok()) return etcd.status().WithPrefix("store: ");
  node->store_ = store::NewSealedStore(std::move(*etcd), node->keys_.seal, {"certs/", "ca/"});

  if (auto s = fleet::JoinFleet(node->store_.get(), node->keys_); !s.ok()) return s;
  auto id = fleet::ClaimNodeId(node->store_.get(), node->name_, data_dir);
  if (!id.ok()) return id.status().WithPrefix("node id: ");
  node->node_id_ = *id;
  if (auto s = fleet::ShareCa(node->store_.get(), data_dir + "/ca",
                              "Drawbridge CA for " + f.domain);
      !s.ok()) {
    return s.WithPrefix("CA: ");
  }
  return node;
}

FleetNode::~FleetNode() { StopRegistry(); }

void FleetNode::StopRegistry() {
  if (registry_) registry_->Stop();
}

void FleetNode::StartRegistry(std::function<fleet::NodeInfo()> self) {
  auto filled = [this, self = std::move(self)] {
    fleet::NodeInfo n = self ? self() : fleet::NodeInfo{};
    if (n.name.empty()) n.name = name_;
    if (n.id == 0) n.id = node_id_;
    if (n.host.empty()) n.host = host_;
    if (n.pid == 0) n.pid = ::getpid();
    return n;
  };
  registry_ = std::make_unique<fleet::NodeRegistry>(store_.get(), std::move(filled));
  registry_->Start();
  running_.store(registry_.get(), std::memory_order_release);
}

void FleetNode::Touch() {
  if (auto* r = running_.load(std::memory_order_acquire)) r->Touch();
}

std::vector<fleet::NodeInfo> FleetNode::Nodes() {
  auto* r = running_.load(std::memory_order_acquire);
  return r ? r->List() : std::vector<fleet::NodeInfo>{};
}

bool FleetNode::MayShare(int port) {
  // Nodes that deploy together open a new port at once, each from its own watch, and a node
  // lists the port in its record only after it opened it: a busy port that no record lists yet,
  // while another live node of this fleet runs on this host, is looked at again until that
  // node's next record could have arrived (bounded). With no such node it is refused at once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    bool neighbour = false;
    if (SharedBy(port, &neighbour)) return true;
    if (!neighbour || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool FleetNode::SharedBy(int port, bool* neighbour) {
  auto records = store_->List(fleet::kNodePrefix);
  if (!records.ok()) return false;  // nothing known: not shared on a guess
  const int64_t me = ::getpid();
  for (const auto& kv : *records) {
    auto parsed = nlohmann::json::parse(kv.value, nullptr, false);
    if (parsed.is_discarded()) continue;
    auto n = fleet::NodeFromJson(parsed);
    if (!n.ok() || n->name == name_ || n->host != host_ || n->pid == me) continue;
    if (!PidAlive(n->pid)) continue;
    *neighbour = true;
    if (std::find(n->listening.begin(), n->listening.end(), port) != n->listening.end()) {
      spdlog::info("port {}: served by node {} (pid {}) of this fleet on this host: shared", port,
                   n->name, n->pid);
      return true;
    }
  }
  return false;
}

}  // namespace drawbridge::daemon
