// Cancel keys that name their node (docs/connection.md, "Cancel requests"). In a fleet, psql's
// Ctrl-C opens a new connection that the network may hand to any node, carrying nothing but the
// BackendKeyData the edge issued. So the key itself says which node holds the session, and a
// MAC under the fleet's cancel key says that a node of this fleet issued it: a node that is not
// the owner forwards a cancel only when the MAC is right, so keys that are forged or guessed go
// nowhere, and no shared state is consulted on the way.
//
// Layout of an issued key whose secret is L bytes (L = the server's key length, 1..256; 4 in
// protocol 3.0, up to 256 in 3.2):
//   pid:    bit 31 clear, bits 30..23 the node id (1..255), bits 22..0 random
//   secret: R random bytes, then M bytes of HMAC-SHA256(cancel key, label, pid, L, random)
//           with M = min(32, ceil(L/2)) and R = L - M (2 + 2 bytes in protocol 3.0)
// The owning node still compares the whole key with the one it registered (net/cancel_registry.h),
// so a key whose session has ended reaches nobody.
//
// Immutable after construction: safe from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "pg/messages.h"

namespace drawbridge::fleet {

class CancelKeys {
 public:
  static constexpr int kMinNodeId = 1;
  static constexpr int kMaxNodeId = 255;

  // `node_id` in 1..255 (fleet/membership.h gives one); `cancel_key` is FleetKeys::cancel.
  CancelKeys(int node_id, const std::array<uint8_t, 32>& cancel_key);

  int node_id() const { return node_id_; }

  // A fresh key of this node whose secret is `secret_len` bytes (1..pg::kMaxCancelKey).
  pg::CancelKey Issue(size_t secret_len) const;

  // The node that issued `key` if its MAC is right; nullopt for a key no node of this fleet
  // issued (forged, guessed, from outside the fleet, or of a bad length). Constant time in
  // the MAC comparison.
  std::optional<int> Owner(const pg::CancelKey& key) const;

  // The node id bits of a pid (0 for a pid no fleet node issues).
  static int NodeOfPid(uint32_t pid);
  // How many bytes of a secret of `secret_len` bytes are MAC.
  static size_t MacLength(size_t secret_len);

 private:
  // The MAC of `key` (pid and the random part of its secret), `MacLength` bytes long.
  std::array<uint8_t, 32> Mac(uint32_t pid, const uint8_t* random, size_t random_len,
                              size_t secret_len) const;

  int node_id_;
  std::array<uint8_t, 32> key_;
};

}  // namespace drawbridge::fleet
