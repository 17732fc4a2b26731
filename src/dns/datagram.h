// One UDP datagram together with the local address it was sent to, so that the answer leaves
// from that same address. A resolver takes an answer only from the address it asked (dig:
// "reply from unexpected source"), but a socket bound to a wildcard address (the server's
// [::]) lets the kernel choose the source of what it sends, by routing: for a query sent to
// any address but the primary one of its interface (a second public address, an alias, or
// 127.0.0.2 on the host itself) that is the wrong one. So the query's destination is read
// with recvmsg (IP_PKTINFO, IPV6_PKTINFO) and handed back to sendmsg as the source.
//
// On a dual-stack IPv6 socket Linux reports an IPv4 datagram's destination as an
// IPv4-mapped IPV6_PKTINFO, and takes the same mapped IPV6_PKTINFO back on sendmsg to an
// IPv4-mapped peer; one socket then serves both families.
//
// Plain POSIX calls on a file descriptor the caller owns (no Asio), non-blocking
// (MSG_DONTWAIT) whatever the descriptor's mode; used on the DNS server's thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace drawbridge::dns {

struct Datagram {
  size_t size = 0;  // bytes received into the caller's buffer
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
  // The address the datagram was sent to, as the kernel reported it: family AF_INET (4 bytes
  // used) or AF_INET6 (16, possibly IPv4-mapped); 0 when it was not reported, and the answer
  // then leaves from whatever address the kernel picks.
  int local_family = 0;
  std::array<uint8_t, 16> local{};
  unsigned local_ifindex = 0;  // the interface it came in on

  // The peer's address: 4 bytes (IPv4) or 16 (IPv6, possibly IPv4-mapped); empty if neither.
  std::span<const uint8_t> peer_address() const;
};

// Asks the kernel to report each datagram's destination: IP_PKTINFO on an IPv4 socket,
// IPV6_RECVPKTINFO on an IPv6 one (which covers IPv4 on a dual-stack socket). 0 or an errno.
int ReportDestinations(int fd, bool ipv6);

// Receives one datagram into `buf` without blocking. 0, or an errno: EAGAIN/EWOULDBLOCK when
// none is waiting; EMSGSIZE when it did not fit (it is dropped); anything else (such as a
// queued ICMP error) from recvmsg.
int ReceiveDatagram(int fd, std::span<uint8_t> buf, Datagram* out);

// Sends `data` to `to.peer` from `to.local` (when reported) without blocking. 0 or an errno
// (EAGAIN/EWOULDBLOCK when the send buffer is full).
int SendReply(int fd, std::span<const uint8_t> data, const Datagram& to);

}  // namespace drawbridge::dns
