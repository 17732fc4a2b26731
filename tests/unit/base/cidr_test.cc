#include "base/cidr.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drawbridge::base {
namespace {

Cidr Must(std::string_view text) {
  auto r = ParseCidr(text);
  if (!r.ok()) {
    ADD_FAILURE() << text << ": " << r.message();
    return {};
  }
  return *r;
}

TEST(CidrTest, ParsesNetworksAndHosts) {
  Cidr v4 = Must("10.0.0.0/8");
  EXPECT_TRUE(v4.v4);
  EXPECT_EQ(v4.prefix, 8);
  EXPECT_EQ(v4.text, "10.0.0.0/8");
  EXPECT_EQ(v4.bytes[0], 10);

  Cidr host = Must("127.0.0.2");
  EXPECT_TRUE(host.v4);
  EXPECT_EQ(host.prefix, 32) << "a bare address is one host";
  EXPECT_EQ(host.text, "127.0.0.2/32");

  Cidr v6 = Must("2001:db8::/32");
  EXPECT_FALSE(v6.v4);
  EXPECT_EQ(v6.prefix, 32);
  EXPECT_EQ(v6.text, "2001:db8::/32");

  Cidr v6host = Must("::1");
  EXPECT_FALSE(v6host.v4);
  EXPECT_EQ(v6host.prefix, 128);
  EXPECT_EQ(v6host.text, "::1/128");

  EXPECT_EQ(Must("0.0.0.0/0").prefix, 0);
  EXPECT_EQ(Must("::/0").prefix, 0);
}

TEST(CidrTest, HostBitsAreCleared) {
  EXPECT_EQ(Must("10.1.2.3/8").text, "10.0.0.0/8");
  EXPECT_EQ(Must("192.168.1.77/25").text, "192.168.1.0/25");
  EXPECT_EQ(Must("2001:db8:ffff::1/33").text, "2001:db8:8000::/33");
  EXPECT_EQ(Must("10.1.2.3/8"), Must("10.0.0.0/8"));
}

TEST(CidrTest, MappedIpv4IsIpv4) {
  Cidr host = Must("::ffff:10.0.0.7");
  EXPECT_TRUE(host.v4);
  EXPECT_EQ(host.text, "10.0.0.7/32");
  Cidr net = Must("::ffff:10.0.0.0/104");
  EXPECT_TRUE(net.v4) << "a mapped prefix of 96 or more is an IPv4 network";
  EXPECT_EQ(net.text, "10.0.0.0/8");
  Cidr all_v4 = Must("::ffff:0:0/96");
  EXPECT_TRUE(all_v4.v4);
  EXPECT_EQ(all_v4.prefix, 0);
  Cidr wider = Must("::ffff:0:0/95");
  EXPECT_FALSE(wider.v4) << "wider than the mapped range: IPv6";
}

TEST(CidrTest, RefusesWhatIsNotANetwork) {
  for (const char* text : {"",
                           "/",
                           "/8",
                           "10.0.0.0/",
                           "10.0.0.0/33",
                           "10.0.0.0/-1",
                           "10.0.0.0/-0",
                           "10.0.0.0/+8",
                           "10.0.0.0/ 8",
                           " 10.0.0.0/8",
                           "10.0.0.0/8 ",
                           "10.0.0.0/0x8",
                           "10.0.0.0/0008",
                           "10.0.0.256",
                           "10.0.0",
                           "1.2.3.4.5",
                           "example.com",
                           "localhost/8",
                           "::/129",
                           "2001:db8::/1280",
                           "10.0.0.0/8/8",
                           "fe80::1%eth0",
                           "[::1]",
                           "::ffff:1.2.3.4/129"}) {
    auto r = ParseCidr(text);
    EXPECT_FALSE(r.ok()) << "accepted \"" << text << "\" as " << (r.ok() ? r->text : "");
    if (!r.ok()) {
      EXPECT_EQ(r.code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(r.message().rfind("network \"" + std::string(text) + "\": ", 0), 0u) << r.message();
    }
  }
  EXPECT_EQ(ParseCidr("10.0.0.0/33").message(),
            "network \"10.0.0.0/33\": the prefix length must be a number from 0 to 32");
  EXPECT_EQ(ParseCidr("::/129").message(),
            "network \"::/129\": the prefix length must be a number from 0 to 128");
  EXPECT_EQ(ParseCidr("example.com").message(),
            "network \"example.com\": expected an IPv4 or IPv6 address, optionally with /LENGTH");
  std::string with_nul("10.0.0.1\0", 9);
  EXPECT_FALSE(ParseCidr(with_nul).ok()) << "the whole view, not up to a NUL";
}

TEST(CidrTest, ContainsIpv4) {
  Cidr net = Must("10.0.0.0/8");
  EXPECT_TRUE(CidrContains(net, "10.0.0.1"));
  EXPECT_TRUE(CidrContains(net, "10.255.255.255"));
  EXPECT_FALSE(CidrContains(net, "11.0.0.0"));
  EXPECT_FALSE(CidrContains(net, "9.255.255.255"));
  EXPECT_TRUE(CidrContains(net, "::ffff:10.1.2.3")) << "the dual-stack form of an IPv4 client";
  EXPECT_FALSE(CidrContains(net, "::ffff:11.1.2.3"));
  EXPECT_FALSE(CidrContains(net, "::a00:1")) << "IPv4-compatible is IPv6, not 10.0.0.1";
  EXPECT_FALSE(CidrContains(net, "2001:db8::1"));

  Cidr odd = Must("192.168.1.0/25");
  EXPECT_TRUE(CidrContains(odd, "192.168.1.127"));
  EXPECT_FALSE(CidrContains(odd, "192.168.1.128"));

  Cidr host = Must("127.0.0.2");
  EXPECT_TRUE(CidrContains(host, "127.0.0.2"));
  EXPECT_FALSE(CidrContains(host, "127.0.0.1"));
  EXPECT_FALSE(CidrContains(host, "127.0.0.3"));

  Cidr all = Must("0.0.0.0/0");
  EXPECT_TRUE(CidrContains(all, "203.0.113.9"));
  EXPECT_FALSE(CidrContains(all, "2001:db8::1")) << "an IPv4 network holds no IPv6 source";
}

TEST(CidrTest, ContainsIpv6) {
  Cidr net = Must("2001:db8::/32");
  EXPECT_TRUE(CidrContains(net, "2001:db8::1"));
  EXPECT_TRUE(CidrContains(net, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(CidrContains(net, "2001:db9::1"));
  EXPECT_FALSE(CidrContains(net, "10.0.0.1"));

  Cidr odd = Must("2001:db8:8000::/33");
  EXPECT_TRUE(CidrContains(odd, "2001:db8:8000::1"));
  EXPECT_FALSE(CidrContains(odd, "2001:db8:7fff::1"));

  Cidr loop = Must("::1");
  EXPECT_TRUE(CidrContains(loop, "::1"));
  EXPECT_FALSE(CidrContains(loop, "::2"));

  // An IPv6 network is compared with an IPv4 client's mapped form: ::/0 is everyone.
  EXPECT_TRUE(CidrContains(Must("::/0"), "10.0.0.1"));
  EXPECT_TRUE(CidrContains(Must("::/0"), "2001:db8::1"));
  EXPECT_TRUE(CidrContains(Must("::ffff:0:0/95"), "192.0.2.1"));
  EXPECT_FALSE(CidrContains(Must("2001:db8::/32"), "::ffff:10.0.0.1"));
}

// Addresses in bytes, as a socket gives them (the DNS server's `internal` check).
TEST(CidrTest, ContainsAddressBytes) {
  const std::vector<uint8_t> v4{10, 1, 2, 3};
  const std::vector<uint8_t> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  const std::vector<uint8_t> compatible{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 2, 3};
  Cidr net = Must("10.0.0.0/8");
  EXPECT_TRUE(CidrContainsAddress(net, v4));
  EXPECT_TRUE(CidrContainsAddress(net, mapped)) << "the dual-stack form of an IPv4 client";
  EXPECT_FALSE(CidrContainsAddress(net, compatible)) << "IPv4-compatible is IPv6";
  EXPECT_TRUE(CidrContainsAddress(Must("::/0"), v4));
  EXPECT_TRUE(CidrContainsAddress(Must("::/0"), compatible));
  EXPECT_TRUE(CidrContainsAddress(Must("::ffff:0:0/96"), v4));
  EXPECT_FALSE(CidrContainsAddress(Must("::/96"), v4)) << "mapped, not compatible";
  EXPECT_TRUE(CidrContainsAddress(Must("::/96"), compatible));
  EXPECT_FALSE(CidrContainsAddress(Must("0.0.0.0/0"), std::vector<uint8_t>{10, 1, 2}));
  EXPECT_FALSE(CidrContainsAddress(Must("::/0"), std::vector<uint8_t>{}));
  EXPECT_FALSE(CidrContainsAddress(Must("::/0"), std::vector<uint8_t>(17, 0)));
}

TEST(CidrTest, UnparsableSourceIsNotContained) {
  Cidr all = Must("::/0");
  for (const char* ip :
       {"", "not-an-ip", "10.0.0.1/32", " 10.0.0.1", "10.0.0.1 ", "[::1]", "10.0.0.256",
        "1:2:3:4:5:6:7:8:9", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255:1"}) {
    EXPECT_FALSE(CidrContains(all, ip)) << ip;
    EXPECT_FALSE(CidrContains(Must("0.0.0.0/0"), ip)) << ip;
  }
  std::string with_nul("10.0.0.1\0", 9);
  EXPECT_FALSE(CidrContains(all, with_nul)) << "the whole view, not up to a NUL";
}

}  // namespace
}  // namespace drawbridge::base
