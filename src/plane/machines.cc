#include "plane/machines.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "control/ip_pool.h"
#include "plane/common.h"
#include "plane/records.h"

namespace drawbridge::plane {

namespace {

using base::Result;
using base::Status;

// From the kernel's generator (getrandom), so that the plane needs no crypto library. A
// failure leaves zeros, and the id's compare-and-set turns a repeat into a conflict.
std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> b(bytes);
  size_t got = 0;
  while (got < b.size()) {
    ssize_t n = ::getrandom(b.data() + got, b.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  std::string out;
  char hex[3];
  for (auto c : b) {
    std::snprintf(hex, sizeof hex, "%02x", c);
    out += hex;
  }
  return out;
}

}  // namespace

Result<MachineInfo> Machines::Add(const std::string& app, const std::string& address,
                                  const std::string& region, const std::string& role) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  static const std::regex host_re(R"(^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$)");
  bool is_ip = !control::CanonicalIp(address).empty();
  if (!is_ip && !std::regex_match(address, host_re)) {
    return Status::InvalidArgument("invalid machine address \"" + address +
                                   "\": give an IP address or a host name");
  }
  static const std::regex label_re("^[a-z0-9-]{0,32}$");
  if (!std::regex_match(region, label_re) || !std::regex_match(role, label_re)) {
    return Status::InvalidArgument("region and role: up to 32 lower-case letters, digits and '-'");
  }
  MachineInfo m{RandomHex(7), is_ip ? control::CanonicalIp(address) : address,
                region.empty() ? "local" : region, role, Now()};
  std::string key = records::MachineKey(app, m.id);
  auto w = store_->Commit(
      {{store::Compare::Absent(key)}, {store::Op::Put(key, records::MachineValue(m))}});
  if (!w.ok()) return w.status();
  if (!w->succeeded) return Status::Conflict("machine id collision; try again");
  return m;
}

Result<std::vector<MachineInfo>> Machines::List(const std::string& app) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  auto kvs = store_->List(records::MachinePrefix(app));
  if (!kvs.ok()) return kvs.status();
  std::vector<MachineInfo> out;
  for (const auto& kv : *kvs) out.push_back(records::MachineFrom(kv));
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

Status Machines::Remove(const std::string& app, const std::string& id) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  std::string key = records::MachineKey(app, id);
  auto kv = store_->Get(key);
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) {
    return Status::NotFound("machine \"" + id + "\" not found in app \"" + app + "\"");
  }
  auto r = store_->Commit(
      {{store::Compare::ModRevision(key, (*kv)->mod_revision)}, {store::Op::Delete(key)}});
  if (!r.ok()) return r.status();
  return {};
}

}  // namespace drawbridge::plane
