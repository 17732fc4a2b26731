// The fleet secret: one file of at least 32 random bytes that every node of a fleet is given
// (and etcd is not). Nothing uses the secret itself; it is stretched with HKDF-SHA256 into
// independent subkeys, one per job, so that a key leaked or misused in one place says nothing
// about the others:
//   check  - the fleet check in the store (membership.h): a node without the secret cannot join
//   seal   - AES-256-GCM over certificate and CA private keys in the store (store/sealed_store.h)
//   cancel - the MAC inside the cancel keys the edge hands to clients
//   peer   - the MAC over datagrams between nodes (cancels forwarded to the owning node)
//
// The file is text, one line: base64 (`openssl rand -base64 32`) or hex (`openssl rand -hex
// 32`). It is refused unless only its owner can read it, like an SSH private key.
//
// Pure functions; no threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace drawbridge::fleet {

struct FleetKeys {
  std::array<uint8_t, 32> check{}, seal{}, cancel{}, peer{};
  std::string source;  // the file the secret came from, for messages ("this node's secret (F)")
};

// Reads the secret file at `path` and derives the keys. Errors name the file and say what to do:
// kNotFound with the command that makes one; kInvalidArgument when its mode gives group or others
// any access (with the chmod that fixes it), when it is not base64 or hex, or when it holds fewer
// than 32 bytes.
base::Result<FleetKeys> LoadFleetSecret(const std::string& path);

// The keys for a secret already in memory (tests, and LoadFleetSecret itself); at least 32 bytes.
base::Result<FleetKeys> DeriveFleetKeys(const std::string& secret);

}  // namespace drawbridge::fleet
