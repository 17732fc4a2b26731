#include "net/proxy_protocol.h"

#include <arpa/inet.h>

#include <string>

namespace drawbridge::net {

namespace {
std::string Text(bool v6, const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof buf);
  return buf;
}
}  // namespace

base::Bytes BuildProxyV1(const ProxyAddresses& a) {
  std::string line = std::string("PROXY ") + (a.v6 ? "TCP6 " : "TCP4 ") + Text(a.v6, a.source) +
                     " " + Text(a.v6, a.dest) + " " + std::to_string(a.source_port) + " " +
                     std::to_string(a.dest_port) + "\r\n";
  return base::Bytes(line.begin(), line.end());
}

base::Bytes BuildProxyV2(const ProxyAddresses& a) {
  static constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                             0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  base::Bytes out(kSignature, kSignature + sizeof kSignature);
  base::ByteWriter w(&out);
  w.U8(0x21);                    // version 2, command PROXY
  w.U8(a.v6 ? 0x21 : 0x11);      // AF_INET6 or AF_INET, over STREAM
  size_t addr_len = a.v6 ? 16 : 4;
  w.U16(static_cast<uint16_t>(addr_len * 2 + 4));
  w.Append(base::ByteSpan(a.source.data(), addr_len));
  w.Append(base::ByteSpan(a.dest.data(), addr_len));
  w.U16(a.source_port);
  w.U16(a.dest_port);
  return out;
}

}  // namespace drawbridge::net
