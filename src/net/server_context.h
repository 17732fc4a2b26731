// What every connection of one Server shares (docs/architecture.md, "net"): the route table,
// address holders and certificates it reads, its limits, and the parts of the server's state
// that connections write: counters, cancel keys, the registry of open connections and the
// health board (machines' health, roles and open sessions). One per
// Server, created before its threads and destroyed after them; every member is thread-safe or
// immutable.
#pragma once

#include <memory>

#include "admission/admission.h"
#include "control/route_table.h"
#include "fleet/cancel_keys.h"
#include "health/board.h"
#include "net/cancel_registry.h"
#include "net/limits.h"
#include "net/live_connections.h"
#include "net/metrics.h"
#include "tls/cert_store.h"

namespace drawbridge::net {

class RelayPool;

struct ServerContext {
  const control::RouteTableHolder* routes = nullptr;
  const tls::CertStore* certs = nullptr;
  // Who holds which address, as the control plane last said (Server::SetAddressHolders); empty
  // in static mode, where nothing is ever released. Connections check it before they dial a
  // machine and as their relay loop adopts them and rechecks them.
  control::AddressHoldersHolder holders;
  Limits limits;
  ServerVersionObserver on_server_version;  // may be empty
  Metrics metrics;
  CancelRegistry cancels;
  // Fleet mode (docs/connection.md, "Cancel requests"); both empty otherwise. The registry
  // issues keys with `cancel_keys` too.
  std::shared_ptr<const fleet::CancelKeys> cancel_keys;
  ForwardCancelFn forward_cancel;
  LiveConnections live;
  // What the edge knows of each machine (docs/health.md): checked by the server's
  // health::Checker, marked by failed connects, told roles by logins and live sessions, and
  // counting the sessions open on each. Connections choose their machine from it.
  health::Board board;
  // Admission control (docs/admission.md): every accepted connection asks it first; its slot
  // travels in the connection's ConnRecord. Limits set by the Server before its threads start.
  admission::Admission admission;
};

// Where a connection accepted by one io thread goes: the server's context and the server's
// relay loops (one pool shared by every io thread; it picks the loop).
struct WorkerContext {
  ServerContext* server = nullptr;
  RelayPool* relays = nullptr;
};

}  // namespace drawbridge::net
