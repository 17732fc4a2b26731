// The edge's listeners and event loops: one io_context per thread, each with its own
// SO_REUSEPORT listeners on every public port of the route table (IPv4 and IPv6 wildcard), so
// the kernel spreads connections across threads. A connection negotiates on the loop that
// accepted it (net/negotiation.h), then relays on that loop's relay thread (net/session.h)
// until it closes. What the connections share lives in one ServerContext per server.
// Routing happens per connection by its local address, so allocating an address opens no
// socket; only a new public port does.
#pragma once

#include <functional>
#include <memory>

#include "base/status.h"
#include "control/route_table.h"
#include "net/limits.h"
#include "net/metrics.h"
#include "tls/cert_store.h"

namespace drawbridge::net {

struct ServerOptions {
  int threads = 0;  // 0: one per core
  Limits limits;
  ServerVersionObserver on_server_version;
};

class Server {
 public:
  // `routes` and `certs` must outlive the server.
  Server(ServerOptions options, const control::RouteTableHolder* routes,
         const tls::CertStore* certs);
  ~Server();

  // Binds the listeners of the current route table and starts the loops. Fails if an IPv4
  // listener cannot be bound (an IPv6 one that fails is logged and skipped).
  base::Status Start();
  // Opens listeners for new ports and closes those of removed ports; call after a route table
  // swap. Thread-safe.
  base::Status SyncListeners();
  // Blocks until SIGTERM or SIGINT, calling `on_reload` on SIGHUP and `on_tick` (if set) about
  // once a second. Then stops accepting, lets open connections finish up to the drain
  // timeout (or until a second SIGTERM or SIGINT), and stops the loops.
  void Run(const std::function<void()>& on_reload, const std::function<void()>& on_tick = {});

  // This server's counters; thread-safe.
  const Metrics& metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::net
