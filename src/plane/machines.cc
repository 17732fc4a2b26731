#include "plane/machines.h"

#include <arpa/inet.h>
#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "base/host_name.h"
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

// Why an IP address cannot be a machine (an address connections could never reach), or empty.
// An IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
std::string UnreachableReason(const std::string& canonical) {
  std::array<uint8_t, 16> a{};
  const uint8_t* v4 = nullptr;
  if (canonical.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, canonical.c_str(), a.data()) != 1) return "";
    v4 = a.data();
  } else {
    if (inet_pton(AF_INET6, canonical.c_str(), a.data()) != 1) return "";
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(a.begin(), a.begin() + 12, kMapped)) v4 = a.data() + 12;
  }
  if (v4 != nullptr) {
    if (v4[0] == 0 && v4[1] == 0 && v4[2] == 0 && v4[3] == 0) {
      return "the unspecified address cannot be a machine";
    }
    if (v4[0] == 0) return "0.0.0.0/8 (\"this network\") cannot be a machine";
    if (v4[0] == 255 && v4[1] == 255 && v4[2] == 255 && v4[3] == 255) {
      return "the broadcast address cannot be a machine";
    }
    if (v4[0] >= 224 && v4[0] <= 239) return "a multicast address cannot be a machine";
    return "";
  }
  if (std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; })) {
    return "the unspecified address cannot be a machine";
  }
  if (a[0] == 0xff) return "a multicast address cannot be a machine";
  return "";
}

// The error for an address that is neither an IP address nor a host name, saying which it
// looked like: "999.1.1.1" is a bad IPv4 address, not a name.
Status BadAddress(const std::string& address) {
  const char* why;
  size_t colons = std::count(address.begin(), address.end(), ':');
  if (colons == 1) {
    why = "a machine address takes no port: connections go to the service's internal_port";
  } else if (colons > 1) {
    why = "not an IPv6 address";
  } else if (!address.empty() && address.find_first_not_of("0123456789.") == std::string::npos) {
    why = "not an IPv4 address: four numbers from 0 to 255, separated by dots";
  } else if (address.size() > 253) {
    why = "a host name is at most 253 characters";
  } else {
    why = "not a host name: labels of letters, digits and '-', separated by dots";
  }
  return Status::InvalidArgument("invalid machine address \"" + address + "\": " + why);
}

}  // namespace

Result<MachineInfo> Machines::Add(const std::string& app, const std::string& address,
                                  const std::string& region, const std::string& role) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  std::string canonical = control::CanonicalIp(address);
  bool is_ip = !canonical.empty();
  if (is_ip) {
    if (std::string why = UnreachableReason(canonical); !why.empty()) {
      return Status::InvalidArgument("invalid machine address \"" + address + "\": " + why);
    }
  } else if (!base::IsHostName(address)) {
    return BadAddress(address);
  }
  static const std::regex label_re("^[a-z0-9-]{0,32}$");
  if (!std::regex_match(region, label_re) || !std::regex_match(role, label_re)) {
    return Status::InvalidArgument("region and role: up to 32 lower-case letters, digits and '-'");
  }
  // A machine is its address (connections go to the service's internal_port on it), so one
  // address twice in an app would only be tried twice. IP addresses compare canonically, names
  // as DNS does. Two adds of one address at the same instant can both pass this check: the
  // store compares keys, and a machine's key is its id.
  auto existing = List(app);
  if (!existing.ok()) return existing.status();
  for (const auto& m : *existing) {
    if (is_ip ? m.address == canonical : base::SameHost(m.address, address)) {
      return Status::Conflict("machine address \"" + address + "\" is already in app \"" + app +
                              "\" (machine " + m.id + ")");
    }
  }
  MachineInfo m{RandomHex(7), is_ip ? canonical : address, region.empty() ? "local" : region,
                role, Now()};
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
  if (!kv->has_value()) return NotFoundError("machine", id, app);
  auto r = store_->Commit(
      {{store::Compare::ModRevision(key, (*kv)->mod_revision)}, {store::Op::Delete(key)}});
  if (!r.ok()) return r.status();
  return {};
}

}  // namespace drawbridge::plane
