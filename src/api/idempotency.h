// Idempotency-Key (docs/admin-api.md): a client that did not hear the answer to a request that
// changes state (a timeout, a node that died mid-request, a CLI retried by a script) sends it
// again with the same key, and the request is done once. The first request with a key records
// "pending" under `requests/<sha256(key)>` in the store by compare-and-set (absent), runs, then
// records its answer there; a request with a key already recorded gets the recorded answer and
// does nothing (a key still pending: 409, retry later). Kept in the control plane's store, so
// that in a fleet a retry that lands on another node is answered the same way.
//
// Why these rules:
//   - The key's hash, not the key, names the record: keys are the client's text, of any bytes.
//   - The request's method, target and body are remembered (as a hash): the same key on a
//     different request is the client's mistake (422), not a replay.
//   - An answer with a 5xx status is not kept (the record goes): the store was down or the
//     daemon failed, and a retry must be able to do the work once it can.
//   - A pending record older than kPendingTakeover (the daemon that wrote it died mid-request)
//     is taken over by the next retry, so a key is never stuck.
//   - Records expire after kRecordLifetime and are pruned lazily (at most one sweep per
//     kPruneInterval per process), so the store does not grow without bound.
//
// Thread-safe: state lives in the store; the prune clock is atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "api/handlers.h"
#include "store/store.h"

namespace drawbridge::api {

inline constexpr std::chrono::hours kRecordLifetime{24};
inline constexpr std::chrono::seconds kPendingTakeover{120};
inline constexpr std::chrono::minutes kPruneInterval{10};
// Store keys of the records: "requests/" followed by 64 hex digits.
inline constexpr const char* kRequestsPrefix = "requests/";

class RequestRecords {
 public:
  // `store` must outlive this. `now` gives unix seconds (tests pass a fake clock).
  explicit RequestRecords(store::Store* store, std::function<int64_t()> now = nullptr);

  // Runs `handle` for `req` at most once per req.idempotency_key (which must not be empty), as
  // the header comment says; returns its answer or the recorded one.
  Response Once(const Request& req, const std::function<Response()>& handle);

 private:
  // Deletes expired records, if the last sweep is older than kPruneInterval.
  void MaybePrune(int64_t now);

  store::Store* store_;
  std::function<int64_t()> now_;
  std::atomic<int64_t> last_prune_{0};
};

}  // namespace drawbridge::api
