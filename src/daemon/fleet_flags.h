// The fleet flags of `drawbridge serve` (--store, --node, --fleet-secret-file, --etcd-*,
// --peer-listen), judged before anything is created: a combination that cannot work (etcd
// without the fleet secret, a TLS certificate without its key, an etcd flag without etcd) is one
// message naming the flags, and the daemon exits 1 instead of starting half a node. Files are
// not read here (fleet_node.h reads them); only the host name is, for the default node name.
// Pure otherwise; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "daemon/daemon.h"

namespace drawbridge::daemon {

struct StoreChoice {
  bool etcd = false;                   // false: SQLite in the data dir
  std::vector<std::string> endpoints;  // etcd's "host:port", in the order given
  std::string prefix = "/drawbridge/";  // etcd's key prefix
  std::string node;                    // this node's name: --node, or the default
};

// kInvalidArgument, with a message naming the flag, for anything wrong.
base::Result<StoreChoice> CheckFleetFlags(const Flags& f);

// A node name is one DNS label in lower case: 1-63 of a-z, 0-9 and '-', not starting or ending
// with '-' (it names the node's record in the store and its row in `nodes list`).
bool IsNodeName(std::string_view name);

// The host name's first label in lower case ("Edge-1.example.com" -> "edge-1"); "" when that is
// not a node name.
std::string DefaultNodeName();

}  // namespace drawbridge::daemon
