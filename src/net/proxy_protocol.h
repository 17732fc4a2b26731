// PROXY protocol headers towards the machine (haproxy's proxy-protocol.txt, v1 text and v2
// binary). Pure.
#pragma once

#include <array>
#include <cstdint>

#include "base/bytes.h"

namespace drawbridge::net {

struct ProxyAddresses {
  bool v6 = false;
  std::array<uint8_t, 16> source{};  // first 4 bytes used for IPv4
  std::array<uint8_t, 16> dest{};
  uint16_t source_port = 0;
  uint16_t dest_port = 0;
};

base::Bytes BuildProxyV1(const ProxyAddresses& a);
base::Bytes BuildProxyV2(const ProxyAddresses& a);

}  // namespace drawbridge::net
