#include "plane/records.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

namespace drawbridge::plane::records {

namespace {

using json = nlohmann::json;

json Parse(const store::KeyValue& kv) { return json::parse(kv.value, nullptr, false); }

}  // namespace

std::string AppKey(const std::string& app) { return kAppPrefix + app; }

std::string AppValue(const AppInfo& app) {
  json j = {{"name", app.name}, {"created_at", app.created_at}};
  return j.dump();
}

AppInfo AppFrom(const store::KeyValue& kv) {
  json j = Parse(kv);
  return {j.value("name", ""), j.value("created_at", "")};
}

std::string MachinePrefix(const std::string& app) { return "machines/" + app + "/"; }

std::string MachineKey(const std::string& app, const std::string& id) {
  return MachinePrefix(app) + id;
}

std::string MachineValue(const MachineInfo& m) {
  json j = {{"id", m.id},
            {"address", m.address},
            {"region", m.region},
            {"role", m.role},
            {"created_at", m.created_at}};
  return j.dump();
}

MachineInfo MachineFrom(const store::KeyValue& kv) {
  json j = Parse(kv);
  return {j.value("id", ""), j.value("address", ""), j.value("region", ""), j.value("role", ""),
          j.value("created_at", "")};
}

std::string IpKey(const std::string& address) { return kIpPrefix + address; }

std::string SharedIpKey(const std::string& address, const std::string& app) {
  return kSharedIpPrefix + address + "/" + app;
}

std::string IpRecordKey(const IpInfo& ip) {
  return ip.type == "shared_v4" ? SharedIpKey(ip.address, ip.app) : IpKey(ip.address);
}

std::string AddressOfIpKey(const std::string& key) { return key.substr(std::strlen(kIpPrefix)); }

std::string IpValue(const IpInfo& ip) {
  json j = {{"address", ip.address},
            {"type", ip.type},
            {"region", ip.region},
            {"app", ip.app},
            {"created_at", ip.created_at}};
  return j.dump();
}

IpInfo IpFrom(const store::KeyValue& kv) {
  json j = Parse(kv);
  IpInfo ip;
  ip.address = j.value("address", "");
  ip.type = j.value("type", "");
  ip.version = ip.type == "v6" ? "v6" : "v4";
  ip.region = j.value("region", "global");
  ip.app = j.value("app", "");
  ip.created_at = j.value("created_at", "");
  return ip;
}

std::string QuarantineKey(const std::string& address) { return kQuarantinePrefix + address; }

std::string QuarantineValue(const QuarantineRecord& q) {
  json j = {{"address", q.address}, {"app", q.app}, {"released_at", q.released_at}};
  return j.dump();
}

QuarantineRecord QuarantineFrom(const store::KeyValue& kv) {
  json j = Parse(kv);
  QuarantineRecord q;
  q.address = j.value("address", kv.key.substr(std::strlen(kQuarantinePrefix)));
  q.app = j.value("app", "");
  q.released_at = j.value("released_at", int64_t{0});
  return q;
}

std::string ReleasePrefix(const std::string& app) { return "releases/" + app + "/"; }

std::string ReleaseKey(const std::string& app, int version) {
  // Zero-padded so that the store's key order is the version order.
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08d", version);
  return ReleasePrefix(app) + buf;
}

std::string ReleaseValue(const ReleaseInfo& r) {
  json j = {{"version", r.version},
            {"toml", r.toml},
            {"file", r.file},
            {"image", r.image},
            {"created_at", r.created_at}};
  return j.dump();
}

ReleaseInfo ReleaseFrom(const store::KeyValue& kv) {
  json j = Parse(kv);
  return {j.value("version", 0), j.value("toml", ""), j.value("file", ""), j.value("image", ""),
          j.value("created_at", "")};
}

std::string CertKey(const std::string& host) { return kCertPrefix + host; }

std::string CertValue(const CertRecord& cert) {
  const CertInfo& c = cert.info;
  json j = {{"host", c.host},
            {"app", c.app},
            {"source", c.source},
            {"issuer", c.issuer},
            {"names", c.names},
            {"not_after", c.not_after},
            {"created_at", c.created_at},
            {"cert_pem", c.cert_pem},
            {"key_pem", cert.key_pem}};
  return j.dump();
}

CertRecord CertFrom(const store::KeyValue& kv) {
  json j = Parse(kv);
  CertRecord r;
  CertInfo& c = r.info;
  c.host = j.value("host", "");
  c.app = j.value("app", "");
  c.source = j.value("source", "");
  c.issuer = j.value("issuer", "");
  c.names = j.value("names", std::vector<std::string>{});
  c.not_after = j.value("not_after", int64_t{0});
  c.created_at = j.value("created_at", "");
  c.cert_pem = j.value("cert_pem", "");
  r.key_pem = j.value("key_pem", "");
  return r;
}

}  // namespace drawbridge::plane::records
