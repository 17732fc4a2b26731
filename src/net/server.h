// The edge's listeners and event loops: one io_context per thread, each with its own
// SO_REUSEPORT listeners on every public port of the route table (IPv4 and IPv6 wildcard), so
// the kernel spreads connections across threads. A connection negotiates on the loop that
// accepted it (net/negotiation.h), then relays on that loop's relay thread (net/session.h)
// until it closes. What the connections share lives in one ServerContext per server.
// Routing happens per connection by its local address, so allocating an address opens no
// socket; only a new public port does.
//
// SO_REUSEPORT would also let any other process of the same user join a port silently (the
// kernel then splits its connections between the two), so before a port's listeners open it is
// probed with a socket that does not share (ProbePort() in server.cc, the one place that
// decides): a port that another process serves, or that this process serves otherwise (the
// admin API, DNS), is not opened but reported, per port, by Listeners(), and tried again every
// retry interval while it is wanted. Each change of a port's state is logged once.
//
// The server also owns the node's health board and its checker (health/): the checker's thread
// runs from Start() to the end of Run() (or the destructor), checking every machine of the
// route table; connections choose their machines from the board.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "admission/admission.h"
#include "base/status.h"
#include "control/route_table.h"
#include "fleet/cancel_keys.h"
#include "fleet/peer_refusal.h"
#include "health/board.h"
#include "net/cancel_registry.h"
#include "net/limits.h"
#include "net/metrics.h"
#include "tls/cert_store.h"

namespace drawbridge::net {

struct ServerOptions {
  int threads = 0;  // 0: one per core
  Limits limits;
  ServerVersionObserver on_server_version;
  // Ports this process serves by other means, never opened by the edge: port -> what holds it
  // ("the admin API"), which becomes the port's error.
  std::map<int, std::string> reserved_ports;
  // How often Run() tries again the ports that could not be opened.
  std::chrono::milliseconds retry_interval{5000};
  // Fleet mode: whether a public port that another socket serves may be joined anyway, because
  // a node of this fleet on this host serves it (decided by the daemon from the node records;
  // see ProbePort() in server.cc). Called on the thread of SyncListeners(). Unset: never.
  std::function<bool(int port)> may_share;
  // Fleet mode, cancels (docs/connection.md, "Cancel requests"): the BackendKeyData this node
  // issues names it under the fleet's cancel key, and a CancelRequest whose key names another
  // node goes to `forward_cancel` (net/cancel_registry.h), which sends it over the node
  // channel. Both empty outside a fleet: keys stay plain random ones.
  std::shared_ptr<const fleet::CancelKeys> cancel_keys;
  ForwardCancelFn forward_cancel;
  // Admission control's caps and rates (docs/admission.md), applied before any expensive work.
  admission::Limits admission;
};

// One public port of the route table, as the edge serves it.
struct ListenerState {
  int port = 0;
  bool listening = false;
  std::string error;  // why it is not listening; empty when it is
  std::chrono::system_clock::time_point since;  // when it entered this state
};

class Server {
 public:
  // `routes` and `certs` must outlive the server.
  Server(ServerOptions options, const control::RouteTableHolder* routes,
         const tls::CertStore* certs);
  ~Server();

  // Starts the loops and opens the listeners of the current route table. Fails only if a loop
  // cannot start: a port that cannot be opened is in Listeners() (the caller decides whether
  // that is fatal). An IPv6 listener that fails otherwise than by the port being in use
  // (IPv6 off) is logged and skipped.
  base::Status Start();
  // Opens listeners for new ports (and for those that failed before) and closes those of
  // removed ports; call after a route table swap. Returns once every loop has done so, so
  // Listeners() then tells the outcome. Thread-safe.
  void SyncListeners();
  // Installs the signal handlers, then calls `on_ready` (so that whoever is told the process is
  // ready can stop it with SIGTERM from then on, and every descriptor the idle process holds is
  // open), and blocks until SIGTERM or SIGINT, calling `on_reload` on SIGHUP and `on_tick` (if
  // set) about once a second, and SyncListeners() every retry interval while a port is failed.
  // Then stops accepting, lets open connections finish up to the drain timeout (or until a
  // second SIGTERM or SIGINT), and stops the loops.
  void Run(const std::function<void()>& on_ready, const std::function<void()>& on_reload,
           const std::function<void()>& on_tick = {});

  // Control-plane mode: swaps in who holds which public address (after each route table swap)
  // and has every relay loop recheck its connections, so that those whose app no longer holds
  // the address they came to end now; connections still negotiating check it before they dial
  // a machine (docs/connection.md, "Released addresses and destroyed apps"). Returns at once.
  // Thread-safe.
  void SetAddressHolders(std::shared_ptr<const control::AddressHolders> holders);

  // Fleet mode: a cancel that another node received for a key this node issued, as the node
  // channel (fleet/peer_channel.h) delivers it, authenticated and fresh. Runs on one of the
  // loops like a local cancel: sent to the machine only if a session here holds exactly that
  // key and its app is among `apps`; counted and logged either way. Returns at once.
  // Thread-safe; does nothing once Run() has stopped the loops.
  void CancelFromPeer(int from_node, pg::CancelKey key, std::vector<std::string> apps);
  // Fleet mode: counts a datagram the node channel dropped. Thread-safe.
  void PeerCancelRefused(fleet::PeerRefusal why);

  // The state of every port of the route table, by port. Thread-safe.
  std::vector<ListenerState> Listeners() const;
  // This server's counters; thread-safe.
  const Metrics& metrics() const;
  // The machines' health, roles and open sessions as this node sees them (for the API, the
  // CLI and /metrics); thread-safe.
  const health::Board& board() const;
  // Admission control's counters and gauges (for /metrics); thread-safe.
  const admission::Admission& admission() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::net
