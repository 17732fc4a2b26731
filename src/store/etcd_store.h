// The Store on etcd v3, for a fleet of nodes sharing one control plane (docs/etcd-store.md).
//
// Reads (Get, List, Revision) are served from a Mirror of the whole prefix kept in memory: loaded
// by one range at open, then kept current by a watch stream from the applied revision + 1 on the
// store's own thread. A read never waits for etcd, so a node serves its last applied state while
// etcd is down. A Commit is one etcd transaction: Compare::Absent is "create revision == 0",
// Compare::ModRevision is "mod revision == r", so compare-and-set means what it means on SQLite;
// no lock and no lease is ever held. After a successful commit the call waits (up to 2 s) until
// the mirror has applied it (read-your-writes); after a failed comparison it waits until the
// mirror shows the compared keys as etcd had them, so a retry loop reads fresh data.
//
// When etcd cannot be reached a Commit fails at once (connection refused) or after the request
// timeout with kUnavailable naming the store: "etcd://h:p: unreachable (...); nothing was
// written" ("outcome unknown" when the request was sent but no answer came). The watch stream
// reconnects with a backoff of at most 1 s, resuming from the applied revision; a revision etcd
// compacted meanwhile makes it resync in full. Watchers run on the store's watch thread, for
// every applied batch that changed a key outside the quiet prefixes (the nodes' heartbeats).
//
// The mirror is written to `cache_path` after each applied batch; at open it is loaded, and
// served (degraded) when etcd is unreachable. Without a cache and without etcd, open fails.
//
// Threads: all Store methods are thread-safe; the watch thread ("etcd-watch") is owned by the
// store and joined by its destructor.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace drawbridge::store {

struct EtcdOptions {
  std::vector<std::string> endpoints;   // "host:port", tried in order, sticky on the one that works
  std::string prefix = "/drawbridge/";  // every key lives under it; Store keys are relative
  std::string ca_file, cert_file, key_file;  // TLS (https) when any is set
  std::string user, password;  // etcd auth (token via /v3/auth/authenticate) when user set
  std::string cache_path;      // local copy of the last applied state (mode 0600)
  // Changes only under these do not wake watchers ("nodes/").
  std::vector<std::string> quiet_prefixes;
  std::chrono::milliseconds request_timeout{5000};
  // Names this writer's commit marker, `<prefix>.txn/<writer>` (beside the prefix, not in it) (the node's name in a fleet; empty: a
  // random name per process). See "Writes whose outcome is unknown" in docs/etcd-store.md.
  std::string writer;
};

// "etcd://h:p,h:p" (IPv6 as [::1]:p) -> {"h:p", "h:p"}; kInvalidArgument saying what is wrong.
base::Result<std::vector<std::string>> ParseEtcdUrl(const std::string& url);

base::Result<std::unique_ptr<Store>> OpenEtcdStore(EtcdOptions options);

}  // namespace drawbridge::store
