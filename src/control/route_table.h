// The data plane's view of the control plane: which app, service and machines serve a
// connection that arrived on (local address, port). Immutable once built; the control plane
// publishes a new table with RouteTableHolder::Swap and each connection keeps the table it
// started with. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/cidr.h"
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
  // On the shared IPv4 address, where a client must name its app (SNI or `app=`) even while
  // only one app is there: an app that leaves must not hand its nameless clients to the next.
  bool shared = false;
  int proxy_proto = 0;       // 0: none; 1 or 2: PROXY header version towards the machine
  TlsOptions tls_options;
  std::vector<Machine> machines;
  std::vector<TcpCheck> checks;  // never empty: Fly's defaults when the service has none
  int soft_limit = 0;            // [services.concurrency]; 0: none
  int hard_limit = 0;            // 0: none
  TargetSessionAttrs target = TargetSessionAttrs::kAny;
  std::vector<base::Cidr> allowed_sources;  // the app's; empty: every source

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
  // Every entry, in the order given: for whoever needs each route once (the health checker
  // enumerates the machines to check).
  const std::vector<Entry>& entries() const { return entries_; }
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

// Which app holds which public address (dedicated or shared), as the store says. A route table
// tells where new connections go; this tells whether connections already routed may go on: a
// connection whose app no longer holds the address it came to (the address was released, or
// the app destroyed) is ended by the edge (docs/connection.md, "Released addresses and
// destroyed apps"), so a client that kept the address never stays with a database the address
// no longer stands for. Built from the store, not from the route table, so that an app missing
// from a table for another reason (a release that no longer parses, a failed read) never ends
// its connections. Immutable once built; thread-safe.
class AddressHolders {
 public:
  // `revision`: the store revision read before the addresses were (they may show later
  // commits, never earlier ones). `apps`: every app, each with the addresses it holds (none
  // for an app without any).
  AddressHolders(uint64_t revision, std::map<std::string, std::set<std::string>> apps);

  enum class Verdict { kHeld, kAddressReleased, kAppDestroyed };
  // Whether a connection routed to `app` on `local_ip` by a route table of version
  // `table_version` (a store revision) may go on. kHeld when this view is older than that
  // table: the table knows better (the address may have come back to the app since).
  Verdict Check(const std::string& app, const std::string& local_ip, uint64_t table_version) const;
  uint64_t revision() const { return revision_; }

 private:
  uint64_t revision_;
  std::map<std::string, std::set<std::string>> apps_;
};

// The view the edge checks against; the daemon swaps in a new one after each route table.
using AddressHoldersHolder = base::Snapshot<AddressHolders>;

}  // namespace drawbridge::control
