// Address pools for public IPs: an IPv4 or IPv6 prefix, addressed by index. Pure.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace drawbridge::control {

class IpPool {
 public:
  // "127.0.10.0/24" or "fd00:db:1::/64".
  static base::Result<IpPool> Parse(const std::string& cidr);

  bool v6() const { return v6_; }
  int prefix_length() const { return length_; }
  // Number of addresses, saturated at 2^32.
  uint64_t size() const;
  // The address `index` positions after the network address, as text.
  std::string At(uint64_t index) const;
  bool Contains(const std::string& address) const;
  std::string ToString() const;

 private:
  bool v6_ = false;
  std::array<uint8_t, 16> net_{};
  int length_ = 0;
};

// Canonical text of an IP address ("::1", "127.0.0.1"); empty if `text` is not one.
std::string CanonicalIp(const std::string& text);

}  // namespace drawbridge::control
