#include "fleet/membership.h"

#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tls/ca.h"

namespace drawbridge::fleet {

namespace {

using json = nlohmann::json;

// Bounds the compare-and-set loops: each failed attempt means another node wrote meanwhile, and
// there are at most 255 ids to take.
constexpr int kMaxAttempts = kMaxNodeId + 16;

std::string FleetCheckValue(const FleetKeys& keys) {
  static constexpr std::string_view kMessage = "drawbridge fleet check";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), keys.check.data(), static_cast<int>(keys.check.size()),
       reinterpret_cast<const unsigned char*>(kMessage.data()), kMessage.size(), mac, &len);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "hmac-sha256:v1:";
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kDigits[mac[i] >> 4]);
    out.push_back(kDigits[mac[i] & 15]);
  }
  return out;
}

std::string NodeIdKey(int id) { return kNodeIdPrefix + std::to_string(id); }

// The owner named by a node-ids/ record; a record that does not parse still takes its id.
std::string OwnerOf(const std::string& value) {
  json j = json::parse(value, nullptr, false);
  if (j.is_object() && j.contains("node") && j["node"].is_string()) return j["node"];
  return "?";
}

// id -> owner, from the store's node-ids/ records.
base::Result<std::map<int, std::string>> Owners(store::Store* store) {
  auto list = store->List(kNodeIdPrefix);
  if (!list.ok()) return list.status();
  std::map<int, std::string> owners;
  for (const auto& kv : *list) {
    std::string digits = kv.key.substr(std::string(kNodeIdPrefix).size());
    int id = 0;
    bool ok = !digits.empty() && digits.size() <= 3;
    for (char c : digits) {
      if (c < '0' || c > '9') ok = false;
      id = id * 10 + (c - '0');
    }
    if (ok && id >= 1 && id <= kMaxNodeId) owners[id] = OwnerOf(kv.value);
  }
  return owners;
}

// The id node.json remembers for `node`; 0 when there is none (or it is another node's).
int Remembered(const std::string& path, const std::string& node) {
  std::ifstream in(path);
  if (!in) return 0;
  std::stringstream text;
  text << in.rdbuf();
  json j = json::parse(text.str(), nullptr, false);
  if (!j.is_object() || !j.contains("node") || !j.contains("id") || !j["node"].is_string() ||
      !j["id"].is_number_integer() || j["node"] != node) {
    return 0;
  }
  int id = j["id"];
  return id >= 1 && id <= kMaxNodeId ? id : 0;
}

base::Result<int> Remember(const std::string& path, const std::string& node, int id,
                           int remembered) {
  if (id != remembered) {
    json j = {{"node", node}, {"id", id}};
    base::Status s = tls::WriteFileAtomic(path, j.dump() + "\n", 0600);
    if (!s.ok()) return s.WithPrefix("node id " + std::to_string(id) + " claimed, but ");
  }
  return id;
}

// Claims `id` for `node` by compare-and-set: true if it is now this node's.
base::Result<bool> Claim(store::Store* store, int id, const std::string& node) {
  json value = {{"node", node}};
  auto r = store->Commit(
      {{store::Compare::Absent(NodeIdKey(id))}, {store::Op::Put(NodeIdKey(id), value.dump())}});
  if (!r.ok()) return r.status();
  return r->succeeded;
}

}  // namespace

base::Status JoinFleet(store::Store* store, const FleetKeys& keys) {
  const std::string mine = FleetCheckValue(keys);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto kv = store->Get(kFleetCheckKey);
    if (!kv.ok()) return kv.status().WithPrefix("fleet check: ");
    if (kv->has_value()) {
      const std::string& theirs = (*kv)->value;
      if (theirs.size() == mine.size() &&
          CRYPTO_memcmp(theirs.data(), mine.data(), mine.size()) == 0) {
        return {};
      }
      std::string which = keys.source.empty() ? "" : " (" + keys.source + ")";
      return base::Status::InvalidArgument(
          "this node's fleet secret" + which + " is not the fleet's: the fleet check in " +
          store->Describe() + " was written by nodes with another secret; refusing to join");
    }
    auto r = store->Commit({{store::Compare::Absent(kFleetCheckKey)},
                            {store::Op::Put(kFleetCheckKey, mine)}});
    if (!r.ok()) return r.status().WithPrefix("fleet check: ");
    if (r->succeeded) return {};
    // Another node wrote the check first: read and compare it.
  }
  return base::Status::Conflict("fleet check: the store's fleet/check keeps changing");
}

base::Result<int> ClaimNodeId(store::Store* store, const std::string& node,
                              const std::string& data_dir) {
  if (node.empty()) return base::Status::InvalidArgument("a node needs a name");
  const std::string path = data_dir + "/node.json";
  const int remembered = Remembered(path, node);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto owners = Owners(store);
    if (!owners.ok()) {
      if (remembered != 0) return remembered;
      return owners.status();
    }
    for (const auto& [id, owner] : *owners) {
      if (owner == node) return Remember(path, node, id, remembered);
    }
    // Prefer the remembered id when it is free (a store that lost its records), else the lowest.
    int candidate = 0;
    if (remembered != 0 && owners->count(remembered) == 0) {
      candidate = remembered;
    } else {
      for (int id = 1; id <= kMaxNodeId && candidate == 0; ++id) {
        if (owners->count(id) == 0) candidate = id;
      }
    }
    if (candidate == 0) {
      return base::Status::Conflict(
          "all 255 node ids are taken (node-ids/ in " + store->Describe() +
          "); delete the records of nodes that are gone");
    }
    auto claimed = Claim(store, candidate, node);
    if (!claimed.ok()) {
      if (remembered != 0) return remembered;
      return claimed.status();
    }
    if (*claimed) return Remember(path, node, candidate, remembered);
    // Another node took it first: look again.
  }
  return base::Status::Conflict("node-ids/ keeps changing; try again");
}

}  // namespace drawbridge::fleet
