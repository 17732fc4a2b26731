#include "daemon/fleet_flags.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>

#include "base/parse_int.h"
#include "store/etcd_store.h"

namespace drawbridge::daemon {

namespace {

using base::Status;

constexpr const char* kMakeSecret =
    "make one with `openssl rand -base64 32 > fleet.secret && chmod 600 fleet.secret` and give "
    "every node of the fleet the same file";

// "ADDR:PORT" with ADDR an IPv4 address or a bracketed IPv6 one, PORT 0-65535.
bool IsAddressAndPort(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  auto port = base::ParseInt(std::string_view(text).substr(colon + 1), 0, 65535);
  if (!port.ok()) return false;
  std::string host = text.substr(0, colon);
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  }
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1;
}

}  // namespace

bool IsNodeName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

std::string DefaultNodeName() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "";
  std::string name(host);
  name = name.substr(0, name.find('.'));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return IsNodeName(name) ? name : "";
}

base::Result<StoreChoice> CheckFleetFlags(const Flags& f) {
  StoreChoice choice;
  if (!f.node.empty()) {
    if (!IsNodeName(f.node)) {
      return Status::InvalidArgument(
          "--node \"" + f.node +
          "\" is not a node name: one DNS label in lower case, 1-63 letters a-z, digits and "
          "'-', not starting or ending with '-'");
    }
    choice.node = f.node;
  } else {
    choice.node = DefaultNodeName();
  }
  if (!f.store_url.empty() && !f.config_path.empty()) {
    return Status::InvalidArgument(
        "--store is for control-plane mode; --config (static mode) keeps no store");
  }
  if (!f.store_url.empty()) {
    if (f.store_url.rfind("etcd://", 0) != 0) {
      return Status::InvalidArgument("--store \"" + f.store_url +
                                     "\": unknown store; give etcd://HOST:PORT[,HOST:PORT...] "
                                     "(without --store, SQLite in the data dir)");
    }
    auto endpoints = store::ParseEtcdUrl(f.store_url);
    if (!endpoints.ok()) return endpoints.status().WithPrefix("--store: ");
    choice.etcd = true;
    choice.endpoints = std::move(*endpoints);
  }
  // The flags that only a node of a fleet reads: given without etcd, they would do nothing.
  const std::pair<const char*, const std::string*> fleet_only[] = {
      {"--fleet-secret-file", &f.fleet_secret_file}, {"--etcd-prefix", &f.etcd_prefix},
      {"--etcd-cacert", &f.etcd_cacert},             {"--etcd-cert", &f.etcd_cert},
      {"--etcd-key", &f.etcd_key},                   {"--etcd-user", &f.etcd_user},
      {"--etcd-password-file", &f.etcd_password_file}, {"--peer-listen", &f.peer_listen}};
  if (!choice.etcd) {
    for (const auto& [flag, value] : fleet_only) {
      if (!value->empty()) {
        return Status::InvalidArgument(std::string(flag) +
                                       " is for fleet mode: it needs --store etcd://HOST:PORT");
      }
    }
    return choice;
  }
  if (f.fleet_secret_file.empty()) {
    return Status::InvalidArgument(
        "--store " + f.store_url +
        " needs --fleet-secret-file: the nodes of a fleet prove they belong to it and seal the "
        "certificates' keys in etcd with it; " + kMakeSecret);
  }
  if (choice.node.empty()) {
    return Status::InvalidArgument(
        "this host's name is not a node name (one DNS label: a-z, 0-9, '-'): give --node NAME");
  }
  if (!f.etcd_prefix.empty()) {
    if (f.etcd_prefix.front() != '/' || f.etcd_prefix.back() != '/' || f.etcd_prefix.size() < 2) {
      return Status::InvalidArgument("--etcd-prefix \"" + f.etcd_prefix +
                                     "\": it must start and end with '/', e.g. /drawbridge/");
    }
    choice.prefix = f.etcd_prefix;
  }
  if (f.etcd_cert.empty() != f.etcd_key.empty()) {
    return Status::InvalidArgument(
        "give --etcd-cert and --etcd-key together: the client certificate and its key");
  }
  if (f.etcd_user.empty() != f.etcd_password_file.empty()) {
    return Status::InvalidArgument(
        "give --etcd-user and --etcd-password-file together: the etcd user and its password");
  }
  if (!f.peer_listen.empty() && !IsAddressAndPort(f.peer_listen)) {
    return Status::InvalidArgument("--peer-listen \"" + f.peer_listen +
                                   "\": give ADDR:PORT, e.g. 127.0.0.1:7946 or [::1]:7946 (port "
                                   "0: any free one)");
  }
  return choice;
}

}  // namespace drawbridge::daemon
