#include "fleet/node_registry.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <fstream>

namespace drawbridge::fleet {

namespace {

using json = nlohmann::json;

// After a write, the next one waits at least this long even when touched, so that a burst of
// Touch() calls becomes one write.
constexpr std::chrono::milliseconds kMinGap{100};

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

bool ReadInt(const json& j, const char* field, int64_t* out) {
  if (!j.contains(field)) return true;
  if (!j[field].is_number_integer()) return false;
  *out = j[field].get<int64_t>();
  return true;
}

bool ReadString(const json& j, const char* field, std::string* out) {
  if (!j.contains(field)) return true;
  if (!j[field].is_string()) return false;
  *out = j[field].get<std::string>();
  return true;
}

bool ValidPort(int64_t port) { return port >= 0 && port <= 65535; }

}  // namespace

json ToJson(const NodeInfo& node) {
  json errors = json::object();
  for (const auto& [port, error] : node.port_errors) errors[std::to_string(port)] = error;
  return {{"name", node.name},
          {"id", node.id},
          {"host", node.host},
          {"pid", node.pid},
          {"peer", node.peer},
          {"started", node.started},
          {"last_seen", node.last_seen},
          {"applied_revision", node.applied_revision},
          {"store_healthy", node.store_healthy},
          {"store_error", node.store_error},
          {"listening", node.listening},
          {"port_errors", std::move(errors)}};
}

base::Result<NodeInfo> NodeFromJson(const json& j) {
  auto bad = [](const std::string& what) {
    return base::Status::InvalidArgument("node record: " + what);
  };
  if (!j.is_object()) return bad("not a JSON object");
  NodeInfo node;
  if (!j.contains("name") || !ReadString(j, "name", &node.name) || node.name.empty()) {
    return bad("no name");
  }
  int64_t id = 0;
  if (!ReadInt(j, "id", &id) || id < 0 || id > 255) return bad("id is not 0..255");
  node.id = static_cast<int>(id);
  if (!ReadString(j, "host", &node.host) || !ReadInt(j, "pid", &node.pid) ||
      !ReadString(j, "peer", &node.peer) || !ReadInt(j, "started", &node.started) ||
      !ReadInt(j, "last_seen", &node.last_seen) ||
      !ReadInt(j, "applied_revision", &node.applied_revision) ||
      !ReadString(j, "store_error", &node.store_error)) {
    return bad("a field of the wrong type");
  }
  if (j.contains("store_healthy")) {
    if (!j["store_healthy"].is_boolean()) return bad("store_healthy is not a boolean");
    node.store_healthy = j["store_healthy"].get<bool>();
  }
  if (j.contains("listening")) {
    if (!j["listening"].is_array()) return bad("listening is not a list");
    for (const auto& port : j["listening"]) {
      if (!port.is_number_integer() || !ValidPort(port.get<int64_t>())) {
        return bad("listening holds something other than a port");
      }
      node.listening.push_back(port.get<int>());
    }
  }
  if (j.contains("port_errors")) {
    if (!j["port_errors"].is_object()) return bad("port_errors is not an object");
    for (const auto& [key, error] : j["port_errors"].items()) {
      int64_t port = 0;
      bool digits = !key.empty() && key.size() <= 5 &&
                    std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (digits) port = std::stoll(key);
      if (!digits || !ValidPort(port) || !error.is_string()) {
        return bad("port_errors holds something other than port: error");
      }
      node.port_errors[static_cast<int>(port)] = error.get<std::string>();
    }
  }
  return node;
}

std::string HostId(const std::string& machine_id_path) {
  std::ifstream in(machine_id_path);
  std::string line;
  if (in && std::getline(in, line)) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t')) {
      line.pop_back();
    }
    if (!line.empty()) return line;
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

NodeRegistry::NodeRegistry(store::Store* store, std::function<NodeInfo()> self,
                           std::chrono::milliseconds interval)
    : store_(store), self_(std::move(self)), interval_(interval) {}

NodeRegistry::~NodeRegistry() { Stop(); }

void NodeRegistry::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void NodeRegistry::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NodeRegistry::Touch() {
  {
    std::lock_guard lock(mu_);
    touched_ = true;
  }
  cv_.notify_all();
}

NodeInfo NodeRegistry::Self() const {
  NodeInfo self = self_();
  self.last_seen = Now();
  return self;
}

void NodeRegistry::Write() {
  NodeInfo self = Self();
  if (self.name.empty()) return;
  // A failure (store unreachable) is not logged here: the store's health says so, and the next
  // beat retries.
  (void)store_->Commit({{}, {store::Op::Put(kNodePrefix + self.name, ToJson(self).dump())}});
}

void NodeRegistry::Loop() {
  pthread_setname_np(pthread_self(), "heartbeat");
  std::unique_lock lock(mu_);
  while (!stop_) {
    touched_ = false;
    lock.unlock();
    Write();
    lock.lock();
    auto next = std::chrono::steady_clock::now() + interval_;
    if (cv_.wait_for(lock, kMinGap, [this] { return stop_; })) break;
    cv_.wait_until(lock, next, [this] { return stop_ || touched_; });
  }
}

std::vector<NodeInfo> NodeRegistry::List() {
  NodeInfo self = Self();
  std::vector<NodeInfo> nodes;
  auto records = store_->List(kNodePrefix);
  if (records.ok()) {
    for (const auto& kv : *records) {
      json j = json::parse(kv.value, nullptr, false);
      auto node = NodeFromJson(j);
      if (!node.ok() || node->name == self.name) continue;
      nodes.push_back(std::move(*node));
    }
  }
  nodes.push_back(std::move(self));
  std::sort(nodes.begin(), nodes.end(),
            [](const NodeInfo& a, const NodeInfo& b) { return a.name < b.name; });
  return nodes;
}

}  // namespace drawbridge::fleet
