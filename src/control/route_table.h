// The data plane's view of the control plane: which app, service and machines serve a
// connection that arrived on (local address, port). Immutable once built; the control plane
// publishes a new table with RouteTableHolder::Swap and each connection keeps the table it
// started with. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/snapshot.h"
#include "control/types.h"

namespace drawbridge::control {

struct Route {
  std::string app;
  std::string host;          // the app's public name "<app>.<domain>"; empty in static mode
  int public_port = 0;
  int internal_port = 0;
  bool tls = false;          // "tls": terminate TLS, relay plaintext
  bool pg_tls = false;       // "pg_tls": Postgres negotiation, then TLS
  int proxy_proto = 0;       // 0: none; 1 or 2: PROXY header version towards the machine
  TlsOptions tls_options;
  std::vector<Machine> machines;

  std::string HandlerName() const;
};

class RouteTable {
 public:
  // `local_ip` empty in a route means "any local address".
  struct Entry {
    std::string local_ip;
    Route route;
  };

  RouteTable(uint64_t version, std::vector<Entry> entries);

  // The route for a connection that arrived on `local_ip`:`port`; a route bound to that
  // address wins over one for any address. nullptr if none.
  const Route* Find(const std::string& local_ip, int port) const;
  // Every route for `local_ip`:`port`: several when apps share an address (told apart by SNI
  // or the `options` startup parameter), else at most one. Routes bound to the address win
  // over routes for any address.
  std::vector<const Route*> FindAll(const std::string& local_ip, int port) const;
  // Every public port with at least one route, sorted, without duplicates.
  std::vector<int> Ports() const;
  uint64_t version() const { return version_; }

 private:
  uint64_t version_;
  std::vector<Entry> entries_;
};

// Builds the routes of one app served on every local address.
std::vector<RouteTable::Entry> RoutesForApp(const AppConfig& config,
                                            const std::vector<Machine>& machines);

// The table the data plane serves; the control plane swaps in a new one on every change.
using RouteTableHolder = base::Snapshot<RouteTable>;

}  // namespace drawbridge::control
