#include "plane/ips.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "base/utc_time.h"
#include "plane/common.h"
#include "plane/records.h"

namespace drawbridge::plane {

using base::Result;
using base::Status;

Ips::Ips(store::Store* store, control::IpPool v4, control::IpPool v6, Certificates* certificates,
         const PlaneOptions& options)
    : store_(store),
      v4_(v4),
      v6_(v6),
      certificates_(certificates),
      quarantine_(std::max(options.ip_quarantine, std::chrono::seconds(0))),
      clock_(options.clock) {}

int64_t Ips::NowSeconds() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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
    auto released = store_->List(records::kQuarantinePrefix);
    if (!released.ok()) return released.status();
    std::set<std::string> used;
    for (const auto& kv : *taken) used.insert(records::AddressOfIpKey(kv.key));
    struct Released {
      int64_t ends;  // Unix seconds
      int64_t mod_revision;
    };
    std::map<std::string, Released> quarantine;
    for (const auto& kv : *released) {
      records::QuarantineRecord q = records::QuarantineFrom(kv);
      quarantine[q.address] = {q.released_at + quarantine_.count(), kv.mod_revision};
    }
    int64_t now = NowSeconds();
    ip.address.clear();
    int64_t record_revision = 0;  // of the candidate's quarantine record, 0 if it has none
    int quarantined = 0;
    int64_t first_end = std::numeric_limits<int64_t>::max();
    for (uint64_t i = first; i <= last; ++i) {
      std::string candidate = pool.At(i);
      if (used.count(candidate)) continue;
      auto q = quarantine.find(candidate);
      if (q != quarantine.end() && q->second.ends > now) {
        ++quarantined;
        first_end = std::min(first_end, q->second.ends);
        continue;
      }
      ip.address = candidate;
      record_revision = q != quarantine.end() ? q->second.mod_revision : 0;
      break;
    }
    if (ip.address.empty()) {
      std::string full = "the " + std::string(pool.v6() ? "IPv6" : "IPv4") + " pool " +
                         pool.ToString() + " has no free address";
      if (quarantined == 0) return Status::Conflict(full);
      return Status::Conflict(full + ": " + std::to_string(quarantined) + " released " +
                              (quarantined == 1 ? "address is" : "addresses are") +
                              " in quarantine, the first until " + base::UtcText(first_end) +
                              " (drawbridge serve --ip-quarantine sets how long)");
    }
    // The address must still be free, and its quarantine record (if any) the one judged
    // above: a release or an allocation of it meanwhile fails the commit, and the loop looks
    // again. The allocation takes the record with it.
    std::string key = records::IpKey(ip.address);
    std::string record_key = records::QuarantineKey(ip.address);
    store::Txn txn;
    txn.compares.push_back(store::Compare::Absent(key));
    if (record_revision != 0) {
      txn.compares.push_back(store::Compare::ModRevision(record_key, record_revision));
      txn.ops.push_back(store::Op::Delete(record_key));
    } else {
      txn.compares.push_back(store::Compare::Absent(record_key));
    }
    txn.ops.push_back(store::Op::Put(key, records::IpValue(ip)));
    auto r = store_->Commit(txn);
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
    store::Txn txn;
    txn.compares.push_back(store::Compare::ModRevision(key, (*kv)->mod_revision));
    AddReleaseOps(ip, &txn);
    auto r = store_->Commit(txn);
    if (!r.ok()) return r.status();
    if (!r->succeeded) return Status::Conflict("the address changed while releasing it; try again");
    return ip;
  }
  return NotFoundError("IP address", canonical, app);
}

Result<std::map<std::string, std::set<std::string>>> Ips::Holders(int64_t* revision) {
  auto rev = store_->Revision();
  if (!rev.ok()) return rev.status();
  *revision = *rev;
  std::map<std::string, std::set<std::string>> holders;
  // The addresses first: an app destroyed between the reads is then missing with its
  // addresses still seen, which says "destroyed" rather than "released".
  for (const char* prefix : {records::kIpPrefix, records::kSharedIpPrefix}) {
    auto kvs = store_->List(prefix);
    if (!kvs.ok()) return kvs.status();
    for (const auto& kv : *kvs) {
      IpInfo ip = records::IpFrom(kv);
      holders[ip.app].insert(ip.address);
    }
  }
  auto apps = store_->List(records::kAppPrefix);
  if (!apps.ok()) return apps.status();
  std::set<std::string> names;
  for (const auto& kv : *apps) names.insert(records::AppFrom(kv).name);
  std::erase_if(holders, [&](const auto& entry) { return !names.count(entry.first); });
  for (const auto& name : names) holders[name];  // an app without addresses holds none
  return holders;
}

void Ips::AddReleaseOps(const IpInfo& ip, store::Txn* txn) const {
  txn->ops.push_back(store::Op::Delete(records::IpRecordKey(ip)));
  if (ip.type == "shared_v4") return;  // stays shared by the others; clients name their app
  // Written whatever the quarantine's length: the record says when the address was released,
  // the allocator decides how long that keeps it (so a changed --ip-quarantine applies to
  // every address released before).
  records::QuarantineRecord q{ip.address, ip.app, NowSeconds()};
  txn->ops.push_back(
      store::Op::Put(records::QuarantineKey(ip.address), records::QuarantineValue(q)));
}

}  // namespace drawbridge::plane
