// The fleet's list of nodes: each node writes its own record `nodes/<name>` (a heartbeat) and
// reads everyone's, for `drawbridge nodes list`, status, and the edge's decision whether a busy
// public port may be shared (only with a live node of this fleet on this host that lists it).
//
// Why a heartbeat rather than a lease: a lease would make a node's record vanish when etcd is
// unreachable, exactly when operators need to see it; the record instead carries last_seen, and
// readers judge staleness. The store is told (EtcdOptions::quiet_prefixes) that changes under
// nodes/ do not wake its watchers, so heartbeats do not rebuild the routes.
//
// Threads: construction, Start() and Stop() on one thread (main). The heartbeat runs on the
// "heartbeat" thread it starts; Touch() and List() may be called from any thread. `self` is
// called on the heartbeat thread and on List()'s caller, so it must be thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "store/store.h"

namespace drawbridge::fleet {

inline constexpr const char* kNodePrefix = "nodes/";

struct NodeInfo {
  std::string name;
  int id = 0;
  std::string host;  // HostId(): which machine it runs on
  int64_t pid = 0;
  std::string peer;  // "host:port" of the node channel (UDP)
  int64_t started = 0, last_seen = 0;  // unix seconds
  int64_t applied_revision = 0;
  bool store_healthy = true;
  std::string store_error;
  std::vector<int> listening;              // public ports it serves
  std::map<int, std::string> port_errors;  // public ports it could not open, and why
};

nlohmann::json ToJson(const NodeInfo& node);
// kInvalidArgument when `j` is not a node record (not an object, no name, a field of the wrong
// type); fields that are absent keep their defaults.
base::Result<NodeInfo> NodeFromJson(const nlohmann::json& j);

// What tells this machine apart from others: the first line of `machine_id_path`
// (/etc/machine-id) if it can be read and is not empty, else the host name.
std::string HostId(const std::string& machine_id_path = "/etc/machine-id");

class NodeRegistry {
 public:
  // `self` gives this node's record with live values; the registry sets last_seen.
  NodeRegistry(store::Store* store, std::function<NodeInfo()> self,
               std::chrono::milliseconds interval = std::chrono::seconds(2));
  ~NodeRegistry();
  NodeRegistry(const NodeRegistry&) = delete;
  NodeRegistry& operator=(const NodeRegistry&) = delete;

  // Writes the record at once, then every `interval`. A failed write (store unreachable) is
  // retried at the next beat.
  void Start();
  // Returns promptly (it does not wait out the interval); the record stays in the store.
  void Stop();
  // Asks for a write soon (this node's ports changed).
  void Touch();

  // Every node record in the store, by name; this node's own replaced by self() (so it is live
  // even while the store is unreachable). Records that do not parse are left out.
  std::vector<NodeInfo> List();

 private:
  void Loop();
  void Write();
  NodeInfo Self() const;

  store::Store* const store_;
  const std::function<NodeInfo()> self_;
  const std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool touched_ = false;
  std::thread thread_;
};

}  // namespace drawbridge::fleet
