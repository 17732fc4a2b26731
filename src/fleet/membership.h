// Joining a fleet: proving this node holds the fleet's secret, and getting the node's small
// number (its id) that the edge writes into every cancel key it hands out, so that a cancel
// landing on another node can be sent to the node that holds the session.
//
// The fleet check: the store's `fleet/check` holds a MAC under the secret's check subkey (never
// the secret, nor a key that could decrypt or forge anything). The first node writes it
// (compare-and-set: absent); every later node computes its own and compares. A node started
// with another secret would otherwise read certificates it cannot decrypt and hand out cancel
// keys the others refuse; it is stopped before it serves anything.
//
// Node ids: 1..255, one per node name, kept for good: the store's `node-ids/<n>` names the node
// that claimed n (compare-and-set: absent), and the node remembers its id in
// `<data-dir>/node.json`, so that it restarts with the same id while etcd is down.
//
// Both run once at start, on the thread that starts the daemon.
#pragma once

#include <string>

#include "base/status.h"
#include "fleet/secret.h"
#include "store/store.h"

namespace drawbridge::fleet {

inline constexpr const char* kFleetCheckKey = "fleet/check";
inline constexpr const char* kNodeIdPrefix = "node-ids/";
inline constexpr int kMaxNodeId = 255;

// OK if the store's fleet check matches `keys` (writing it first when the fleet is new);
// kInvalidArgument naming keys.source when it does not; the store's error when it cannot be read.
base::Status JoinFleet(store::Store* store, const FleetKeys& keys);

// The id of `node` (1..255): the one remembered in <data_dir>/node.json if the store agrees (or
// cannot be reached), else the one the store already gives this node, else the lowest free one,
// claimed. kConflict when all 255 are taken.
base::Result<int> ClaimNodeId(store::Store* store, const std::string& node,
                              const std::string& data_dir);

}  // namespace drawbridge::fleet
