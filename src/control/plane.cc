#include "control/plane.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <regex>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/fly_toml.h"
#include "tls/ca.h"

namespace drawbridge::control {

namespace {

using json = nlohmann::json;

constexpr int kMaxCasRetries = 32;

std::string Now() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> b(bytes);
  RAND_bytes(b.data(), static_cast<int>(b.size()));
  std::string out;
  char hex[3];
  for (auto c : b) {
    std::snprintf(hex, sizeof hex, "%02x", c);
    out += hex;
  }
  return out;
}

Error Invalid(std::string m) { return {ErrorCode::kInvalid, std::move(m)}; }
Error NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
Error Conflict(std::string m) { return {ErrorCode::kConflict, std::move(m)}; }
Error Internal(const base::Status& s) { return {ErrorCode::kInternal, s.message()}; }

std::string AppKey(const std::string& app) { return "apps/" + app; }
std::string MachinePrefix(const std::string& app) { return "machines/" + app + "/"; }
std::string ReleasePrefix(const std::string& app) { return "releases/" + app + "/"; }
std::string IpKey(const std::string& address) { return "ips/" + address; }
std::string CertKey(const std::string& host) { return "certs/" + host; }
std::string SharedKey(const std::string& address, const std::string& app) {
  return "shared/" + address + "/" + app;
}
std::string ReleaseKey(const std::string& app, int version) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08d", version);
  return ReleasePrefix(app) + buf;
}

json Parse(const store::KeyValue& kv) { return json::parse(kv.value, nullptr, false); }

MachineInfo MachineFrom(const json& j) {
  return {j.value("id", ""), j.value("address", ""), j.value("region", ""), j.value("role", ""),
          j.value("created_at", "")};
}

IpInfo IpFrom(const json& j) {
  IpInfo ip;
  ip.address = j.value("address", "");
  ip.type = j.value("type", "");
  ip.version = ip.type == "v6" ? "v6" : "v4";
  ip.region = j.value("region", "global");
  ip.app = j.value("app", "");
  ip.created_at = j.value("created_at", "");
  return ip;
}

json IpJson(const IpInfo& ip) {
  return {{"address", ip.address}, {"type", ip.type}, {"region", ip.region}, {"app", ip.app},
          {"created_at", ip.created_at}};
}

ReleaseInfo ReleaseFrom(const json& j) {
  return {j.value("version", 0), j.value("toml", ""), j.value("file", ""), j.value("image", ""),
          j.value("created_at", "")};
}

// Major version of a Postgres image tag or server_version: "15", "15.4", "15.18 (Debian...)".
std::optional<int> MajorVersion(const std::string& text) {
  static const std::regex re(R"(^v?(\d+))");
  std::smatch m;
  if (!std::regex_search(text, m, re)) return std::nullopt;
  return std::stoi(m[1]);
}

}  // namespace

bool ValidAppName(const std::string& name) {
  static const std::regex re("^[a-z][a-z0-9-]{0,62}$");
  return std::regex_match(name, re) && name.back() != '-';
}

std::string DefaultConfig(const std::string& app) {
  return "app = \"" + app +
         "\"\n"
         "primary_region = \"local\"\n"
         "\n"
         "[[services]]\n"
         "  internal_port = 8080\n"
         "  protocol = \"tcp\"\n"
         "\n"
         "  [[services.ports]]\n"
         "    handlers = [\"http\"]\n"
         "    port = 80\n"
         "    force_https = true\n"
         "\n"
         "  [[services.ports]]\n"
         "    handlers = [\"tls\", \"http\"]\n"
         "    port = 443\n";
}

void SplitImage(const std::string& image, std::string* registry, std::string* repository,
                std::string* tag) {
  std::string rest = image;
  *registry = "registry-1.docker.io";
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string first = rest.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
        first == "localhost") {
      *registry = first;
      rest = rest.substr(slash + 1);
    }
  }
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    *repository = rest.substr(0, colon);
    *tag = rest.substr(colon + 1);
  } else {
    *repository = rest;
    *tag = "latest";
  }
}

base::Result<std::unique_ptr<ControlPlane>> ControlPlane::Create(store::Store* store,
                                                                 PlaneOptions options) {
  auto v4 = IpPool::Parse(options.v4_pool);
  if (!v4.ok()) return v4.status();
  auto v6 = IpPool::Parse(options.v6_pool);
  if (!v6.ok()) return v6.status();
  if (v4->v6() || !v6->v6()) return base::Status::Error("the v4 pool must be IPv4 and the v6 pool IPv6");
  return std::unique_ptr<ControlPlane>(new ControlPlane(store, std::move(options), *v4, *v6));
}

Outcome<bool> ControlPlane::RequireApp(const std::string& app) {
  if (!ValidAppName(app)) return Invalid("invalid app name \"" + app + "\"");
  auto kv = store_->Get(AppKey(app));
  if (!kv.ok()) return Internal(kv.status());
  if (!kv->has_value()) return NotFound("app \"" + app + "\" not found");
  return true;
}

Outcome<AppInfo> ControlPlane::CreateApp(const std::string& name) {
  if (!ValidAppName(name)) {
    return Invalid("invalid app name \"" + name +
                   "\": use 1-63 lower-case letters, digits and '-', starting with a letter and "
                   "not ending with '-'");
  }
  AppInfo info{name, Now()};
  json j = {{"name", name}, {"created_at", info.created_at}};
  auto r = store_->Commit({{store::Compare::Absent(AppKey(name))},
                           {store::Op::Put(AppKey(name), j.dump())}});
  if (!r.ok()) return Internal(r.status());
  if (!r->succeeded) return Conflict("app \"" + name + "\" already exists");
  return info;
}

Outcome<std::vector<AppInfo>> ControlPlane::ListApps() {
  auto apps = store_->List("apps/");
  if (!apps.ok()) return Internal(apps.status());
  std::vector<AppInfo> out;
  for (const auto& kv : *apps) {
    json j = Parse(kv);
    AppInfo a{j.value("name", ""), j.value("created_at", "")};
    if (auto m = ListMachines(a.name); m.ok()) a.machines = static_cast<int>(m.value->size());
    if (auto i = ListIps(a.name); i.ok()) a.ips = static_cast<int>(i.value->size());
    if (auto r = LatestRelease(a.name); r.ok() && *r.value) a.release = (*r.value)->version;
    out.push_back(std::move(a));
  }
  return out;
}

Outcome<bool> ControlPlane::DestroyApp(const std::string& name) {
  if (auto ok = RequireApp(name); !ok.ok()) return ok.error;
  auto ips = ListIps(name);
  if (!ips.ok()) return ips.error;
  store::Txn txn;
  txn.ops.push_back(store::Op::Delete(AppKey(name)));
  txn.ops.push_back(store::Op::DeletePrefix(MachinePrefix(name)));
  txn.ops.push_back(store::Op::DeletePrefix(ReleasePrefix(name)));
  for (const auto& ip : *ips.value) {
    txn.ops.push_back(store::Op::Delete(ip.type == "shared_v4" ? SharedKey(ip.address, name)
                                                               : IpKey(ip.address)));
  }
  auto r = store_->Commit(txn);
  if (!r.ok()) return Internal(r.status());
  return true;
}

Outcome<MachineInfo> ControlPlane::AddMachine(const std::string& app, const std::string& address,
                                              const std::string& region,
                                              const std::string& role) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  static const std::regex host_re(R"(^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$)");
  bool is_ip = !CanonicalIp(address).empty();
  if (!is_ip && !std::regex_match(address, host_re)) {
    return Invalid("invalid machine address \"" + address + "\": give an IP address or a host name");
  }
  static const std::regex label_re("^[a-z0-9-]{0,32}$");
  if (!std::regex_match(region, label_re) || !std::regex_match(role, label_re)) {
    return Invalid("region and role: up to 32 lower-case letters, digits and '-'");
  }
  MachineInfo m{RandomHex(7), is_ip ? CanonicalIp(address) : address,
                region.empty() ? "local" : region, role, Now()};
  json j = {{"id", m.id}, {"address", m.address}, {"region", m.region}, {"role", m.role},
            {"created_at", m.created_at}};
  std::string key = MachinePrefix(app) + m.id;
  auto w = store_->Commit({{store::Compare::Absent(key)}, {store::Op::Put(key, j.dump())}});
  if (!w.ok()) return Internal(w.status());
  if (!w->succeeded) return Conflict("machine id collision; try again");
  return m;
}

Outcome<std::vector<MachineInfo>> ControlPlane::ListMachines(const std::string& app) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  auto kvs = store_->List(MachinePrefix(app));
  if (!kvs.ok()) return Internal(kvs.status());
  std::vector<MachineInfo> out;
  for (const auto& kv : *kvs) out.push_back(MachineFrom(Parse(kv)));
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return out;
}

Outcome<bool> ControlPlane::RemoveMachine(const std::string& app, const std::string& id) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  std::string key = MachinePrefix(app) + id;
  auto kv = store_->Get(key);
  if (!kv.ok()) return Internal(kv.status());
  if (!kv->has_value()) return NotFound("machine \"" + id + "\" not found in app \"" + app + "\"");
  auto r = store_->Commit({{store::Compare::ModRevision(key, (*kv)->mod_revision)},
                           {store::Op::Delete(key)}});
  if (!r.ok()) return Internal(r.status());
  return true;
}

Outcome<IpInfo> ControlPlane::AllocateIp(const std::string& app, const std::string& type) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  if (type != "v4" && type != "shared_v4" && type != "v6") {
    return Invalid("unknown IP type \"" + type + "\" (v4, shared_v4 or v6)");
  }
  IpInfo ip;
  ip.type = type;
  ip.version = type == "v6" ? "v6" : "v4";
  ip.app = app;
  ip.created_at = Now();
  if (type == "shared_v4") {
    // The pool's first host address is the shared one; apps on it are told apart by SNI.
    ip.address = v4_.At(1);
    auto r = store_->Commit({{store::Compare::Absent(SharedKey(ip.address, app))},
                             {store::Op::Put(SharedKey(ip.address, app), IpJson(ip).dump())}});
    if (!r.ok()) return Internal(r.status());
    if (!r->succeeded) return Conflict("app \"" + app + "\" already has the shared IPv4 " + ip.address);
    EnsureAppCert(app);
    return ip;
  }
  const IpPool& pool = type == "v6" ? v6_ : v4_;
  // Dedicated addresses: the first free one; the store's compare-and-set settles races (two
  // allocators that pick the same address: one commits, the other retries).
  uint64_t first = type == "v6" ? 1 : 2;
  uint64_t last = pool.v6() ? std::min<uint64_t>(pool.size() - 1, uint64_t{1} << 20)
                            : pool.size() - 2;  // skip the broadcast address
  for (int attempt = 0; attempt < kMaxCasRetries; ++attempt) {
    auto taken = store_->List("ips/");
    if (!taken.ok()) return Internal(taken.status());
    std::set<std::string> used;
    for (const auto& kv : *taken) used.insert(kv.key.substr(4));
    ip.address.clear();
    for (uint64_t i = first; i <= last; ++i) {
      std::string candidate = pool.At(i);
      if (!used.count(candidate)) {
        ip.address = candidate;
        break;
      }
    }
    if (ip.address.empty()) {
      return Conflict("the " + std::string(pool.v6() ? "IPv6" : "IPv4") + " pool " +
                      pool.ToString() + " has no free address");
    }
    auto r = store_->Commit({{store::Compare::Absent(IpKey(ip.address))},
                             {store::Op::Put(IpKey(ip.address), IpJson(ip).dump())}});
    if (!r.ok()) return Internal(r.status());
    if (r->succeeded) {
      EnsureAppCert(app);  // a failure is logged by the caller's next renewal pass
      return ip;
    }
  }
  return Conflict("too much contention allocating an address; try again");
}

Outcome<std::vector<IpInfo>> ControlPlane::ListIps(const std::string& app) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  std::vector<IpInfo> out;
  for (const char* prefix : {"ips/", "shared/"}) {
    auto kvs = store_->List(prefix);
    if (!kvs.ok()) return Internal(kvs.status());
    for (const auto& kv : *kvs) {
      IpInfo ip = IpFrom(Parse(kv));
      if (ip.app == app) out.push_back(std::move(ip));
    }
  }
  std::sort(out.begin(), out.end(), [](const IpInfo& a, const IpInfo& b) {
    return std::tie(a.version, a.created_at, a.address) < std::tie(b.version, b.created_at, b.address);
  });
  return out;
}

Outcome<IpInfo> ControlPlane::ReleaseIp(const std::string& app, const std::string& address) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  std::string canonical = CanonicalIp(address);
  if (canonical.empty()) return Invalid("Invalid IP address: '" + address + "'");
  for (const std::string& key : {IpKey(canonical), SharedKey(canonical, app)}) {
    auto kv = store_->Get(key);
    if (!kv.ok()) return Internal(kv.status());
    if (!kv->has_value()) continue;
    IpInfo ip = IpFrom(Parse(**kv));
    if (ip.app != app) continue;
    auto r = store_->Commit({{store::Compare::ModRevision(key, (*kv)->mod_revision)},
                             {store::Op::Delete(key)}});
    if (!r.ok()) return Internal(r.status());
    if (!r->succeeded) return Conflict("the address changed while releasing it; try again");
    return ip;
  }
  return NotFound("app \"" + app + "\" has no IP address " + canonical);
}

Outcome<std::optional<ReleaseInfo>> ControlPlane::LatestRelease(const std::string& app) {
  auto kvs = store_->List(ReleasePrefix(app));
  if (!kvs.ok()) return Internal(kvs.status());
  if (kvs->empty()) return std::optional<ReleaseInfo>();
  return std::optional<ReleaseInfo>(ReleaseFrom(Parse(kvs->back())));
}

Outcome<ReleaseInfo> ControlPlane::CurrentConfig(const std::string& app) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  auto latest = LatestRelease(app);
  if (!latest.ok()) return latest.error;
  if (*latest.value) return **latest.value;
  ReleaseInfo r;
  r.toml = DefaultConfig(app);
  r.file = "fly.toml";
  return r;
}

Outcome<AppConfig> ControlPlane::CurrentServices(const std::string& app) {
  auto current = CurrentConfig(app);
  if (!current.ok()) return current.error;
  auto parsed = config::ParseFlyToml(current.value->toml, "fly.toml");
  if (!parsed.ok()) return Internal(parsed.status());
  return parsed->config;
}

Outcome<std::vector<std::string>> ControlPlane::Validate(const std::string& app,
                                                        const std::string& toml,
                                                        const std::string& file) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  if (toml.size() > 512 * 1024) return Invalid(file + ": larger than 512 KiB");
  auto parsed = config::ParseFlyToml(toml, file.empty() ? "fly.toml" : file);
  if (!parsed.ok()) return Invalid(parsed.message());
  std::vector<std::string> warnings = parsed->warnings;
  if (!parsed->config.app.empty() && parsed->config.app != app) {
    warnings.push_back(file + ": app: the file names app \"" + parsed->config.app +
                       "\"; deploying to \"" + app + "\"");
  }
  for (size_t s = 0; s < parsed->config.services.size(); ++s) {
    const auto& svc = parsed->config.services[s];
    for (size_t p = 0; p < svc.ports.size(); ++p) {
      if (svc.ports[p].HasHandler("http")) {
        warnings.push_back(file + ": services[" + std::to_string(s) + "].ports[" +
                           std::to_string(p) +
                           "].handlers: the \"http\" handler is not served by this edge yet; the "
                           "port is not opened");
      }
    }
  }
  return warnings;
}

Outcome<DeployResult> ControlPlane::Deploy(const std::string& app, const std::string& toml,
                                           const std::string& file, const std::string& image) {
  auto warnings = Validate(app, toml, file);
  if (!warnings.ok()) return warnings.error;
  if (!image.empty()) {
    std::string registry, repository, tag;
    SplitImage(image, &registry, &repository, &tag);
    auto want = MajorVersion(tag);
    std::lock_guard lock(observed_mu_);
    for (const auto& [key, version] : observed_) {
      if (key.first != app) continue;
      auto have = MajorVersion(version);
      if (want && have && *want != *have) {
        return Invalid("image " + image + " is PostgreSQL " + std::to_string(*want) +
                       " but the app's machines run PostgreSQL " + version +
                       "; a major version change needs a dump and restore, not a deploy");
      }
    }
  }
  for (int attempt = 0; attempt < kMaxCasRetries; ++attempt) {
    auto latest = LatestRelease(app);
    if (!latest.ok()) return latest.error;
    int version = *latest.value ? (*latest.value)->version + 1 : 1;
    std::string keep_image = image.empty() && *latest.value ? (*latest.value)->image : image;
    json j = {{"version", version}, {"toml", toml},
              {"file", file.empty() ? "fly.toml" : file}, {"image", keep_image},
              {"created_at", Now()}};
    auto r = store_->Commit({{store::Compare::Absent(ReleaseKey(app, version))},
                             {store::Op::Put(ReleaseKey(app, version), j.dump())}});
    if (!r.ok()) return Internal(r.status());
    if (r->succeeded) return DeployResult{version, *warnings.value};
  }
  return Conflict("too many concurrent deploys; try again");
}

Outcome<std::vector<ReleaseInfo>> ControlPlane::ListReleases(const std::string& app) {
  if (auto ok = RequireApp(app); !ok.ok()) return ok.error;
  auto kvs = store_->List(ReleasePrefix(app));
  if (!kvs.ok()) return Internal(kvs.status());
  std::vector<ReleaseInfo> out;
  for (auto it = kvs->rbegin(); it != kvs->rend(); ++it) out.push_back(ReleaseFrom(Parse(*it)));
  return out;
}

namespace {

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

CertInfo CertFrom(const json& j) {
  CertInfo c;
  c.host = j.value("host", "");
  c.app = j.value("app", "");
  c.source = j.value("source", "");
  c.issuer = j.value("issuer", "");
  c.names = j.value("names", std::vector<std::string>{});
  c.not_after = j.value("not_after", int64_t{0});
  c.created_at = j.value("created_at", "");
  c.cert_pem = j.value("cert_pem", "");
  return c;
}

bool ValidHostName(const std::string& host) {
  static const std::regex re(
      R"(^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$)");
  return host.size() <= 253 && std::regex_match(host, re);
}

}  // namespace

Outcome<CertInfo> ControlPlane::AddCert(const std::string& host, const std::string& cert_pem,
                                        const std::string& key_pem) {
  std::string h = host;
  for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!ValidHostName(h)) return Invalid("invalid host name \"" + host + "\"");
  if (cert_pem.size() > 64 * 1024 || key_pem.size() > 64 * 1024) {
    return Invalid("certificate or key larger than 64 KiB");
  }
  auto facts = tls::CheckCertificate(h, cert_pem, key_pem);
  if (!facts.ok()) return Invalid("certificate for " + h + " refused: " + facts.message());
  CertInfo info;
  info.host = h;
  std::string suffix = "." + options_.domain;
  if (h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0) {
    info.app = h.substr(0, h.size() - suffix.size());
  }
  info.source = "operator";
  info.issuer = facts->issuer;
  info.names = facts->dns_names;
  info.not_after = facts->not_after;
  info.created_at = Now();
  info.cert_pem = cert_pem;
  json j = {{"host", info.host}, {"app", info.app}, {"source", info.source},
            {"issuer", info.issuer}, {"names", info.names}, {"not_after", info.not_after},
            {"created_at", info.created_at}, {"cert_pem", cert_pem}, {"key_pem", key_pem}};
  auto r = store_->Commit({{}, {store::Op::Put(CertKey(h), j.dump())}});
  if (!r.ok()) return Internal(r.status());
  return info;
}

Outcome<std::vector<CertInfo>> ControlPlane::ListCerts() {
  auto kvs = store_->List("certs/");
  if (!kvs.ok()) return Internal(kvs.status());
  std::vector<CertInfo> out;
  for (const auto& kv : *kvs) out.push_back(CertFrom(Parse(kv)));
  return out;
}

Outcome<CertInfo> ControlPlane::ShowCert(const std::string& host) {
  std::string h = host;
  for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto kv = store_->Get(CertKey(h));
  if (!kv.ok()) return Internal(kv.status());
  if (!kv->has_value()) return NotFound("no certificate for " + h);
  return CertFrom(Parse(**kv));
}

Outcome<std::string> ControlPlane::CaPem() {
  if (options_.ca_dir.empty()) return NotFound("this daemon has no built-in CA");
  std::ifstream in(options_.ca_dir + "/ca.crt");
  if (!in) return Internal(base::Status::Error(options_.ca_dir + "/ca.crt: cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Outcome<bool> ControlPlane::EnsureAppCert(const std::string& app) {
  if (options_.ca_dir.empty()) return false;
  std::string host = app + "." + options_.domain;
  auto kv = store_->Get(CertKey(host));
  if (!kv.ok()) return Internal(kv.status());
  int64_t mod_revision = 0;
  if (kv->has_value()) {
    CertInfo existing = CertFrom(Parse(**kv));
    if (existing.source != "ca") return false;  // the operator's certificate is theirs to renew
    if (existing.not_after - UnixNow() > int64_t{options_.renew_before_days} * 86400) return false;
    mod_revision = (*kv)->mod_revision;
  }
  tls::CaFiles ca{options_.ca_dir + "/ca.crt", options_.ca_dir + "/ca.key"};
  auto pem = tls::IssueLeaf(ca, {host}, options_.cert_days);
  if (!pem.ok()) return Internal(pem.status());
  auto facts = tls::CheckCertificate(host, pem->cert_pem, pem->key_pem);
  if (!facts.ok()) return Internal(facts.status());
  json j = {{"host", host}, {"app", app}, {"source", "ca"}, {"issuer", facts->issuer},
            {"names", facts->dns_names}, {"not_after", facts->not_after},
            {"created_at", Now()}, {"cert_pem", pem->cert_pem}, {"key_pem", pem->key_pem}};
  store::Compare guard = mod_revision == 0 ? store::Compare::Absent(CertKey(host))
                                           : store::Compare::ModRevision(CertKey(host), mod_revision);
  auto r = store_->Commit({{guard}, {store::Op::Put(CertKey(host), j.dump())}});
  if (!r.ok()) return Internal(r.status());
  return r->succeeded;  // lost a race: someone else just issued or replaced it
}

int ControlPlane::RenewDueCerts() {
  auto certs = ListCerts();
  if (!certs.ok()) return 0;
  int renewed = 0;
  for (const auto& c : *certs.value) {
    if (c.source == "ca" && !c.app.empty()) {
      auto r = EnsureAppCert(c.app);
      if (r.ok() && *r.value) ++renewed;
    }
  }
  return renewed;
}

std::vector<PemPair> ControlPlane::CertPems() {
  std::vector<PemPair> out;
  auto kvs = store_->List("certs/");
  if (!kvs.ok()) return out;
  for (const auto& kv : *kvs) {
    json j = Parse(kv);
    out.push_back({j.value("cert_pem", ""), j.value("key_pem", "")});
  }
  return out;
}

void ControlPlane::ObserveServerVersion(const std::string& app, const std::string& address,
                                        const std::string& version) {
  std::lock_guard lock(observed_mu_);
  observed_[{app, address}] = version;
}

Outcome<ImageInfo> ControlPlane::Image(const std::string& app) {
  auto latest = CurrentConfig(app);
  if (!latest.ok()) return latest.error;
  ImageInfo info;
  if (!latest.value->image.empty()) {
    SplitImage(latest.value->image, &info.registry, &info.repository, &info.tag);
  }
  if (latest.value->version > 0) info.version = "v" + std::to_string(latest.value->version);
  auto machines = ListMachines(app);
  if (!machines.ok()) return machines.error;
  std::lock_guard lock(observed_mu_);
  for (const auto& m : *machines.value) {
    auto it = observed_.find({app, m.address});
    info.machines.push_back({m.id, m.address, it == observed_.end() ? "" : it->second});
  }
  return info;
}

Outcome<std::string> ControlPlane::ConnectionString(const std::string& app,
                                                    const std::string& internal_url) {
  auto services = CurrentServices(app);
  if (!services.ok()) return services.error;
  std::string host = app + "." + options_.domain;
  // postgres[ql]://[user[:password]@]host[:port][/db][?params]
  static const std::regex url_re(
      R"(^(postgres(?:ql)?)://(?:([^@/]*)@)?(\[[^\]]+\]|[^:/?]*)(?::(\d+))?(/[^?]*)?(?:\?(.*))?$)");
  std::smatch m;
  std::string url = internal_url.empty() ? "postgres://postgres@" + app + ".internal:5432/postgres"
                                         : internal_url;
  if (!std::regex_match(url, m, url_re)) {
    return Invalid("not a postgres:// connection string: " + url);
  }
  int internal_port = m[4].matched ? std::stoi(m[4]) : 5432;
  int public_port = 0;
  for (const auto& s : services.value->services) {
    for (const auto& p : s.ports) {
      if (!p.HasHandler("pg_tls") || p.PublicPorts().empty()) continue;
      if (public_port == 0 || s.internal_port == internal_port) public_port = p.PublicPorts()[0];
      if (s.internal_port == internal_port) break;
    }
  }
  if (public_port == 0) {
    return Invalid("app \"" + app + "\" has no pg_tls service; deploy one first (see fly.toml's "
                   "[[services]] with handlers = [\"pg_tls\"])");
  }
  std::string params;
  if (m[6].matched) {
    std::string rest = m[6];
    size_t start = 0;
    while (start <= rest.size()) {
      size_t amp = rest.find('&', start);
      std::string kv = rest.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
      if (!kv.empty() && kv.rfind("sslmode=", 0) != 0) params += "&" + kv;
      if (amp == std::string::npos) break;
      start = amp + 1;
    }
  }
  std::string out = std::string(m[1]) + "://" + (m[2].matched ? std::string(m[2]) + "@" : "") +
                    host + ":" + std::to_string(public_port) + (m[5].matched ? std::string(m[5]) : "") +
                    "?sslmode=require" + params;
  return out;
}

base::Result<ControlPlane::ZoneData> ControlPlane::BuildZoneData() {
  ZoneData zone;
  auto revision = store_->Revision();
  if (!revision.ok()) return revision.status();
  zone.revision = *revision;
  auto apps = store_->List("apps/");
  if (!apps.ok()) return apps.status();
  for (const auto& kv : *apps) {
    std::string app = Parse(kv).value("name", "");
    auto& pub = zone.public_ips[app];
    auto& internal = zone.internal_ips[app];
    if (auto ips = ListIps(app); ips.ok()) {
      for (const auto& ip : *ips.value) pub.push_back(ip.address);
    }
    if (auto machines = ListMachines(app); machines.ok()) {
      for (const auto& m : *machines.value) {
        if (!CanonicalIp(m.address).empty()) internal.push_back(m.address);
      }
    }
  }
  return zone;
}

base::Result<std::shared_ptr<const RouteTable>> ControlPlane::BuildRouteTable() {
  auto revision = store_->Revision();
  if (!revision.ok()) return revision.status();
  auto apps = store_->List("apps/");
  if (!apps.ok()) return apps.status();
  std::vector<RouteTable::Entry> entries;
  for (const auto& kv : *apps) {
    std::string app = Parse(kv).value("name", "");
    auto latest = LatestRelease(app);
    if (!latest.ok() || !*latest.value) continue;  // nothing deployed: nothing exposed
    auto parsed = config::ParseFlyToml((*latest.value)->toml, (*latest.value)->file);
    if (!parsed.ok()) continue;
    parsed->config.app = app;
    auto machines = ListMachines(app);
    auto ips = ListIps(app);
    if (!machines.ok() || !ips.ok()) continue;
    std::vector<Machine> ms;
    for (const auto& m : *machines.value) ms.push_back({m.id, m.address});
    for (const auto& ip : *ips.value) {
      for (auto& e : RoutesForApp(parsed->config, ms)) {
        e.local_ip = ip.address;
        e.route.host = app + "." + options_.domain;
        entries.push_back(std::move(e));
      }
    }
  }
  return std::make_shared<const RouteTable>(static_cast<uint64_t>(*revision), std::move(entries));
}

}  // namespace drawbridge::control
