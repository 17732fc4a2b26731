// dns::Server over real sockets on 127.0.0.1 (port 0): UDP and TCP on one port, TCP framing with
// several and pipelined queries, snapshots seen by the next query, the idle timeout, the
// connection cap, Stop(). Clients are plain blocking POSIX sockets with a receive timeout as a
// safety net; nothing sleeps to wait for the server.
#include "dns/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dns/dns_test_util.h"
#include "dns/message.h"

namespace drawbridge::dns {
namespace {

using testing::Decode;
using testing::Query;
using testing::Response;

// The provider's side: the daemon swaps snapshots like this.
class ZoneHolder {
 public:
  explicit ZoneHolder(std::shared_ptr<const Zone> z) : zone_(std::move(z)) {}
  void Set(std::shared_ptr<const Zone> z) {
    std::lock_guard lock(mu_);
    zone_ = std::move(z);
  }
  std::shared_ptr<const Zone> Get() {
    std::lock_guard lock(mu_);
    return zone_;
  }
  Server::ZoneProvider Provider() {
    return [this] { return Get(); };
  }

 private:
  std::mutex mu_;
  std::shared_ptr<const Zone> zone_;
};

std::shared_ptr<const Zone> MakeZone(std::vector<std::string> ips, uint32_t serial = 1) {
  auto z = std::make_shared<Zone>();
  z->domain = "drawbridge.test";
  z->ns_name = "ns1.drawbridge.test";
  z->serial = serial;
  z->public_ips["pgapp"] = std::move(ips);
  z->internal_ips["pgapp"] = {"10.0.0.5"};
  return z;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void SetTimeout(int fd) {
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

std::optional<Bytes> UdpExchange(int port, const Bytes& query) {
  Fd fd(socket(AF_INET, SOCK_DGRAM, 0));
  SetTimeout(fd.get());
  sockaddr_in to = Loopback(port);
  if (sendto(fd.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&to),
             sizeof(to)) != static_cast<ssize_t>(query.size())) {
    return std::nullopt;
  }
  Bytes buf(65536);
  ssize_t n = recv(fd.get(), buf.data(), buf.size(), 0);
  if (n < 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

std::unique_ptr<Fd> TcpConnect(int port) {
  auto fd = std::make_unique<Fd>(socket(AF_INET, SOCK_STREAM, 0));
  SetTimeout(fd->get());
  sockaddr_in to = Loopback(port);
  if (connect(fd->get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) return nullptr;
  return fd;
}

Bytes Framed(const Bytes& msg) {
  Bytes b(2 + msg.size());
  b[0] = static_cast<uint8_t>(msg.size() >> 8);
  b[1] = static_cast<uint8_t>(msg.size());
  std::copy(msg.begin(), msg.end(), b.begin() + 2);
  return b;
}

bool SendAll(int fd, const Bytes& b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly n bytes; false on EOF, reset or timeout.
bool RecvAll(int fd, uint8_t* out, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t r = recv(fd, out + off, n - off, 0);
    if (r <= 0) return false;
    off += static_cast<size_t>(r);
  }
  return true;
}

std::optional<Bytes> ReadFrame(int fd) {
  uint8_t prefix[2];
  if (!RecvAll(fd, prefix, 2)) return std::nullopt;
  Bytes body(static_cast<size_t>(prefix[0] << 8 | prefix[1]));
  if (!RecvAll(fd, body.data(), body.size())) return std::nullopt;
  return body;
}

// True once the server has closed the connection (EOF or reset), false on a timeout or data.
bool ClosedByServer(int fd) {
  uint8_t b;
  ssize_t r = recv(fd, &b, 1, 0);
  return r == 0 || (r < 0 && errno == ECONNRESET);
}

// An IPv4 or IPv6 literal and a port as a socket address.
sockaddr_storage SockAddr(const std::string& ip, int port, socklen_t* len) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr), 1) << ip;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
  }
  return ss;
}

std::string IpOf(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, text,
              sizeof text);
  }
  return text;
}

// A UDP socket bound to `from` (any port), with the receive timeout.
std::unique_ptr<Fd> UdpFrom(const std::string& from) {
  socklen_t len = 0;
  sockaddr_storage a = SockAddr(from, 0, &len);
  auto fd = std::make_unique<Fd>(socket(a.ss_family, SOCK_DGRAM, 0));
  SetTimeout(fd->get());
  EXPECT_EQ(bind(fd->get(), reinterpret_cast<sockaddr*>(&a), len), 0) << from;
  return fd;
}

struct UdpReply {
  Bytes body;
  std::string from;  // the answer's source address
};

// Sends `query` from `from` to `to` and port; the answer and where it came from.
std::optional<UdpReply> UdpAsk(const std::string& from, const std::string& to, int port,
                               const Bytes& query) {
  auto fd = UdpFrom(from);
  socklen_t len = 0;
  sockaddr_storage dst = SockAddr(to, port, &len);
  if (sendto(fd->get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&dst), len) !=
      static_cast<ssize_t>(query.size())) {
    return std::nullopt;
  }
  UdpReply r;
  r.body.resize(65536);
  sockaddr_storage src{};
  socklen_t src_len = sizeof src;
  ssize_t n = recvfrom(fd->get(), r.body.data(), r.body.size(), 0,
                       reinterpret_cast<sockaddr*>(&src), &src_len);
  if (n < 0) return std::nullopt;
  r.body.resize(static_cast<size_t>(n));
  r.from = IpOf(src);
  return r;
}

// A TCP connection from `from` to `to` and port, or null.
std::unique_ptr<Fd> TcpFromTo(const std::string& from, const std::string& to, int port) {
  socklen_t len = 0;
  sockaddr_storage src = SockAddr(from, 0, &len);
  auto fd = std::make_unique<Fd>(socket(src.ss_family, SOCK_STREAM, 0));
  SetTimeout(fd->get());
  if (bind(fd->get(), reinterpret_cast<sockaddr*>(&src), len) != 0) return nullptr;
  sockaddr_storage dst = SockAddr(to, port, &len);
  if (connect(fd->get(), reinterpret_cast<sockaddr*>(&dst), len) != 0) return nullptr;
  return fd;
}

class DnsServerTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}, const std::string& address = "127.0.0.1") {
    server_ = std::make_unique<Server>(holder_.Provider(), options);
    base::Status s = server_->Start(address, 0);
    ASSERT_TRUE(s.ok()) << s.message();
    port_ = server_->udp_port();
    ASSERT_GT(port_, 0);
    ASSERT_EQ(server_->tcp_port(), port_);
  }

  ZoneHolder holder_{MakeZone({"127.0.10.1", "fd00::1"})};
  std::unique_ptr<Server> server_;
  int port_ = 0;
};

TEST_F(DnsServerTest, UdpAndTcpOnOnePort) {
  StartServer();
  Bytes q = Query("pgapp.drawbridge.test", kTypeA, {.id = 77});
  auto udp = UdpExchange(port_, q);
  ASSERT_TRUE(udp.has_value());
  Response r = Decode(*udp);
  EXPECT_EQ(r.id, 77);
  EXPECT_TRUE(r.aa());
  ASSERT_EQ(r.an, 1);
  EXPECT_EQ(r.answer[0].address, "127.0.10.1");

  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  ASSERT_TRUE(SendAll(tcp->get(), Framed(q)));
  auto frame = ReadFrame(tcp->get());
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(*frame, *udp);  // the same answer either way when it fits
}

TEST_F(DnsServerTest, TcpSeveralPipelinedQueriesAnsweredInOrder) {
  StartServer();
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  Bytes all;
  for (uint16_t id = 1; id <= 5; ++id) {
    Bytes f = Framed(Query("pgapp.drawbridge.test", id % 2 ? kTypeA : kTypeAaaa, {.id = id}));
    all.insert(all.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(SendAll(tcp->get(), all));
  for (uint16_t id = 1; id <= 5; ++id) {
    auto frame = ReadFrame(tcp->get());
    ASSERT_TRUE(frame.has_value()) << id;
    Response r = Decode(*frame);
    EXPECT_EQ(r.id, id);
    ASSERT_EQ(r.an, 1);
    EXPECT_EQ(r.answer[0].address, id % 2 ? "127.0.10.1" : "fd00::1");
  }
}

TEST_F(DnsServerTest, TcpQuerySentOneByteAtATime) {
  StartServer();
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  Bytes f = Framed(Query("pgapp.drawbridge.test", kTypeA, {.id = 9}));
  for (uint8_t b : f) ASSERT_TRUE(SendAll(tcp->get(), Bytes{b}));
  auto frame = ReadFrame(tcp->get());
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(Decode(*frame).id, 9);
}

TEST_F(DnsServerTest, TcpIgnoresResponsesAndAnswersFormErr) {
  StartServer();
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  Bytes response = Query("pgapp.drawbridge.test", kTypeA, {.id = 1, .flags = 0x8000});
  Bytes runt = {0x00, 0x02, 0x01};
  Bytes bad = Query("pgapp.drawbridge.test", kTypeA, {.id = 2});
  bad.push_back(0);  // trailing byte: FORMERR
  Bytes good = Query("pgapp.drawbridge.test", kTypeA, {.id = 3});
  Bytes all = Framed(response);
  for (const Bytes& m : {runt, bad, good}) {
    Bytes f = Framed(m);
    all.insert(all.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(SendAll(tcp->get(), all));
  auto first = ReadFrame(tcp->get());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(Decode(*first).id, 2);
  EXPECT_EQ(Decode(*first).rcode(), 1);
  auto second = ReadFrame(tcp->get());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(Decode(*second).id, 3);
  EXPECT_EQ(Decode(*second).rcode(), 0);
}

TEST_F(DnsServerTest, UdpTruncatesWhereTcpDoesNot) {
  std::vector<std::string> ips;
  for (int i = 0; i < 40; ++i) ips.push_back("10.1.0." + std::to_string(i + 1));
  holder_.Set(MakeZone(ips));
  StartServer();
  Bytes q = Query("pgapp.drawbridge.test", kTypeA);
  auto udp = UdpExchange(port_, q);
  ASSERT_TRUE(udp.has_value());
  EXPECT_LE(udp->size(), 512u);
  Response r = Decode(*udp);
  EXPECT_TRUE(r.tc());
  EXPECT_EQ(r.an, 0);

  auto edns = UdpExchange(port_, Query("pgapp.drawbridge.test", kTypeA, {.edns_size = 4096}));
  ASSERT_TRUE(edns.has_value());
  EXPECT_FALSE(Decode(*edns).tc());
  EXPECT_EQ(Decode(*edns).an, 40);

  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  ASSERT_TRUE(SendAll(tcp->get(), Framed(q)));
  auto frame = ReadFrame(tcp->get());
  ASSERT_TRUE(frame.has_value());
  EXPECT_FALSE(Decode(*frame).tc());
  EXPECT_EQ(Decode(*frame).an, 40);
}

TEST_F(DnsServerTest, ANewSnapshotIsVisibleOnTheNextQuery) {
  StartServer();
  Bytes q = Query("pgapp.drawbridge.test", kTypeA);
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  for (int round = 0; round < 3; ++round) {
    std::string ip = "192.0.2." + std::to_string(round + 1);
    holder_.Set(MakeZone({ip}, round + 2));
    auto udp = UdpExchange(port_, q);
    ASSERT_TRUE(udp.has_value());
    Response r = Decode(*udp);
    ASSERT_EQ(r.an, 1);
    EXPECT_EQ(r.answer[0].address, ip);
    // The same TCP connection sees it too.
    ASSERT_TRUE(SendAll(tcp->get(), Framed(q)));
    auto frame = ReadFrame(tcp->get());
    ASSERT_TRUE(frame.has_value());
    EXPECT_EQ(Decode(*frame).answer.at(0).address, ip);
  }
  // Released: NODATA.
  holder_.Set(MakeZone({}, 9));
  Response r = Decode(*UdpExchange(port_, q));
  EXPECT_EQ(r.rcode(), 0);
  EXPECT_EQ(r.an, 0);
  ASSERT_EQ(r.ns, 1);
  EXPECT_EQ(r.authority[0].soa.serial, 9u);
}

TEST_F(DnsServerTest, NoSnapshotIsServFail) {
  holder_.Set(nullptr);
  StartServer();
  auto udp = UdpExchange(port_, Query("pgapp.drawbridge.test", kTypeA));
  ASSERT_TRUE(udp.has_value());
  EXPECT_EQ(Decode(*udp).rcode(), 2);
}

TEST_F(DnsServerTest, UdpDropsResponsesAndKeepsServing) {
  StartServer();
  Fd fd(socket(AF_INET, SOCK_DGRAM, 0));
  SetTimeout(fd.get());
  sockaddr_in to = Loopback(port_);
  Bytes response = Query("pgapp.drawbridge.test", kTypeA, {.id = 1, .flags = 0x8000});
  Bytes runt = {1, 2, 3};
  Bytes good = Query("pgapp.drawbridge.test", kTypeA, {.id = 2});
  for (const Bytes& m : {response, runt, Bytes{}, good}) {
    sendto(fd.get(), m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  Bytes buf(65536);
  ssize_t n = recv(fd.get(), buf.data(), buf.size(), 0);
  ASSERT_GT(n, 0);
  buf.resize(static_cast<size_t>(n));
  EXPECT_EQ(Decode(buf).id, 2);  // the first datagram back answers the good query
}

TEST_F(DnsServerTest, IdleTcpConnectionsAreClosed) {
  StartServer({.tcp_idle_timeout = std::chrono::milliseconds(100)});
  auto silent = TcpConnect(port_);
  ASSERT_NE(silent, nullptr);
  EXPECT_TRUE(ClosedByServer(silent->get()));
  // After an answer the clock starts again, and then closes the connection.
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  ASSERT_TRUE(SendAll(tcp->get(), Framed(Query("pgapp.drawbridge.test", kTypeA))));
  ASSERT_TRUE(ReadFrame(tcp->get()).has_value());
  EXPECT_TRUE(ClosedByServer(tcp->get()));
  // A query that never completes is cut off too.
  auto partial = TcpConnect(port_);
  ASSERT_NE(partial, nullptr);
  ASSERT_TRUE(SendAll(partial->get(), Bytes{0x00, 0x20, 0x12}));
  EXPECT_TRUE(ClosedByServer(partial->get()));
}

TEST_F(DnsServerTest, ZeroLengthFrameClosesTheConnection) {
  StartServer();
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  ASSERT_TRUE(SendAll(tcp->get(), Bytes{0, 0}));
  EXPECT_TRUE(ClosedByServer(tcp->get()));
}

TEST_F(DnsServerTest, ConnectionsBeyondTheCapAreClosed) {
  StartServer({.max_tcp_connections = 2});
  Bytes f = Framed(Query("pgapp.drawbridge.test", kTypeA));
  // An answer proves the server holds the connection.
  auto a = TcpConnect(port_);
  auto b = TcpConnect(port_);
  ASSERT_TRUE(a && b);
  for (auto* c : {a.get(), b.get()}) {
    ASSERT_TRUE(SendAll(c->get(), f));
    ASSERT_TRUE(ReadFrame(c->get()).has_value());
  }
  auto third = TcpConnect(port_);
  ASSERT_NE(third, nullptr);  // the kernel completes the handshake; the server then closes it
  EXPECT_TRUE(ClosedByServer(third->get()));
  // UDP is not affected.
  EXPECT_TRUE(UdpExchange(port_, Query("pgapp.drawbridge.test", kTypeA)).has_value());
  // Once one closes, a new connection is served. The server learns of the close
  // asynchronously, so a few attempts may still meet the cap.
  a.reset();
  bool served = false;
  for (int attempt = 0; attempt < 1000 && !served; ++attempt) {
    auto c = TcpConnect(port_);
    ASSERT_NE(c, nullptr);
    served = SendAll(c->get(), f) && ReadFrame(c->get()).has_value();
  }
  EXPECT_TRUE(served);
}

TEST_F(DnsServerTest, StopClosesEverything) {
  StartServer();
  auto tcp = TcpConnect(port_);
  ASSERT_NE(tcp, nullptr);
  ASSERT_TRUE(SendAll(tcp->get(), Framed(Query("pgapp.drawbridge.test", kTypeA))));
  ASSERT_TRUE(ReadFrame(tcp->get()).has_value());
  server_->Stop();
  EXPECT_TRUE(ClosedByServer(tcp->get()));
  EXPECT_EQ(TcpConnect(port_), nullptr);
  server_->Stop();  // idempotent
}

TEST_F(DnsServerTest, StartErrors) {
  StartServer();
  EXPECT_FALSE(server_->Start("127.0.0.1", 0).ok());  // once only
  Server other(holder_.Provider());
  base::Status s = other.Start("127.0.0.1", port_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(std::to_string(port_)), std::string::npos) << s.message();
  Server bad(holder_.Provider());
  EXPECT_FALSE(bad.Start("not-an-address", 0).ok());
  EXPECT_FALSE(bad.Start("127.0.0.1", 70000).ok());
  Server never_started(holder_.Provider());
  never_started.Stop();
}

// All of 127.0.0.0/8 is local, so 127.0.0.2 stands for a second address of the host: bound to
// a wildcard, the server must answer from the address the query went to, not from the one the
// kernel would pick for the route back (127.0.0.1), which a resolver would drop.
TEST_F(DnsServerTest, UdpAnswersFromTheAddressAsked) {
  for (std::string wildcard : {"0.0.0.0", "::"}) {
    SCOPED_TRACE(wildcard);
    StartServer({}, wildcard);
    std::vector<std::pair<std::string, std::string>> cases = {
        {"127.0.0.1", "127.0.0.1"}, {"127.0.0.1", "127.0.0.2"}, {"127.0.0.1", "127.0.0.53"},
        {"127.0.0.9", "127.0.0.2"}};
    if (wildcard == "::") cases.push_back({"::1", "::1"});
    for (const auto& [from, to] : cases) {
      SCOPED_TRACE(from + " -> " + to);
      auto r = UdpAsk(from, to, port_, Query("pgapp.drawbridge.test", kTypeA, {.id = 5}));
      ASSERT_TRUE(r.has_value());
      EXPECT_EQ(r->from, to);
      EXPECT_EQ(Decode(r->body).id, 5);
      EXPECT_EQ(Decode(r->body).answer.at(0).address, "127.0.10.1");
    }
    server_->Stop();
  }
}

// More datagrams than one batch of the UDP loop, all queued before it runs: every one is
// answered, from the address asked.
TEST_F(DnsServerTest, UdpBurstIsAnsweredInFull) {
  StartServer({}, "::");
  auto fd = UdpFrom("127.0.0.1");
  socklen_t len = 0;
  sockaddr_storage dst = SockAddr("127.0.0.2", port_, &len);
  constexpr uint16_t kQueries = 130;
  for (uint16_t id = 1; id <= kQueries; ++id) {
    Bytes q = Query("pgapp.drawbridge.test", kTypeA, {.id = id});
    ASSERT_EQ(sendto(fd->get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&dst), len),
              static_cast<ssize_t>(q.size()));
  }
  std::set<uint16_t> ids;
  Bytes buf(65536);
  for (int i = 0; i < kQueries; ++i) {
    sockaddr_storage src{};
    socklen_t src_len = sizeof src;
    ssize_t n = recvfrom(fd->get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&src),
                         &src_len);
    ASSERT_GT(n, 0) << "answer " << i;
    EXPECT_EQ(IpOf(src), "127.0.0.2");
    ids.insert(Decode(Bytes(buf.begin(), buf.begin() + n)).id);
  }
  EXPECT_EQ(ids.size(), kQueries);
}

// Names in `internal` are answered only to the configured sources, over UDP and TCP, on a
// dual-stack socket (IPv4 sources arrive IPv4-mapped); other sources get REFUSED.
TEST_F(DnsServerTest, InternalNamesOnlyToAllowedSources) {
  Bytes internal = Query("pgapp.internal", kTypeA, {.id = 8});
  Bytes public_name = Query("pgapp.drawbridge.test", kTypeA, {.id = 9});
  auto udp_rcode = [&](const std::string& from, const Bytes& q) {
    auto r = UdpAsk(from, from.find(':') == std::string::npos ? "127.0.0.1" : "::1", port_, q);
    return r ? Decode(r->body).rcode() : -1;
  };
  auto tcp_rcode = [&](const std::string& from, const Bytes& q) {
    auto fd = TcpFromTo(from, from.find(':') == std::string::npos ? "127.0.0.1" : "::1", port_);
    if (!fd || !SendAll(fd->get(), Framed(q))) return -1;
    auto frame = ReadFrame(fd->get());
    return frame ? Decode(*frame).rcode() : -1;
  };
  // The default: loopback, IPv4 and IPv6.
  StartServer({}, "::");
  for (const char* from : {"127.0.0.1", "127.0.0.2", "::1"}) {
    SCOPED_TRACE(from);
    EXPECT_EQ(udp_rcode(from, internal), 0);
    EXPECT_EQ(tcp_rcode(from, internal), 0);
  }
  server_->Stop();
  // Nobody: refused, while the public zone is still answered.
  StartServer({.internal_from = {}}, "::");
  for (const char* from : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(from);
    EXPECT_EQ(udp_rcode(from, internal), 5);
    EXPECT_EQ(tcp_rcode(from, internal), 5);
    EXPECT_EQ(udp_rcode(from, public_name), 0);
    EXPECT_EQ(tcp_rcode(from, public_name), 0);
  }
  server_->Stop();
  // One host: 127.0.0.2 may, 127.0.0.1 and ::1 may not.
  StartServer({.internal_from = {*base::ParseCidr("127.0.0.2")}}, "::");
  EXPECT_EQ(udp_rcode("127.0.0.2", internal), 0);
  EXPECT_EQ(tcp_rcode("127.0.0.2", internal), 0);
  for (const char* from : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(from);
    EXPECT_EQ(udp_rcode(from, internal), 5);
    EXPECT_EQ(tcp_rcode(from, internal), 5);
  }
  server_->Stop();
  // An IPv4-only socket sees plain IPv4 sources: the same rule.
  StartServer({.internal_from = {*base::ParseCidr("127.0.0.2")}}, "0.0.0.0");
  EXPECT_EQ(udp_rcode("127.0.0.2", internal), 0);
  EXPECT_EQ(udp_rcode("127.0.0.1", internal), 5);
  EXPECT_EQ(tcp_rcode("127.0.0.1", internal), 5);
}

}  // namespace
}  // namespace drawbridge::dns
