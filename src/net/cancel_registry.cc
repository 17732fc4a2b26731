#include "net/cancel_registry.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace drawbridge::net {

namespace {
bool SameSecret(const pg::Bytes& a, const pg::Bytes& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}
}  // namespace

void CancelRegistry::UseFleetKeys(std::shared_ptr<const fleet::CancelKeys> keys) {
  std::lock_guard lock(mu_);
  fleet_keys_ = std::move(keys);
}

pg::CancelKey CancelRegistry::Register(CancelTarget target) {
  pg::CancelKey issued;
  issued.secret.resize(target.key.secret.size());
  std::lock_guard lock(mu_);
  while (true) {
    if (fleet_keys_) {
      // The pid carries the node id (never 0, sign bit clear) and 23 random bits.
      issued = fleet_keys_->Issue(target.key.secret.size());
    } else {
      RAND_bytes(reinterpret_cast<unsigned char*>(&issued.pid), sizeof issued.pid);
      RAND_bytes(issued.secret.data(), static_cast<int>(issued.secret.size()));
      // Clear the sign bit (clients have broken on negative pids) and never issue pid 0.
      issued.pid &= 0x7FFFFFFF;
      if (issued.pid == 0) continue;
    }
    bool taken = false;
    auto [lo, hi] = by_pid_.equal_range(issued.pid);
    for (auto it = lo; it != hi; ++it) taken |= SameSecret(it->second.first, issued.secret);
    if (!taken) break;
  }
  by_pid_.emplace(issued.pid, std::make_pair(issued.secret, std::move(target)));
  return issued;
}

void CancelRegistry::Unregister(const pg::CancelKey& issued) {
  std::lock_guard lock(mu_);
  auto [lo, hi] = by_pid_.equal_range(issued.pid);
  for (auto it = lo; it != hi; ++it) {
    if (SameSecret(it->second.first, issued.secret)) {
      by_pid_.erase(it);
      return;
    }
  }
}

std::optional<CancelTarget> CancelRegistry::Find(const pg::CancelKey& issued) const {
  std::lock_guard lock(mu_);
  auto [lo, hi] = by_pid_.equal_range(issued.pid);
  for (auto it = lo; it != hi; ++it) {
    if (SameSecret(it->second.first, issued.secret)) return it->second.second;
  }
  return std::nullopt;
}

size_t CancelRegistry::size() const {
  std::lock_guard lock(mu_);
  return by_pid_.size();
}

}  // namespace drawbridge::net
