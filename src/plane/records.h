// The store's schema for the control plane: every key and JSON value an app, machine, IP,
// release or certificate is written as. The aggregates build keys and values only here, so the
// layout of the store is read in one place (and must stay readable by older data directories).
//
//   apps/<app>                   {"name", "created_at"}
//   machines/<app>/<id>          {"id", "address", "region", "role", "created_at"}
//   ips/<address>                {"address", "type", "region", "app", "created_at"} (dedicated)
//   shared/<address>/<app>       same as ips/, for the shared IPv4 address
//   quarantine/<address>         {"address", "app", "released_at"} (Unix seconds): a released
//                                 dedicated address, kept from allocation for a while (ips.h)
//   releases/<app>/<%08d>        {"version", "toml", "file", "image", "created_at"}
//   certs/<host>                 {"host", "app", "source", "issuer", "names", "not_after",
//                                 "created_at", "cert_pem", "key_pem"}
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "plane/values.h"
#include "store/store.h"

namespace drawbridge::plane::records {

// apps/
inline constexpr const char* kAppPrefix = "apps/";
std::string AppKey(const std::string& app);
std::string AppValue(const AppInfo& app);  // name and created_at only
AppInfo AppFrom(const store::KeyValue& kv);

// machines/<app>/
std::string MachinePrefix(const std::string& app);
std::string MachineKey(const std::string& app, const std::string& id);
std::string MachineValue(const MachineInfo& machine);
MachineInfo MachineFrom(const store::KeyValue& kv);

// ips/ (dedicated addresses, one key per address) and shared/ (the shared IPv4, one key per
// app on it).
inline constexpr const char* kIpPrefix = "ips/";
inline constexpr const char* kSharedIpPrefix = "shared/";
std::string IpKey(const std::string& address);
std::string SharedIpKey(const std::string& address, const std::string& app);
// The key `ip` is stored under: IpKey or SharedIpKey by its type.
std::string IpRecordKey(const IpInfo& ip);
// The address an IpKey names.
std::string AddressOfIpKey(const std::string& key);
std::string IpValue(const IpInfo& ip);  // without "version", which follows from "type"
IpInfo IpFrom(const store::KeyValue& kv);

// quarantine/: one key per released dedicated address, written with the release and deleted
// by the allocation that takes the address again. Kept after the quarantine ends: the record
// says when the address was released, the allocator decides how long that keeps it.
inline constexpr const char* kQuarantinePrefix = "quarantine/";
struct QuarantineRecord {
  std::string address;
  std::string app;          // the app it was released from
  int64_t released_at = 0;  // Unix seconds
};
std::string QuarantineKey(const std::string& address);
std::string QuarantineValue(const QuarantineRecord& q);
QuarantineRecord QuarantineFrom(const store::KeyValue& kv);

// releases/<app>/, in version order.
std::string ReleasePrefix(const std::string& app);
std::string ReleaseKey(const std::string& app, int version);
std::string ReleaseValue(const ReleaseInfo& release);
ReleaseInfo ReleaseFrom(const store::KeyValue& kv);

// certs/: a certificate record is what CertInfo shows plus the key, which is never returned.
inline constexpr const char* kCertPrefix = "certs/";
struct CertRecord {
  CertInfo info;
  std::string key_pem;
};
std::string CertKey(const std::string& host);
std::string CertValue(const CertRecord& cert);
CertRecord CertFrom(const store::KeyValue& kv);

}  // namespace drawbridge::plane::records
