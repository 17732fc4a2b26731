#include "dns/datagram.h"

#include <errno.h>

#include <cstring>

namespace drawbridge::dns {

namespace {

// Room for either kind of pktinfo the kernel may attach (both, on a dual-stack socket that
// also asked for IP_PKTINFO).
constexpr size_t kControlSize = CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo));

}  // namespace

std::span<const uint8_t> Datagram::peer_address() const {
  if (peer.ss_family == AF_INET && peer_len >= sizeof(sockaddr_in)) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
    return {reinterpret_cast<const uint8_t*>(&a->sin_addr), 4};
  }
  if (peer.ss_family == AF_INET6 && peer_len >= sizeof(sockaddr_in6)) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
    return {reinterpret_cast<const uint8_t*>(&a->sin6_addr), 16};
  }
  return {};
}

int ReportDestinations(int fd, bool ipv6) {
  int on = 1;
  int rc = ipv6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on)
                : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  return rc == 0 ? 0 : errno;
}

int ReceiveDatagram(int fd, std::span<uint8_t> buf, Datagram* out) {
  *out = Datagram{};
  iovec iov{buf.data(), buf.size()};
  alignas(cmsghdr) unsigned char control[kControlSize];
  msghdr msg{};
  msg.msg_name = &out->peer;
  msg.msg_namelen = sizeof out->peer;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
  if (n < 0) return errno;
  if (msg.msg_flags & MSG_TRUNC) return EMSGSIZE;
  out->size = static_cast<size_t>(n);
  out->peer_len = msg.msg_namelen;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      out->local_family = AF_INET6;
      std::memcpy(out->local.data(), &info.ipi6_addr, 16);
      out->local_ifindex = info.ipi6_ifindex;
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(in_pktinfo)) && out->local_family == 0) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      out->local_family = AF_INET;
      // ipi_spec_dst, not the header's ipi_addr: for a broadcast they differ, and only the
      // former is an address of ours.
      std::memcpy(out->local.data(), &info.ipi_spec_dst, 4);
      out->local_ifindex = static_cast<unsigned>(info.ipi_ifindex);
    }
  }
  return 0;
}

int SendReply(int fd, std::span<const uint8_t> data, const Datagram& to) {
  iovec iov{const_cast<uint8_t*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr_storage*>(&to.peer);
  msg.msg_namelen = to.peer_len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char control[kControlSize] = {};
  if (to.local_family == AF_INET) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo info{};  // interface 0: the route back decides it
    std::memcpy(&info.ipi_spec_dst, to.local.data(), 4);
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  } else if (to.local_family == AF_INET6) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo info{};
    std::memcpy(&info.ipi6_addr, to.local.data(), 16);
    // A link-local address means something only on its interface; any other source leaves by
    // the route back, which need not be the interface the query came in on.
    if (IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) info.ipi6_ifindex = to.local_ifindex;
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  }
  ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  return n < 0 ? errno : 0;
}

}  // namespace drawbridge::dns
