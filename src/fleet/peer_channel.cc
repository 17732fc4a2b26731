#include "fleet/peer_channel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/parse_int.h"

namespace drawbridge::fleet {

namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kMacSize = 32;
// version, node, time, nonce, pid, secret length, (secret), app count: the fixed part.
constexpr size_t kFixedSize = 1 + 1 + 8 + 16 + 4 + 2 + 2;
// A nonce is remembered for twice the clock window and a second more: a datagram accepted at
// time t carried a timestamp within t +- window, so by t + 2 * window it is stale everywhere.
constexpr std::chrono::milliseconds kRetention = 2 * kPeerClockWindow + std::chrono::seconds(1);
// How long the receiving thread's poll waits at most, so that Stop() is bounded even if its
// wake-up were lost.
constexpr int kPollMs = 1000;
// Datagrams read per readiness before polling again (the wake-up gets a look in between).
constexpr int kBatch = 64;
constexpr std::chrono::seconds kWarnInterval{10};

std::array<uint8_t, kMacSize> Hmac(const PeerKey& key, base::ByteSpan data) {
  std::array<uint8_t, kMacSize> out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
           out.data(), &len) == nullptr) {
    RAND_bytes(out.data(), static_cast<int>(out.size()));  // out of memory: matches nothing
  }
  return out;
}

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family() const { return storage.ss_family; }
};

// "1.2.3.4:5" or "[::1]:5", numeric only.
base::Result<SockAddr> ParseAddress(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return base::Status::InvalidArgument("\"" + text + "\": " + why);
  };
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return bad("expected ADDRESS:PORT");
  std::string host = text.substr(0, colon);
  auto port = base::ParseInt(std::string_view(text).substr(colon + 1), 0, 65535);
  if (!port.ok()) return bad("bad port: " + port.message());
  SockAddr out;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out.storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(*port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a->sin6_addr) != 1) {
      return bad("not an IPv6 address");
    }
    out.len = sizeof(sockaddr_in6);
    return out;
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&out.storage);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<uint16_t>(*port));
  if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
    return bad("not an IP address (IPv6 goes in brackets: [::1]:7000)");
  }
  out.len = sizeof(sockaddr_in);
  return out;
}

std::string FormatAddress(const sockaddr_storage& s) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (s.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&s);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    // Appended, not `"[" + std::string(buf) + ...`: GCC 12 at -O3 reports a false -Wrestrict
    // on a literal plus a temporary string.
    std::string out(1, '[');
    out.append(buf).append("]:").append(std::to_string(ntohs(a->sin6_port)));
    return out;
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&s);
  inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
}

bool IsWildcard(const SockAddr& a) {
  if (a.family() == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    return IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr);
  }
  return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == htonl(INADDR_ANY);
}

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

const char* PeerRefusalName(PeerRefusal r) {
  switch (r) {
    case PeerRefusal::kMalformed: return "malformed";
    case PeerRefusal::kBadMac: return "bad_mac";
    case PeerRefusal::kStale: return "stale";
    case PeerRefusal::kReplayed: return "replayed";
    case PeerRefusal::kReplayCacheFull: return "replay_cache_full";
    case PeerRefusal::kUnknownKey: return "unknown_key";
    case PeerRefusal::kKeyOfAnotherApp: return "key_of_another_app";
    case PeerRefusal::kCount: break;
  }
  return "unknown";
}

base::Result<base::Bytes> BuildPeerDatagram(const PeerKey& key, int from_node, int64_t unix_ms,
                                            const Nonce& nonce, const pg::CancelKey& cancel,
                                            const std::vector<std::string>& apps) {
  if (cancel.secret.empty() || cancel.secret.size() > pg::kMaxCancelKey) {
    return base::Status::InvalidArgument("cancel key of " + std::to_string(cancel.secret.size()) +
                                         " bytes (1.." + std::to_string(pg::kMaxCancelKey) + ")");
  }
  if (from_node < 0 || from_node > 255) {
    return base::Status::InvalidArgument("node id " + std::to_string(from_node));
  }
  if (apps.empty() || apps.size() > 0xFFFF) {
    return base::Status::InvalidArgument("a cancel names 1..65535 apps, not " +
                                         std::to_string(apps.size()));
  }
  size_t size = kFixedSize + cancel.secret.size() + kMacSize;
  for (const auto& app : apps) {
    if (app.empty() || app.size() > 255) {
      return base::Status::InvalidArgument("app name of " + std::to_string(app.size()) +
                                           " bytes (1..255)");
    }
    size += 1 + app.size();
  }
  if (size > kMaxDatagram) {
    return base::Status::InvalidArgument("cancel datagram of " + std::to_string(size) +
                                         " bytes (too many apps at this address): over " +
                                         std::to_string(kMaxDatagram));
  }
  base::Bytes out;
  out.reserve(size);
  base::ByteWriter w(&out);
  w.U8(kVersion);
  w.U8(static_cast<uint8_t>(from_node));
  auto ms = static_cast<uint64_t>(unix_ms);
  w.U32(static_cast<uint32_t>(ms >> 32));
  w.U32(static_cast<uint32_t>(ms));
  w.Append(nonce);
  w.U32(cancel.pid);
  w.U16(static_cast<uint16_t>(cancel.secret.size()));
  w.Append(cancel.secret);
  w.U16(static_cast<uint16_t>(apps.size()));
  for (const auto& app : apps) {
    w.U8(static_cast<uint8_t>(app.size()));
    w.Append(base::AsBytes(app));
  }
  auto mac = Hmac(key, out);
  w.Append(mac);
  return out;
}

std::variant<OpenedDatagram, PeerRefusal> OpenPeerDatagram(const PeerKey& key,
                                                           base::ByteSpan datagram) {
  if (datagram.size() < kFixedSize + 1 + 2 + kMacSize || datagram.size() > kMaxDatagram) {
    return PeerRefusal::kMalformed;
  }
  base::ByteSpan body = datagram.first(datagram.size() - kMacSize);
  auto mac = Hmac(key, body);
  if (CRYPTO_memcmp(mac.data(), datagram.data() + body.size(), kMacSize) != 0) {
    return PeerRefusal::kBadMac;
  }
  // From here on the sender holds the peer key: a fleet node. The layout is checked all the
  // same (another version of the software, a bug).
  OpenedDatagram out;
  base::ByteReader r(body);
  uint8_t version = 0, node = 0;
  uint32_t ms_high = 0, ms_low = 0;
  uint16_t secret_len = 0, count = 0;
  base::ByteSpan nonce, secret;
  if (!r.ReadU8(&version) || version != kVersion || !r.ReadU8(&node) || node == 0 || !r.ReadU32(&ms_high) ||
      !r.ReadU32(&ms_low) || !r.ReadBytes(out.nonce.size(), &nonce) ||
      !r.ReadU32(&out.cancel.key.pid) || !r.ReadU16(&secret_len) || secret_len == 0 ||
      secret_len > pg::kMaxCancelKey || !r.ReadBytes(secret_len, &secret) ||
      !r.ReadU16(&count) || count == 0) {
    return PeerRefusal::kMalformed;
  }
  out.cancel.from_node = node;
  out.unix_ms = static_cast<int64_t>((static_cast<uint64_t>(ms_high) << 32) | ms_low);
  std::copy(nonce.begin(), nonce.end(), out.nonce.begin());
  out.cancel.key.secret.assign(secret.begin(), secret.end());
  for (uint16_t i = 0; i < count; ++i) {
    uint8_t len = 0;
    base::ByteSpan name;
    if (!r.ReadU8(&len) || len == 0 || !r.ReadBytes(len, &name)) return PeerRefusal::kMalformed;
    out.cancel.apps.emplace_back(name.begin(), name.end());
  }
  if (r.remaining() != 0) return PeerRefusal::kMalformed;
  return out;
}

ReplayCache::ReplayCache(size_t capacity, std::chrono::milliseconds retention)
    : capacity_(capacity), retention_(retention) {}

ReplayCache::Verdict ReplayCache::Check(const Nonce& nonce,
                                        std::chrono::steady_clock::time_point now) {
  while (!order_.empty() && now - order_.front().first >= retention_) {
    seen_.erase(order_.front().second);
    order_.pop_front();
  }
  if (seen_.count(nonce)) return Verdict::kReplayed;
  if (seen_.size() >= capacity_) return Verdict::kFull;
  seen_.insert(nonce);
  order_.emplace_back(now, nonce);
  return Verdict::kFresh;
}

base::Result<std::unique_ptr<PeerChannel>> PeerChannel::Open(const std::string& listen,
                                                             int node_id, const PeerKey& key,
                                                             size_t replay_capacity) {
  auto where = ParseAddress(listen);
  if (!where.ok()) return where.status().WithPrefix("peer channel address ");
  if (IsWildcard(*where)) {
    return base::Status::InvalidArgument(
        "peer channel address \"" + listen +
        "\": a wildcard cannot be published; give an address the other nodes can send to");
  }
  int fd = ::socket(where->family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return base::Status::Unavailable("peer channel " + listen + ": cannot create a socket: " +
                                     std::strerror(errno));
  }
  if (where->family() == AF_INET6) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&where->storage), where->len) != 0) {
    int err = errno;
    ::close(fd);
    return base::Status::Unavailable("peer channel " + listen + ": cannot bind: " +
                                     std::strerror(err));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    int err = errno;
    ::close(fd);
    return base::Status::Unavailable(std::string("peer channel: eventfd: ") + std::strerror(err));
  }
  return std::unique_ptr<PeerChannel>(
      new PeerChannel(fd, wake, FormatAddress(bound), node_id, key, replay_capacity));
}

PeerChannel::PeerChannel(int fd, int wake_fd, std::string address, int node_id,
                         const PeerKey& key, size_t replay_capacity)
    : fd_(fd),
      wake_fd_(wake_fd),
      address_(std::move(address)),
      node_id_(node_id),
      key_(key),
      replay_(replay_capacity, kRetention) {
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  family_ = bound.ss_family;
  // Peers of the other family are sent to from an unbound socket (no answer comes back).
  int other = family_ == AF_INET6 ? AF_INET : AF_INET6;
  other_fd_ = ::socket(other, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);  // -1: no IPv6
}

PeerChannel::~PeerChannel() {
  Stop();
  ::close(fd_);
  ::close(wake_fd_);
  if (other_fd_ >= 0) ::close(other_fd_);
}

base::Status PeerChannel::Send(const std::string& peer, const pg::CancelKey& cancel,
                               const std::vector<std::string>& apps) const {
  auto to = ParseAddress(peer);
  if (!to.ok()) return to.status().WithPrefix("peer ");
  Nonce nonce;
  RAND_bytes(nonce.data(), static_cast<int>(nonce.size()));
  auto datagram = BuildPeerDatagram(key_, node_id_, UnixMs(), nonce, cancel, apps);
  if (!datagram.ok()) return datagram.status();
  int fd = to->family() == family_ ? fd_ : other_fd_;
  if (fd < 0) return base::Status::Unavailable("peer " + peer + ": no socket of its family");
  ssize_t n = ::sendto(fd, datagram->data(), datagram->size(), MSG_DONTWAIT,
                       reinterpret_cast<const sockaddr*>(&to->storage), to->len);
  if (n < 0) {
    return base::Status::Unavailable("peer " + peer + ": send failed: " + std::strerror(errno));
  }
  return {};
}

base::Status PeerChannel::SendTo(int node, const Directory& directory,
                                 const pg::CancelKey& cancel,
                                 const std::vector<std::string>& apps) const {
  std::optional<std::string> peer = directory ? directory(node) : std::nullopt;
  if (!peer) return base::Status::NotFound("no node " + std::to_string(node) + " in the fleet");
  if (peer->empty()) {
    return base::Status::Unavailable("node " + std::to_string(node) +
                                     " has published no channel address");
  }
  return Send(*peer, cancel, apps);
}

void PeerChannel::Start(Handlers handlers) {
  if (thread_.joinable()) return;
  handlers_ = std::move(handlers);
  thread_ = std::thread([this] { Receive(); });
}

void PeerChannel::Stop() {
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void PeerChannel::Receive() {
  // One fixed buffer, a byte longer than the longest datagram so that a longer one shows.
  std::vector<uint8_t> buf(kMaxDatagram + 1);
  while (!stopping_) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, kPollMs);
    if (stopping_) break;
    if (rc <= 0 || !(fds[0].revents & POLLIN)) continue;
    for (int i = 0; i < kBatch && !stopping_; ++i) {
      sockaddr_storage from{};
      socklen_t from_len = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                             reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) break;  // EAGAIN: drained (or an error poll will show again)
      std::string sender = FormatAddress(from);
      if (static_cast<size_t>(n) > kMaxDatagram) {
        Handle({}, sender);  // too long: malformed, whatever it holds
        continue;
      }
      Handle(base::ByteSpan(buf.data(), static_cast<size_t>(n)), sender);
    }
  }
}

void PeerChannel::Handle(base::ByteSpan datagram, const std::string& from) {
  auto refuse = [&](PeerRefusal why) {
    auto now = std::chrono::steady_clock::now();
    auto& last = warned_[static_cast<size_t>(why)];
    if (last == std::chrono::steady_clock::time_point{} || now - last >= kWarnInterval) {
      last = now;
      spdlog::warn("peer channel: dropped a cancel datagram from {}: {}{}", from,
                   PeerRefusalName(why),
                   why == PeerRefusal::kStale ? " (are the nodes' clocks in sync?)" : "");
    }
    if (handlers_.on_refused) handlers_.on_refused(why, from);
  };
  auto opened = OpenPeerDatagram(key_, datagram);
  if (auto* why = std::get_if<PeerRefusal>(&opened)) return refuse(*why);
  auto& d = std::get<OpenedDatagram>(opened);
  int64_t skew = UnixMs() - d.unix_ms;
  if (skew > kPeerClockWindow.count() || skew < -kPeerClockWindow.count()) {
    return refuse(PeerRefusal::kStale);
  }
  switch (replay_.Check(d.nonce, std::chrono::steady_clock::now())) {
    case ReplayCache::Verdict::kReplayed: return refuse(PeerRefusal::kReplayed);
    case ReplayCache::Verdict::kFull: return refuse(PeerRefusal::kReplayCacheFull);
    case ReplayCache::Verdict::kFresh: break;
  }
  if (handlers_.on_cancel) handlers_.on_cancel(std::move(d.cancel));
}

}  // namespace drawbridge::fleet
