#include "net/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace drawbridge::net {
namespace {

using testutil::Hex;

ProxyAddresses V4() {
  ProxyAddresses a;
  a.source = {192, 0, 2, 1};
  a.dest = {203, 0, 113, 7};
  a.source_port = 56324;
  a.dest_port = 5432;
  return a;
}

ProxyAddresses V6() {
  ProxyAddresses a;
  a.v6 = true;
  a.source = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  a.dest = {0xfd, 0xaa, 0, 0, 0, 0x2a, 0, 0x01, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
  a.source_port = 65535;
  a.dest_port = 1;
  return a;
}

std::string Text(const base::Bytes& b) { return std::string(b.begin(), b.end()); }

// haproxy proxy-protocol.txt §2.1.
TEST(ProxyProtocolTest, V1Ipv4) {
  EXPECT_EQ(Text(BuildProxyV1(V4())), "PROXY TCP4 192.0.2.1 203.0.113.7 56324 5432\r\n");
}

TEST(ProxyProtocolTest, V1Ipv6) {
  EXPECT_EQ(Text(BuildProxyV1(V6())), "PROXY TCP6 2001:db8::1 fdaa:0:2a:1::1234 65535 1\r\n");
}

TEST(ProxyProtocolTest, V1StaysWithinTheSpecLimit) {
  // The longest possible v1 line is 107 bytes, CRLF included.
  ProxyAddresses a;
  a.v6 = true;
  a.source.fill(0xff);
  a.dest.fill(0xee);
  a.source_port = 65535;
  a.dest_port = 65535;
  std::string line = Text(BuildProxyV1(a));
  EXPECT_LE(line.size(), 107u) << line;
  EXPECT_EQ(line,
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
            "eeee:eeee:eeee:eeee:eeee:eeee:eeee:eeee 65535 65535\r\n");
}

// haproxy proxy-protocol.txt §2.2.
TEST(ProxyProtocolTest, V2Ipv4) {
  EXPECT_EQ(testutil::ToHex(BuildProxyV2(V4())),
            testutil::ToHex(Hex("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a"  // signature
                                "21"                                   // v2, PROXY
                                "11"                                   // AF_INET, STREAM
                                "00 0c"                                // 12 address bytes
                                "c0 00 02 01  cb 00 71 07"             // addresses
                                "dc 04  15 38")));                     // ports
}

TEST(ProxyProtocolTest, V2Ipv6) {
  EXPECT_EQ(testutil::ToHex(BuildProxyV2(V6())),
            testutil::ToHex(Hex("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a"
                                "21 21 00 24"
                                "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01"
                                "fd aa 00 00 00 2a 00 01 00 00 00 00 00 00 12 34"
                                "ff ff 00 01")));
}

}  // namespace
}  // namespace drawbridge::net
