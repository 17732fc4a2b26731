#include "plane/apps.h"

#include <regex>
#include <utility>

#include "plane/common.h"
#include "plane/records.h"

namespace drawbridge::plane {

using base::Result;
using base::Status;

bool ValidAppName(const std::string& name) {
  static const std::regex re("^[a-z][a-z0-9-]{0,62}$");
  return std::regex_match(name, re) && name.back() != '-';
}

Result<AppInfo> Apps::Create(const std::string& name) {
  if (!ValidAppName(name)) {
    return Status::InvalidArgument(
        "invalid app name \"" + name +
        "\": use 1-63 lower-case letters, digits and '-', starting with a letter and "
        "not ending with '-'");
  }
  AppInfo info{name, Now()};
  std::string key = records::AppKey(name);
  auto r = store_->Commit(
      {{store::Compare::Absent(key)}, {store::Op::Put(key, records::AppValue(info))}});
  if (!r.ok()) return r.status();
  if (!r->succeeded) return Status::Conflict("app \"" + name + "\" already exists");
  return info;
}

Result<std::vector<AppInfo>> Apps::List() {
  auto apps = store_->List(records::kAppPrefix);
  if (!apps.ok()) return apps.status();
  std::vector<AppInfo> out;
  for (const auto& kv : *apps) {
    AppInfo a = records::AppFrom(kv);
    if (auto m = machines_->List(a.name); m.ok()) a.machines = static_cast<int>(m->size());
    if (auto i = ips_->List(a.name); i.ok()) a.ips = static_cast<int>(i->size());
    if (auto r = releases_->Latest(a.name); r.ok() && *r) a.release = (*r)->version;
    out.push_back(std::move(a));
  }
  return out;
}

Status Apps::Destroy(const std::string& name) {
  if (auto s = RequireApp(store_, name); !s.ok()) return s;
  auto ips = ips_->List(name);
  if (!ips.ok()) return ips.status();
  store::Txn txn;
  txn.ops.push_back(store::Op::Delete(records::AppKey(name)));
  txn.ops.push_back(store::Op::DeletePrefix(records::MachinePrefix(name)));
  txn.ops.push_back(store::Op::DeletePrefix(records::ReleasePrefix(name)));
  // Its dedicated addresses go into quarantine as `ips release` puts them (ips.h).
  for (const auto& ip : *ips) ips_->AddReleaseOps(ip, &txn);
  // Its certificates and their keys, the CA's and the operator's alike, go with it.
  auto certs = store_->List(records::kCertPrefix);
  if (!certs.ok()) return certs.status();
  for (const auto& kv : *certs) {
    if (records::CertFrom(kv).info.app == name) txn.ops.push_back(store::Op::Delete(kv.key));
  }
  auto r = store_->Commit(txn);
  if (!r.ok()) return r.status();
  return {};
}

}  // namespace drawbridge::plane
