// One node of a fleet (`serve --store etcd://...`, docs/fleet.md): what the daemon does besides
// the SQLite path before its control plane starts, and this node's part in the fleet afterwards.
//
// Open(), in this order, each step stopping the start with a message that names what failed:
//   1. the fleet secret (fleet/secret.h) and the etcd password, each a file only its owner reads;
//   2. the store: EtcdStore (its mirror cached in <data-dir>/store-cache.json, so that a node
//      restarted while etcd is down serves its last applied state), under a SealedStore that
//      encrypts the certificates' and the CA's keys (certs/, ca/) with the secret's seal key;
//   3. the fleet check (a node with another secret is refused before it serves anything);
//   4. the node id (1..255, in the cancel keys the edge hands out);
//   5. the fleet's CA into <data-dir>/ca, so tls::EnsureCa returns it.
// Afterwards the node registry's heartbeat publishes this node's record (nodes/<name>) with the
// live values the daemon gives it, and MayShare() decides, from the records, whether a public
// port another socket serves belongs to a node of this fleet on this host (net::ServerOptions::
// may_share).
//
// Threads: Open(), StartRegistry() and the destructor on main; store(), Nodes(), Touch() and
// MayShare() from any thread (the admin API's, the publisher's, the edge's SyncListeners).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "daemon/daemon.h"
#include "daemon/fleet_flags.h"
#include "fleet/node_registry.h"
#include "fleet/secret.h"
#include "store/store.h"

namespace drawbridge::daemon {

// Keys under these prefixes change often and serve nobody's routes: their changes do not wake
// the store's watchers (the publisher). nodes/: heartbeats; requests/: Idempotency-Key records.
inline const std::vector<std::string> kQuietPrefixes = {"nodes/", "requests/"};

class FleetNode {
 public:
  // `choice` from CheckFleetFlags() (etcd). `data_dir` exists and is this daemon's (locked).
  static base::Result<std::unique_ptr<FleetNode>> Open(const Flags& f, const StoreChoice& choice,
                                                       const std::string& data_dir);
  ~FleetNode();  // stops the heartbeat; the node's record stays, its last_seen ages
  FleetNode(const FleetNode&) = delete;
  FleetNode& operator=(const FleetNode&) = delete;

  store::Store* store() const { return store_.get(); }
  const fleet::FleetKeys& keys() const { return keys_; }
  int node_id() const { return node_id_; }
  const std::string& name() const { return name_; }

  // Starts the heartbeat; `self` gives this node's record with live values (name, id, host and
  // pid are filled in here when `self` leaves them empty). Once.
  void StartRegistry(std::function<fleet::NodeInfo()> self);
  // Stops the heartbeat (before whatever `self` reads goes away). Idempotent.
  void StopRegistry();
  // This node's ports changed: its record is written soon.
  void Touch();
  // Every node's record (this node's live).
  std::vector<fleet::NodeInfo> Nodes();
  // True when a live node of this fleet on this host, other than this process, lists `port` as
  // listening in its record; waits up to 2 s for such a record while another live node of this
  // fleet runs on this host (it may have opened the port a moment ago).
  bool MayShare(int port);

 private:
  FleetNode() = default;
  // One look at the records: shared? `*neighbour` is set when another live node of this fleet
  // runs on this host.
  bool SharedBy(int port, bool* neighbour);

  std::unique_ptr<store::Store> store_;
  fleet::FleetKeys keys_;
  int node_id_ = 0;
  std::string name_;
  std::string host_;
  std::unique_ptr<fleet::NodeRegistry> registry_;  // set and reset by the main thread only
  // The same registry for the other threads (edge loops forwarding cancels, the publisher):
  // published once it has started, so they see none or a whole one.
  std::atomic<fleet::NodeRegistry*> running_{nullptr};
};

// True if a process with this pid exists on this host (it may be another user's).
bool PidAlive(int64_t pid);

}  // namespace drawbridge::daemon
