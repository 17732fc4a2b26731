#include "control/ip_pool.h"

#include <arpa/inet.h>

#include "base/parse_int.h"

namespace drawbridge::control {

base::Result<IpPool> IpPool::Parse(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) {
    return base::Status::InvalidArgument("pool \"" + cidr + "\": expected ADDRESS/LENGTH");
  }
  std::string addr = cidr.substr(0, slash);
  IpPool pool;
  pool.v6_ = addr.find(':') != std::string::npos;
  if (inet_pton(pool.v6_ ? AF_INET6 : AF_INET, addr.c_str(), pool.net_.data()) != 1) {
    return base::Status::InvalidArgument("pool \"" + cidr + "\": bad address");
  }
  int max = pool.v6_ ? 128 : 32;
  std::string len = cidr.substr(slash + 1);
  auto length = base::ParseInt(len, 0, 999);  // then the range below, with its own message
  if (!length.ok() || len.size() > 3 || len.front() == '-') {
    return base::Status::InvalidArgument("pool \"" + cidr + "\": bad prefix length");
  }
  pool.length_ = static_cast<int>(*length);
  if (pool.length_ < (pool.v6_ ? 64 : 8) || pool.length_ > max - 2) {
    return base::Status::InvalidArgument("pool \"" + cidr + "\": prefix length must be between " +
                                         std::to_string(pool.v6_ ? 64 : 8) + " and " +
                                         std::to_string(max - 2));
  }
  // Clear host bits.
  for (int bit = pool.length_; bit < max; ++bit) pool.net_[bit / 8] &= ~(0x80 >> (bit % 8));
  return pool;
}

uint64_t IpPool::size() const {
  int host_bits = (v6_ ? 128 : 32) - length_;
  return host_bits >= 32 ? (uint64_t{1} << 32) : (uint64_t{1} << host_bits);
}

std::string IpPool::At(uint64_t index) const {
  std::array<uint8_t, 16> a = net_;
  int last = v6_ ? 15 : 3;
  uint64_t carry = index;
  for (int i = last; i >= 0 && carry != 0; --i) {
    uint64_t sum = a[i] + (carry & 0xFF);
    a[i] = static_cast<uint8_t>(sum);
    carry = (carry >> 8) + (sum >> 8);
  }
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6_ ? AF_INET6 : AF_INET, a.data(), buf, sizeof buf);
  return buf;
}

bool IpPool::Contains(const std::string& address) const {
  std::array<uint8_t, 16> a{};
  if (inet_pton(v6_ ? AF_INET6 : AF_INET, address.c_str(), a.data()) != 1) return false;
  for (int bit = 0; bit < length_; ++bit) {
    uint8_t mask = 0x80 >> (bit % 8);
    if ((a[bit / 8] & mask) != (net_[bit / 8] & mask)) return false;
  }
  return true;
}

std::string IpPool::ToString() const { return At(0) + "/" + std::to_string(length_); }

std::string CanonicalIp(const std::string& text) {
  std::array<uint8_t, 16> a{};
  char buf[INET6_ADDRSTRLEN] = {};
  int family = text.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (inet_pton(family, text.c_str(), a.data()) != 1) return "";
  inet_ntop(family, a.data(), buf, sizeof buf);
  return buf;
}

}  // namespace drawbridge::control
