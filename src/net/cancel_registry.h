// Cancel routing (docs/connection.md, "Cancel requests"): the edge hands each client a
// BackendKeyData of its own and remembers which machine and which real key it stands for, so a
// CancelRequest, which arrives on a new connection with nothing but the key, reaches the
// backend that issued it and only that one. Keys are random (pid with the sign bit clear,
// secret as long as the server's); lookups compare in constant time. In a fleet the keys also
// name this node and carry a MAC (fleet/cancel_keys.h), so that another node that receives the
// cancel knows where to send it; the whole key is still what a lookup compares. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "fleet/cancel_keys.h"
#include "pg/messages.h"

namespace drawbridge::net {

struct CancelTarget {
  std::string app;      // whose session it is: a cancel counts only where that app is reached
  std::string address;  // machine address as dialled
  int port = 0;
  pg::CancelKey key;    // the server's own key
};

// Fleet mode: sends a cancel whose key names node `node` to that node, with the apps the
// cancel may reach (those of the address and port it came to). OK once sent; kNotFound when
// the fleet has no such node; another code when it could not be sent. Called on an io thread:
// must not block (a lookup in memory and one datagram).
using ForwardCancelFn = std::function<base::Status(int node, const pg::CancelKey& key,
                                                   const std::vector<std::string>& apps)>;

class CancelRegistry {
 public:
  // Fleet mode: keys issued from now on name this node (null: plain random keys, as outside a
  // fleet). Called before the first Register().
  void UseFleetKeys(std::shared_ptr<const fleet::CancelKeys> keys);
  // Issues a fresh client-facing key for `target`, its secret as long as the server's.
  pg::CancelKey Register(CancelTarget target);
  void Unregister(const pg::CancelKey& issued);
  std::optional<CancelTarget> Find(const pg::CancelKey& issued) const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const fleet::CancelKeys> fleet_keys_;
  std::multimap<uint32_t, std::pair<pg::Bytes, CancelTarget>> by_pid_;
};

}  // namespace drawbridge::net
