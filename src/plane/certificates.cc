#include "plane/certificates.h"

#include <chrono>
#include <cstdint>
#include <regex>
#include <set>
#include <utility>

#include "base/host_name.h"
#include "base/logfmt.h"
#include "plane/common.h"
#include "plane/records.h"

namespace drawbridge::plane {

namespace {

using base::Result;
using base::Status;

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool ValidHostName(const std::string& host) {
  static const std::regex re(
      R"(^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$)");
  return host.size() <= 253 && std::regex_match(host, re);
}

// A host name from a request path, as `certs show` and `certs remove` take it: normalized, and
// refused unless it could be a certificate's host. Its bytes come from a percent-decoded URL
// segment and reach the error text, so they are shown escaped (base/logfmt.h).
Result<std::string> RequestedHost(const std::string& host) {
  if (host.empty()) return Status::InvalidArgument("a host name is required");
  std::string h = base::NormalizeHost(host);
  if (ValidHostName(h)) return h;
  std::string shown = base::LogfmtValue(host);
  if (shown.front() != '"') shown = "\"" + shown + "\"";
  return Status::InvalidArgument("invalid host name " + shown);
}

}  // namespace

Result<CertInfo> Certificates::Add(const std::string& host, const std::string& cert_pem,
                                   const std::string& key_pem) {
  std::string h = base::NormalizeHost(host);
  if (!ValidHostName(h)) return Status::InvalidArgument("invalid host name \"" + host + "\"");
  if (cert_pem.size() > 64 * 1024 || key_pem.size() > 64 * 1024) {
    return Status::InvalidArgument("certificate or key larger than 64 KiB");
  }
  auto facts = issuer_->Check(h, cert_pem, key_pem);
  if (!facts.ok()) return facts.status().WithPrefix("certificate for " + h + " refused: ");
  records::CertRecord record;
  CertInfo& info = record.info;
  info.host = h;
  if (base::UnderZone(h, options_.domain)) {
    info.app = h.substr(0, h.size() - base::NormalizeHost(options_.domain).size() - 1);
  }
  info.source = "operator";
  info.issuer = facts->issuer;
  info.names = facts->dns_names;
  info.not_after = facts->not_after;
  info.created_at = Now();
  info.cert_pem = cert_pem;
  record.key_pem = key_pem;
  auto r = store_->Commit({{}, {store::Op::Put(records::CertKey(h), records::CertValue(record))}});
  if (!r.ok()) return r.status();
  return info;
}

Result<std::vector<CertInfo>> Certificates::List() {
  auto kvs = store_->List(records::kCertPrefix);
  if (!kvs.ok()) return kvs.status();
  std::vector<CertInfo> out;
  for (const auto& kv : *kvs) out.push_back(records::CertFrom(kv).info);
  return out;
}

Result<CertInfo> Certificates::Show(const std::string& host) {
  auto h = RequestedHost(host);
  if (!h.ok()) return h.status();
  auto kv = store_->Get(records::CertKey(*h));
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return NotFoundError("certificate for", *h);
  return records::CertFrom(**kv).info;
}

Result<CertInfo> Certificates::Remove(const std::string& host) {
  auto requested = RequestedHost(host);
  if (!requested.ok()) return requested.status();
  const std::string& h = *requested;
  std::string key = records::CertKey(h);
  auto kv = store_->Get(key);
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return NotFoundError("certificate for", h);
  auto r = store_->Commit(
      {{store::Compare::ModRevision(key, (*kv)->mod_revision)}, {store::Op::Delete(key)}});
  if (!r.ok()) return r.status();
  if (!r->succeeded) {
    return Status::Conflict("the certificate for " + h + " changed while removing it; try again");
  }
  return records::CertFrom(**kv).info;
}

Result<std::vector<CertInfo>> Certificates::RemoveOrphanedCaCerts() {
  auto apps = store_->List(records::kAppPrefix);
  if (!apps.ok()) return apps.status();
  std::set<std::string> served;  // the host of every app under the current domain
  for (const auto& kv : *apps) {
    served.insert(base::NormalizeHost(records::AppFrom(kv).name + "." + options_.domain));
  }
  auto kvs = store_->List(records::kCertPrefix);
  if (!kvs.ok()) return kvs.status();
  std::vector<CertInfo> removed;
  for (const auto& kv : *kvs) {
    CertInfo info = records::CertFrom(kv).info;
    if (info.source != "ca" || served.count(base::NormalizeHost(info.host))) continue;
    // Guarded: a certificate reissued meanwhile (another process on the store) is left alone.
    auto r = store_->Commit(
        {{store::Compare::ModRevision(kv.key, kv.mod_revision)}, {store::Op::Delete(kv.key)}});
    if (!r.ok()) return r.status();
    if (r->succeeded) removed.push_back(std::move(info));
  }
  return removed;
}

Result<std::string> Certificates::CaPem() { return issuer_->CaPem(); }

Result<bool> Certificates::EnsureAppCert(const std::string& app) {
  if (!issuer_->CanIssue()) return false;
  std::string host = app + "." + options_.domain;
  std::string key = records::CertKey(host);
  auto kv = store_->Get(key);
  if (!kv.ok()) return kv.status();
  int64_t mod_revision = 0;
  if (kv->has_value()) {
    CertInfo existing = records::CertFrom(**kv).info;
    if (existing.source != "ca") return false;  // the operator's certificate is theirs to renew
    if (existing.not_after - UnixNow() > int64_t{options_.renew_before_days} * 86400) return false;
    mod_revision = (*kv)->mod_revision;
  }
  auto pem = issuer_->Issue({host}, options_.cert_days);
  if (!pem.ok()) return AsInternal(pem.status());
  auto facts = issuer_->Check(host, pem->cert_pem, pem->key_pem);
  if (!facts.ok()) return AsInternal(facts.status());
  records::CertRecord record;
  record.info.host = host;
  record.info.app = app;
  record.info.source = "ca";
  record.info.issuer = facts->issuer;
  record.info.names = facts->dns_names;
  record.info.not_after = facts->not_after;
  record.info.created_at = Now();
  record.info.cert_pem = pem->cert_pem;
  record.key_pem = pem->key_pem;
  store::Compare guard = mod_revision == 0 ? store::Compare::Absent(key)
                                           : store::Compare::ModRevision(key, mod_revision);
  auto r = store_->Commit({{guard}, {store::Op::Put(key, records::CertValue(record))}});
  if (!r.ok()) return r.status();
  return r->succeeded;  // lost a race: someone else just issued or replaced it
}

int Certificates::RenewDue() {
  auto certs = List();
  if (!certs.ok()) return 0;
  int renewed = 0;
  for (const auto& c : *certs) {
    if (c.source == "ca" && !c.app.empty()) {
      auto r = EnsureAppCert(c.app);
      if (r.ok() && *r) ++renewed;
    }
  }
  return renewed;
}

std::vector<PemPair> Certificates::Pems() {
  std::vector<PemPair> out;
  auto kvs = store_->List(records::kCertPrefix);
  if (!kvs.ok()) return out;
  for (const auto& kv : *kvs) {
    records::CertRecord record = records::CertFrom(kv);
    out.push_back({std::move(record.info.cert_pem), std::move(record.key_pem)});
  }
  return out;
}

}  // namespace drawbridge::plane
