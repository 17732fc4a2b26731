#include "dns/internal_access.h"

#include <algorithm>

namespace drawbridge::dns {

std::vector<base::Cidr> LoopbackNetworks() {
  return {*base::ParseCidr("127.0.0.0/8"), *base::ParseCidr("::1/128")};
}

bool SourceAllowed(std::span<const base::Cidr> networks, std::span<const uint8_t> address) {
  return std::any_of(networks.begin(), networks.end(), [&](const base::Cidr& net) {
    return base::CidrContainsAddress(net, address);
  });
}

}  // namespace drawbridge::dns
