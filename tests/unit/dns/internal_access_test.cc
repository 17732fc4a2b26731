// dns::SourceAllowed(): who may read `internal` (docs/dns.md), IPv4 sources given as 4 bytes
// or IPv4-mapped as on the dual-stack socket, and the default of loopback only. Parsing the
// networks is base::ParseCidr's (tests/unit/base/cidr_test.cc).
#include "dns/internal_access.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drawbridge::dns {
namespace {

// An address as the server has it: 4 bytes for IPv4 text, 16 for IPv6 text.
std::vector<uint8_t> Addr(const std::string& text) {
  uint8_t buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) return {buf, buf + 4};
  EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), buf), 1) << text;
  return {buf, buf + 16};
}

std::vector<base::Cidr> Nets(std::initializer_list<const char*> texts) {
  std::vector<base::Cidr> out;
  for (const char* t : texts) {
    auto n = base::ParseCidr(t);
    EXPECT_TRUE(n.ok()) << t << ": " << n.message();
    if (n.ok()) out.push_back(*n);
  }
  return out;
}

bool Allowed(const std::vector<base::Cidr>& nets, const std::string& source) {
  return SourceAllowed(nets, Addr(source));
}

TEST(InternalAccess, LoopbackByDefault) {
  auto nets = LoopbackNetworks();
  for (const char* inside : {"127.0.0.1", "127.0.0.53", "127.255.255.255", "::1",
                             "::ffff:127.0.0.1", "::ffff:127.1.2.3"}) {
    EXPECT_TRUE(Allowed(nets, inside)) << inside;
  }
  for (const char* outside :
       {"192.0.2.1", "10.0.0.5", "128.0.0.1", "126.255.255.255", "0.0.0.0", "::", "::2",
        "2001:db8::1", "fe80::1", "::ffff:192.0.2.1", "::127.0.0.1", "::ffff:128.0.0.1"}) {
    EXPECT_FALSE(Allowed(nets, outside)) << outside;
  }
}

TEST(InternalAccess, ConfiguredNetworks) {
  auto nets = Nets({"192.0.2.0/24", "2001:db8:1::/48", "198.51.100.7"});
  EXPECT_TRUE(Allowed(nets, "192.0.2.1"));
  EXPECT_TRUE(Allowed(nets, "192.0.2.255"));
  EXPECT_TRUE(Allowed(nets, "::ffff:192.0.2.9"));  // IPv4 on the dual-stack socket
  EXPECT_FALSE(Allowed(nets, "192.0.3.1"));
  EXPECT_FALSE(Allowed(nets, "127.0.0.1"));  // the set is exactly what it holds
  EXPECT_TRUE(Allowed(nets, "2001:db8:1:ffff::1"));
  EXPECT_FALSE(Allowed(nets, "2001:db8:2::1"));
  EXPECT_TRUE(Allowed(nets, "198.51.100.7"));  // an address alone is one host
  EXPECT_FALSE(Allowed(nets, "198.51.100.8"));
  EXPECT_FALSE(SourceAllowed(nets, std::vector<uint8_t>{192, 0, 2}));  // not an address
  EXPECT_FALSE(SourceAllowed(nets, std::vector<uint8_t>{}));
  EXPECT_FALSE(SourceAllowed({}, Addr("127.0.0.1")));  // an empty set allows nobody
}

TEST(InternalAccess, PrefixLengthsAtTheEdges) {
  EXPECT_TRUE(Allowed(Nets({"0.0.0.0/0"}), "203.0.113.5"));
  EXPECT_TRUE(Allowed(Nets({"0.0.0.0/0"}), "::ffff:203.0.113.5"));
  EXPECT_FALSE(Allowed(Nets({"0.0.0.0/0"}), "2001:db8::1"));  // IPv4 only
  EXPECT_TRUE(Allowed(Nets({"::/0"}), "2001:db8::1"));
  EXPECT_TRUE(Allowed(Nets({"::/0"}), "203.0.113.5"));  // everything, IPv4 included
  EXPECT_TRUE(Allowed(Nets({"::ffff:0:0/96"}), "203.0.113.5"));
  EXPECT_TRUE(Allowed(Nets({"10.0.0.0/9"}), "10.127.255.255"));
  EXPECT_FALSE(Allowed(Nets({"10.0.0.0/9"}), "10.128.0.0"));
  EXPECT_TRUE(Allowed(Nets({"2001:db8::/33"}), "2001:db8:7fff::1"));
  EXPECT_FALSE(Allowed(Nets({"2001:db8::/33"}), "2001:db8:8000::1"));
  EXPECT_TRUE(Allowed(Nets({"192.0.2.1/32"}), "192.0.2.1"));
  EXPECT_FALSE(Allowed(Nets({"192.0.2.1/32"}), "192.0.2.0"));
}

}  // namespace
}  // namespace drawbridge::dns
