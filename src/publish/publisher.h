// The publisher: turns the control plane's state into what the data plane serves. It owns the
// three snapshots the edge and the DNS server read (certificate set, DNS zone, route table) and
// rebuilds them on a thread of its own whenever the store changes.
//
// Why a thread of its own: a store calls its watchers on the thread that committed (the admin
// API's, or main's when Poll() sees another process's commit). Rebuilding there made the API
// thread parse every certificate and fly.toml, and anything in the rebuild that committed (a
// certificate renewal, say) re-entered the rebuild on the same thread. Here the watcher only
// records the newest revision heard and wakes the publisher thread, so a commit never waits for
// a rebuild and a rebuild may commit.
//
// What a rebuild does:
//   - Coalesces: it runs at the store's revision when the thread wakes, so a burst of commits
//     (ten allocations, a deploy and its certificate) becomes one rebuild at the newest.
//   - Redoes only what changed: a certificate is parsed once per PEM text (a renewed or added
//     certificate is parsed, the others are shared with the previous set, and an unchanged list
//     keeps the previous set); an app's fly.toml once per release; the zone is swapped only when
//     its names or addresses changed.
//   - Swaps, in this order: certificates, DNS zone, route table, then calls on_routes_swapped
//     (the edge's SyncListeners), so a new route never meets an old certificate set and a new
//     port is listening before anyone is told it is published.
//   - Keeps the previous snapshot of whatever fails to build, and says why in the log.
//
// "Visible at once" (README): a caller that committed waits with WaitFor()/WaitForStore() until
// the publisher has applied that revision; the admin API does this after every request that
// may have changed state.
//
// Threads: construction, PublishNow(), Start() and Stop() on one thread (main), PublishNow()
// before Start(). Once started, every rebuild runs on the "publisher" thread, which alone
// touches the caches. The holders, Refresh(), WaitFor(), WaitForStore(), published_revision()
// and stats() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/snapshot.h"
#include "base/status.h"
#include "control/route_table.h"
#include "control/types.h"
#include "plane/plane.h"
#include "dns/zone.h"
#include "tls/cert_store.h"

namespace drawbridge::publish {

// A certificate served before the store's.
struct BaseCert {
  std::string name;  // for messages, e.g. "cert.pem / key.pem"
  std::string cert_pem;
  std::string key_pem;
};

struct PublisherOptions {
  std::string domain;  // the public zone's apex, e.g. "drawbridge.test"
  // Served before every certificate in the store, the first being the default for clients that
  // send no or an unknown SNI: the operator's --cert pairs, or the built-in CA's certificate for
  // the zone apex. Parsed once, by PublishNow(); at least one is needed.
  std::vector<BaseCert> base_certs;
};

class Publisher {
 public:
  // `plane` and its store must outlive the publisher.
  Publisher(plane::ControlPlane* plane, PublisherOptions options);
  ~Publisher();  // Stop()s
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // The first publication, on the calling thread, so that the edge starts with routes and
  // certificates. Fails if a base certificate does not load (naming it) or the store cannot be
  // read; the parts that fail later keep their previous snapshot instead.
  base::Status PublishNow();

  // Subscribes to the store and starts the publisher thread, which hears every commit from here
  // on and catches up with any made since PublishNow(). `on_routes_swapped` (may be empty) runs
  // on the publisher thread after each route table swap. Once only.
  void Start(std::function<void()> on_routes_swapped);
  // Stops and joins the thread; waiters return false. Idempotent.
  void Stop();

  // A rebuild from scratch (SIGHUP): every certificate and config of the store is parsed again.
  // Returns at once; the publisher thread does the work.
  void Refresh();

  // Blocks until revision `revision` or a later one is served, or `timeout` passes, or the
  // publisher stops. True if it is served.
  bool WaitFor(int64_t revision, std::chrono::milliseconds timeout);
  // WaitFor() the store's current revision; logs a warning if it is not served within
  // `timeout`. For a caller that may just have committed (the admin API).
  bool WaitForStore(std::chrono::milliseconds timeout);
  // The newest store revision whose state is served; -1 before the first publication.
  int64_t published_revision() const;

  const control::RouteTableHolder* routes() const { return &routes_; }
  const tls::CertStore* certs() const { return &certs_; }
  std::shared_ptr<const dns::Zone> zone() const { return zone_.Current(); }

  // Work done so far, for tests and logs.
  struct Stats {
    uint64_t rebuilds = 0;       // PublishNow() and each rebuild on the thread
    uint64_t cert_parses = 0;    // certificates parsed (base certificates included)
    uint64_t config_parses = 0;  // fly.toml texts parsed
  };
  Stats stats() const;

 private:
  // What the store's watcher and the waiters share with the publisher thread. The watcher holds
  // it by shared_ptr: a store cannot forget a watcher, and may outlive the publisher.
  struct Queue;

  struct CachedCert {
    tls::CtxPtr ctx;  // null: did not load (logged once, not parsed again)
  };
  struct CachedConfig {
    int version = 0;
    std::string toml;
    std::string file;
    std::optional<control::AppConfig> config;  // empty: did not parse (logged once)
  };

  void Loop();
  // One rebuild at the store's current revision; the revision it built from, or an error if
  // the store could not say.
  base::Result<int64_t> Rebuild(bool from_scratch);
  void PublishCerts();
  void PublishZone();
  bool PublishRoutes();

  plane::ControlPlane* plane_;
  PublisherOptions options_;
  std::shared_ptr<Queue> queue_;
  std::function<void()> on_routes_swapped_;
  std::thread thread_;

  tls::CertStore certs_;
  base::Snapshot<dns::Zone> zone_;
  control::RouteTableHolder routes_;

  // Owned by whichever thread rebuilds (main before Start(), then the publisher thread).
  std::vector<tls::CtxPtr> base_contexts_;
  std::map<std::string, CachedCert> cert_cache_;      // key: cert PEM, NUL, key PEM
  std::vector<SSL_CTX*> published_contexts_;          // the served set's, in order
  std::map<std::string, CachedConfig> config_cache_;  // by app

  std::atomic<uint64_t> rebuilds_{0};
  std::atomic<uint64_t> cert_parses_{0};
  std::atomic<uint64_t> config_parses_{0};
};

}  // namespace drawbridge::publish
