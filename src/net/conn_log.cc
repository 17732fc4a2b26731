#include "net/conn_log.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include "base/logfmt.h"
#include "tls/tls_engine.h"

namespace drawbridge::net {

std::string Address::Ip() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, ip.data(), text, sizeof text) == nullptr) return "?";
  return text;
}

std::string Address::ToString() const {
  return v6 ? "[" + Ip() + "]:" + std::to_string(port) : Ip() + ":" + std::to_string(port);
}

ProxyAddresses ProxyAddressesOf(const Address& client, const Address& local) {
  ProxyAddresses a;
  a.v6 = client.v6;
  a.source = client.ip;
  a.dest = local.ip;
  a.source_port = client.port;
  a.dest_port = local.port;
  return a;
}

void LogConnection(const ConnRecord& r, const tls::TlsEngine* tls, bool tls_ready) {
  using base::LogfmtValue;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  r.started);
  bool established = tls != nullptr && tls_ready;
  spdlog::info(
      "conn client={} local={} app={} handler={} tls={} cipher={} sni={} user={} database={} "
      "server_version={} bytes_in={} bytes_out={} duration_ms={} reason={}",
      r.client.ToString(), r.local.ToString(), LogfmtValue(r.route ? r.route->app : ""),
      r.route ? r.route->HandlerName() : "-", established ? tls->version() : "-",
      established ? tls->cipher() : "-", LogfmtValue(tls ? tls->server_name() : ""),
      LogfmtValue(r.user), LogfmtValue(r.database), LogfmtValue(r.server_version), r.bytes_in,
      r.bytes_out, ms.count(), r.reason ? r.reason : "closed");
}

}  // namespace drawbridge::net
