#include "plane/ips.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <tuple>
#include <utility>

#include "plane/common.h"
#include "plane/records.h"

namespace drawbridge::plane {

using base::Result;
using base::Status;

Result<IpInfo> Ips::Allocate(const std::string& app, const std::string& type) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  if (type != "v4" && type != "shared_v4" && type != "v6") {
    return Status::InvalidArgument("unknown IP type \"" + type + "\" (v4, shared_v4 or v6)");
  }
  IpInfo ip;
  ip.type = type;
  ip.version = type == "v6" ? "v6" : "v4";
  ip.app = app;
  ip.created_at = Now();
  if (type == "shared_v4") {
    // The pool's first host address is the shared one; apps on it are told apart by SNI.
    ip.address = v4_.At(1);
    std::string key = records::SharedIpKey(ip.address, app);
    auto r = store_->Commit(
        {{store::Compare::Absent(key)}, {store::Op::Put(key, records::IpValue(ip))}});
    if (!r.ok()) return r.status();
    if (!r->succeeded) {
      return Status::Conflict("app \"" + app + "\" already has the shared IPv4 " + ip.address);
    }
    // Best effort: the address is the app's with or without one.
    (void)certificates_->EnsureAppCert(app);
    return ip;
  }
  const control::IpPool& pool = type == "v6" ? v6_ : v4_;
  // Dedicated addresses: the first free one; the store's compare-and-set settles races (two
  // allocators that pick the same address: one commits, the other retries).
  uint64_t first = type == "v6" ? 1 : 2;
  uint64_t last = pool.v6() ? std::min<uint64_t>(pool.size() - 1, uint64_t{1} << 20)
                            : pool.size() - 2;  // skip the broadcast address
  for (int attempt = 0; attempt < kMaxCasRetries; ++attempt) {
    auto taken = store_->List(records::kIpPrefix);
    if (!taken.ok()) return taken.status();
    std::set<std::string> used;
    for (const auto& kv : *taken) used.insert(records::AddressOfIpKey(kv.key));
    ip.address.clear();
    for (uint64_t i = first; i <= last; ++i) {
      std::string candidate = pool.At(i);
      if (!used.count(candidate)) {
        ip.address = candidate;
        break;
      }
    }
    if (ip.address.empty()) {
      return Status::Conflict("the " + std::string(pool.v6() ? "IPv6" : "IPv4") + " pool " +
                              pool.ToString() + " has no free address");
    }
    std::string key = records::IpKey(ip.address);
    auto r = store_->Commit(
        {{store::Compare::Absent(key)}, {store::Op::Put(key, records::IpValue(ip))}});
    if (!r.ok()) return r.status();
    if (r->succeeded) {
      (void)certificates_->EnsureAppCert(app);  // best effort, as above
      return ip;
    }
  }
  return Status::Conflict("too much contention allocating an address; try again");
}

Result<std::vector<IpInfo>> Ips::List(const std::string& app) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  std::vector<IpInfo> out;
  for (const char* prefix : {records::kIpPrefix, records::kSharedIpPrefix}) {
    auto kvs = store_->List(prefix);
    if (!kvs.ok()) return kvs.status();
    for (const auto& kv : *kvs) {
      IpInfo ip = records::IpFrom(kv);
      if (ip.app == app) out.push_back(std::move(ip));
    }
  }
  std::sort(out.begin(), out.end(), [](const IpInfo& a, const IpInfo& b) {
    return std::tie(a.version, a.created_at, a.address) <
           std::tie(b.version, b.created_at, b.address);
  });
  return out;
}

Result<IpInfo> Ips::Release(const std::string& app, const std::string& address) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  std::string canonical = control::CanonicalIp(address);
  if (canonical.empty()) return Status::InvalidArgument("Invalid IP address: '" + address + "'");
  for (const std::string& key : {records::IpKey(canonical), records::SharedIpKey(canonical, app)}) {
    auto kv = store_->Get(key);
    if (!kv.ok()) return kv.status();
    if (!kv->has_value()) continue;
    IpInfo ip = records::IpFrom(**kv);
    if (ip.app != app) continue;
    auto r = store_->Commit(
        {{store::Compare::ModRevision(key, (*kv)->mod_revision)}, {store::Op::Delete(key)}});
    if (!r.ok()) return r.status();
    if (!r->succeeded) return Status::Conflict("the address changed while releasing it; try again");
    return ip;
  }
  return Status::NotFound("app \"" + app + "\" has no IP address " + canonical);
}

}  // namespace drawbridge::plane
