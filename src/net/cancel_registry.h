// Cancel routing (docs/connection.md, "Cancel requests"): the edge hands each client a
// BackendKeyData of its own and remembers which machine and which real key it stands for, so a
// CancelRequest, which arrives on a new connection with nothing but the key, reaches the
// backend that issued it and only that one. Keys are random (pid with the sign bit clear,
// secret as long as the server's); lookups compare in constant time. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "pg/messages.h"

namespace drawbridge::net {

struct CancelTarget {
  std::string app;      // whose session it is: a cancel counts only where that app is reached
  std::string address;  // machine address as dialled
  int port = 0;
  pg::CancelKey key;    // the server's own key
};

class CancelRegistry {
 public:
  // Issues a fresh client-facing key for `target`.
  pg::CancelKey Register(CancelTarget target);
  void Unregister(const pg::CancelKey& issued);
  std::optional<CancelTarget> Find(const pg::CancelKey& issued) const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::multimap<uint32_t, std::pair<pg::Bytes, CancelTarget>> by_pid_;
};

}  // namespace drawbridge::net
