// The negotiation on its own: a real io_context and relay loop on loopback sockets the test
// makes, a route table and certificates of its own, a machine that is a plain listening socket
// and a TLS client made with OpenSSL. No Postgres.
#include "net/negotiation.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/cidr.h"
#include "net/relay_pool.h"
#include "net/test_sockets.h"
#include "pg/messages.h"
#include "tls/test_tls.h"

namespace drawbridge::net {
namespace {

using namespace std::chrono_literals;

using nettest::Eventually;

// A blocking loopback socket with a receive timeout, so that no test can hang.
int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) std::abort();
  return fd;
}

// A listening loopback socket: the machine, on 127.0.0.1 or another loopback address, on a
// free port or a given one. Accept() takes one connection (5 s at most).
struct Machine {
  int fd = -1;
  int port = 0;
  explicit Machine(const char* ip = "127.0.0.1", int at_port = 0) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(at_port));
    inet_pton(AF_INET, ip, &sa.sin_addr);
    socklen_t len = sizeof sa;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(fd, 16) != 0) std::abort();
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  ~Machine() { close(fd); }
  // Whether a connection is waiting to be accepted within `wait`.
  bool Dialled(std::chrono::milliseconds wait = std::chrono::milliseconds(200)) const {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, static_cast<int>(wait.count())) == 1;
  }
  int Accept() const {
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int c = accept(fd, nullptr, nullptr);
    if (c >= 0) setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return c;
  }
};

std::string Str(const base::Bytes& b) { return std::string(b.begin(), b.end()); }

std::string RecvExactly(int fd, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, out.data() + got, n - got, 0);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

// Reads until EOF (or the 5 s receive timeout): what came, and whether EOF did.
std::string RecvToEnd(int fd, bool* eof) {
  std::string out;
  char buf[4096];
  *eof = false;
  while (true) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r == 0) *eof = true;
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

class NegotiationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    ctx_.routes = &routes_;
    ctx_.certs = &cert_store_;
    ctx_.limits.handshake_timeout = 2000ms;
    ctx_.limits.connect_timeout = 2000ms;
    ctx_.limits.close_linger = 200ms;
    cert_store_.Swap(certs_);
    ASSERT_TRUE(relay_.Start().ok());
  }
  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    relay_.Stop();
  }

  // Serves `route` on the test's port.
  void Serve(control::Route route) {
    route.public_port = port_;
    std::vector<control::RouteTable::Entry> entries;
    entries.push_back({"", std::move(route)});
    routes_.Swap(std::make_shared<const control::RouteTable>(1, std::move(entries)));
    asio::co_spawn(io_, AcceptOne(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  awaitable<void> AcceptOne() {
    while (acceptor_.is_open()) {
      Socket s(io_.get_executor());
      tcp::endpoint peer;
      error_code ec;
      co_await acceptor_.async_accept(s, peer, asio::redirect_error(kAwait, ec));
      if (ec) co_return;
      StartConnection(std::move(s), peer, WorkerContext{&ctx_, &relay_});
    }
  }

  control::Route PgRoute(int machine_port) {
    control::Route r;
    r.app = "mydb";
    r.host = "mydb.drawbridge.test";
    r.pg_tls = true;
    r.internal_port = machine_port;
    r.machines.push_back({"m1", "127.0.0.1"});
    return r;
  }

  // SSLRequest, 'S', then an OpenSSL handshake on `fd`; null if any step failed.
  SSL* StartTls(int fd) {
    uint32_t ssl_request[2] = {htonl(8), htonl(pg::kSslRequestCode)};
    if (send(fd, ssl_request, 8, 0) != 8) return nullptr;
    if (RecvExactly(fd, 1) != "S") return nullptr;
    if (client_ctx_ == nullptr) client_ctx_ = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(client_ctx_);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "mydb.drawbridge.test");
    static const unsigned char kAlpn[] = "\x0apostgresql";
    SSL_set_alpn_protos(ssl, kAlpn, sizeof kAlpn - 1);
    if (SSL_connect(ssl) != 1) {
      SSL_free(ssl);
      return nullptr;
    }
    return ssl;
  }

  std::shared_ptr<const tls::CertSet> certs_ = tls::tlstest::CertSetFor("mydb.drawbridge.test");
  // Declared before the io_context, so destroyed after it: a connection still refusing when a
  // test ends is finished (and logged, and released from admission) by the io_context's
  // destructor, against a context that is still alive.
  control::RouteTableHolder routes_;
  tls::CertStore cert_store_;
  ServerContext ctx_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  int port_ = 0;
  RelayPool relay_{RelayPoolOptions{}};  // one loop
  std::thread thread_;
  SSL_CTX* client_ctx_ = nullptr;
  Machine machine_;

  ~NegotiationTest() override {
    if (client_ctx_) SSL_CTX_free(client_ctx_);
  }
};

TEST_F(NegotiationTest, PgTlsForwardsTheStartupPacketAndHandsTheConnectionToTheRelay) {
  Serve(PgRoute(machine_.port));
  int fd = Connect(port_);
  SSL* ssl = StartTls(fd);
  ASSERT_NE(ssl, nullptr);
  pg::StartupMessage startup;
  startup.params = {{"user", "alice"}, {"database", "app"}};
  std::string packet = Str(pg::BuildStartupMessage(startup));
  ASSERT_EQ(SSL_write(ssl, packet.data(), static_cast<int>(packet.size())),
            static_cast<int>(packet.size()));

  // The machine sees the packet as the client sent it, in plaintext.
  int m = machine_.Accept();
  ASSERT_GE(m, 0);
  EXPECT_EQ(RecvExactly(m, packet.size()), packet);
  EXPECT_EQ(ctx_.live.count(), 1u);

  // From here the relay loop carries it: both ways.
  std::string ready("Z\0\0\0\5I", 6);  // ReadyForQuery
  ASSERT_EQ(send(m, ready.data(), ready.size(), 0), 6);
  char buf[16];
  ASSERT_EQ(SSL_read(ssl, buf, sizeof buf), 6);
  EXPECT_EQ(std::string(buf, 6), ready);

  close(m);  // the server ends the session: the client gets close_notify, and the log line
  EXPECT_LE(SSL_read(ssl, buf, sizeof buf), 0);
  EXPECT_EQ(SSL_get_error(ssl, 0), SSL_ERROR_ZERO_RETURN);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.closed.load(), 1u);
  EXPECT_EQ(ctx_.metrics.bytes_in.load(), packet.size());
  SSL_free(ssl);
  close(fd);
}

TEST_F(NegotiationTest, AnUnreachableMachineGetsTheClientAFatal08006) {
  int dead_port = 0;
  {
    Machine closed_soon;
    dead_port = closed_soon.port;
  }
  Serve(PgRoute(dead_port));
  int fd = Connect(port_);
  SSL* ssl = StartTls(fd);
  ASSERT_NE(ssl, nullptr);
  std::string packet = Str(pg::BuildStartupMessage(
      pg::StartupMessage{pg::kProtocol30, {{"user", "alice"}, {"database", "app"}}}));
  SSL_write(ssl, packet.data(), static_cast<int>(packet.size()));
  char buf[512];
  int n = SSL_read(ssl, buf, sizeof buf);
  ASSERT_GT(n, 0);
  std::string error(buf, static_cast<size_t>(n));
  EXPECT_EQ(error[0], 'E');
  EXPECT_NE(error.find("C08006"), std::string::npos);
  EXPECT_NE(error.find("could not connect to a machine of app \"mydb\""), std::string::npos);
  EXPECT_EQ(error.find("127.0.0.1"), std::string::npos) << "never a private address";
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kMachineUnreachable), 1u);
  SSL_free(ssl);
  close(fd);
}

TEST_F(NegotiationTest, ASilentClientIsClosedByTheHandshakeDeadline) {
  ctx_.limits.handshake_timeout = 100ms;
  Serve(PgRoute(machine_.port));
  int fd = Connect(port_);
  bool eof = false;
  EXPECT_EQ(RecvToEnd(fd, &eof), "");
  EXPECT_TRUE(eof);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kHandshakeTimeout), 1u);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kClientClosedEarly), 0u);
  close(fd);
}

TEST_F(NegotiationTest, ACancelWithAnUnknownKeyIsDroppedInSilence) {
  Serve(PgRoute(machine_.port));
  int fd = Connect(port_);
  std::string cancel = Str(pg::BuildCancelRequest(pg::CancelKey{42, base::Bytes(4, 7)}));
  ASSERT_EQ(send(fd, cancel.data(), cancel.size(), 0), 16);
  bool eof = false;
  EXPECT_EQ(RecvToEnd(fd, &eof), "");
  EXPECT_TRUE(eof);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kCancelUnknownKey), 1u);
  close(fd);
}

TEST_F(NegotiationTest, ACancelWithAKnownKeyReachesTheMachineThatIssuedIt) {
  pg::CancelKey real{1234, base::Bytes{1, 2, 3, 4}};
  pg::CancelKey issued =
      ctx_.cancels.Register(CancelTarget{"mydb", "127.0.0.1", machine_.port, real});
  Serve(PgRoute(machine_.port));
  int fd = Connect(port_);
  std::string cancel = Str(pg::BuildCancelRequest(issued));
  ASSERT_EQ(send(fd, cancel.data(), cancel.size(), 0), 16);
  int m = machine_.Accept();
  ASSERT_GE(m, 0);
  EXPECT_EQ(RecvExactly(m, 16), Str(pg::BuildCancelRequest(real)));
  EXPECT_TRUE(Eventually([&] { return ctx_.metrics.cancels_forwarded.load() == 1; }));
  close(m);
  close(fd);
}

TEST_F(NegotiationTest, ACancelKeyOfAnotherAppIsIgnoredHere) {
  pg::CancelKey issued = ctx_.cancels.Register(
      CancelTarget{"someone-else", "127.0.0.1", machine_.port, {1, base::Bytes(4, 1)}});
  Serve(PgRoute(machine_.port));
  int fd = Connect(port_);
  std::string cancel = Str(pg::BuildCancelRequest(issued));
  ASSERT_EQ(send(fd, cancel.data(), cancel.size(), 0), 16);
  bool eof = false;
  RecvToEnd(fd, &eof);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.cancels_forwarded.load(), 0u);
  close(fd);
}

TEST_F(NegotiationTest, RawTcpOnASharedAddressIsRefusedForWantOfAName) {
  control::Route a = PgRoute(machine_.port), b = PgRoute(machine_.port);
  a.pg_tls = b.pg_tls = false;
  b.app = "other";
  b.host = "other.drawbridge.test";
  a.public_port = b.public_port = port_;
  std::vector<control::RouteTable::Entry> entries;
  entries.push_back({"", a});
  entries.push_back({"", b});
  routes_.Swap(std::make_shared<const control::RouteTable>(1, std::move(entries)));
  asio::co_spawn(io_, AcceptOne(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
  int fd = Connect(port_);
  bool eof = false;
  RecvToEnd(fd, &eof);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kNoRoute), 1u);
  close(fd);
}

// ---- fleet mode: keys that name their node (docs/connection.md, "Cancel requests") ----------

std::shared_ptr<const fleet::CancelKeys> FleetKeys(int node, uint8_t fill = 1) {
  std::array<uint8_t, 32> key{};
  key.fill(fill);
  return std::make_shared<const fleet::CancelKeys>(node, key);
}

// What the fleet's forward_cancel hook was asked to send.
struct Forwarded {
  int node = 0;
  pg::CancelKey key;
  std::vector<std::string> apps;
};

class FleetCancelTest : public NegotiationTest {
 protected:
  void SetUp() override {
    NegotiationTest::SetUp();
    ctx_.cancel_keys = FleetKeys(1);
    ctx_.cancels.UseFleetKeys(ctx_.cancel_keys);
    ctx_.forward_cancel = [this](int node, const pg::CancelKey& key,
                                 const std::vector<std::string>& apps) {
      std::lock_guard lock(mu_);
      forwarded_.push_back({node, key, apps});
      return node == 9 ? base::Status::NotFound("no node 9") : base::Status();
    };
  }

  // Sends a plaintext CancelRequest and waits until the edge has closed the connection.
  void Cancel(const pg::CancelKey& key) {
    int fd = Connect(port_);
    std::string cancel = Str(pg::BuildCancelRequest(key));
    ASSERT_EQ(send(fd, cancel.data(), cancel.size(), 0), static_cast<ssize_t>(cancel.size()));
    bool eof = false;
    EXPECT_EQ(RecvToEnd(fd, &eof), "");
    EXPECT_TRUE(eof);
    EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
    close(fd);
  }

  std::vector<Forwarded> TakeForwarded() {
    std::lock_guard lock(mu_);
    return std::move(forwarded_);
  }

  // Whether the machine gets a connection within `wait`.
  bool MachineDialled(std::chrono::milliseconds wait = 200ms) {
    pollfd p{machine_.fd, POLLIN, 0};
    return poll(&p, 1, static_cast<int>(wait.count())) == 1;
  }

  std::mutex mu_;
  std::vector<Forwarded> forwarded_;
};

TEST_F(FleetCancelTest, AForgedKeyIsNeverForwarded) {
  Serve(PgRoute(machine_.port));
  // A key of node 2 whose MAC is wrong, one of another fleet, one of node 0, and a plain
  // random key of the kind issued outside a fleet.
  pg::CancelKey wrong_mac = FleetKeys(2)->Issue(4);
  wrong_mac.secret.back() ^= 0x01;
  pg::CancelKey other_fleet = FleetKeys(2, /*fill=*/7)->Issue(32);
  pg::CancelKey node0{0x00123456, base::Bytes(32, 1)};
  pg::CancelKey plain{0x7F000001, base::Bytes{1, 2, 3, 4}};
  for (const auto& key : {wrong_mac, other_fleet, node0, plain}) Cancel(key);
  EXPECT_TRUE(TakeForwarded().empty());
  EXPECT_EQ(ctx_.metrics.cancels_to_peer.load(), 0u);
  EXPECT_EQ(ctx_.metrics.cancels_forwarded.load(), 0u);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kCancelUnknownKey), 4u);
  EXPECT_FALSE(MachineDialled());
}

TEST_F(FleetCancelTest, AKeyOfAnotherNodeGoesToThatNodeWithTheAppsReachedHere) {
  Serve(PgRoute(machine_.port));
  pg::CancelKey key = FleetKeys(3)->Issue(32);  // protocol 3.2's longer key
  Cancel(key);
  auto sent = TakeForwarded();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].node, 3);
  EXPECT_EQ(sent[0].key, key);
  EXPECT_EQ(sent[0].apps, std::vector<std::string>{"mydb"});
  EXPECT_EQ(ctx_.metrics.cancels_to_peer.load(), 1u);
  EXPECT_EQ(ctx_.metrics.cancels_forwarded.load(), 0u);
  EXPECT_FALSE(MachineDialled());
}

TEST_F(FleetCancelTest, AValidKeyOfANodeThatDoesNotExistGoesNowhere) {
  Serve(PgRoute(machine_.port));
  Cancel(FleetKeys(9)->Issue(4));  // the hook knows no node 9
  EXPECT_EQ(TakeForwarded().size(), 1u);
  EXPECT_EQ(ctx_.metrics.cancels_to_peer.load(), 0u);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kCancelUnknownKey), 1u);
  EXPECT_FALSE(MachineDialled());
}

TEST_F(FleetCancelTest, AKeyOfThisNodeIsServedHereAndNeverForwarded) {
  pg::CancelKey real{1234, base::Bytes{1, 2, 3, 4}};
  pg::CancelKey issued =
      ctx_.cancels.Register(CancelTarget{"mydb", "127.0.0.1", machine_.port, real});
  ASSERT_EQ(fleet::CancelKeys::NodeOfPid(issued.pid), 1);
  Serve(PgRoute(machine_.port));
  Cancel(issued);
  int m = machine_.Accept();
  ASSERT_GE(m, 0);
  EXPECT_EQ(RecvExactly(m, 16), Str(pg::BuildCancelRequest(real)));
  close(m);
  EXPECT_TRUE(Eventually([&] { return ctx_.metrics.cancels_forwarded.load() == 1; }));
  // Its session ends: the same key now reaches nobody, here or elsewhere.
  ctx_.cancels.Unregister(issued);
  Cancel(issued);
  EXPECT_FALSE(MachineDialled());
  EXPECT_TRUE(TakeForwarded().empty());
  EXPECT_EQ(ctx_.metrics.cancels_forwarded.load(), 1u);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kCancelUnknownKey), 1u);
}

TEST_F(FleetCancelTest, ACancelFromAPeerReachesOnlyTheBackendThatIssuedTheKey) {
  pg::CancelKey real{1234, base::Bytes(32, 3)};
  pg::CancelKey issued =
      ctx_.cancels.Register(CancelTarget{"mydb", "127.0.0.1", machine_.port, real});
  Serve(PgRoute(machine_.port));
  StartPeerCancel(io_, &ctx_, 2, issued, {"other", "mydb"});
  int m = machine_.Accept();
  ASSERT_GE(m, 0);
  EXPECT_EQ(RecvExactly(m, 12 + 32), Str(pg::BuildCancelRequest(real)));
  close(m);
  EXPECT_TRUE(Eventually([&] { return ctx_.metrics.cancels_forwarded.load() == 1; }));
}

TEST_F(FleetCancelTest, ACancelFromAPeerWithAWrongSecretAnotherAppOrAnEndedSessionGoesNowhere) {
  pg::CancelKey real{1234, base::Bytes{1, 2, 3, 4}};
  pg::CancelKey issued =
      ctx_.cancels.Register(CancelTarget{"mydb", "127.0.0.1", machine_.port, real});
  Serve(PgRoute(machine_.port));
  // Same pid, MAC intact, one random byte changed: not the whole secret.
  pg::CancelKey wrong = issued;
  wrong.secret[0] ^= 0x01;
  StartPeerCancel(io_, &ctx_, 2, wrong, {"mydb"});
  // The right key, but the landing node reached another app only.
  StartPeerCancel(io_, &ctx_, 2, issued, {"other"});
  EXPECT_TRUE(Eventually([&] {
    return ctx_.metrics.PeerRefusals(fleet::PeerRefusal::kUnknownKey) == 1 &&
           ctx_.metrics.PeerRefusals(fleet::PeerRefusal::kKeyOfAnotherApp) == 1;
  }));
  ctx_.cancels.Unregister(issued);
  StartPeerCancel(io_, &ctx_, 2, issued, {"mydb"});
  EXPECT_TRUE(Eventually(
      [&] { return ctx_.metrics.PeerRefusals(fleet::PeerRefusal::kUnknownKey) == 2; }));
  EXPECT_FALSE(MachineDialled());
  EXPECT_EQ(ctx_.metrics.cancels_forwarded.load(), 0u);
}

// ---- health, limits, roles and the allowlist (docs/connection.md, "Choosing a machine") ----

// A pg_tls client: TLS, then a StartupMessage. `fd` < 0 or `ssl` null if a step failed.
struct PgClient {
  int fd = -1;
  SSL* ssl = nullptr;
  ~PgClient() {
    if (ssl) SSL_free(ssl);
    if (fd >= 0) close(fd);
  }
  // The first bytes the edge sends after the StartupMessage (an ErrorResponse), "" on EOF.
  std::string Read() {
    char buf[1024];
    int n = SSL_read(ssl, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
};

class HealthTest : public NegotiationTest {
 protected:
  void Login(PgClient* c) {
    c->fd = Connect(port_);
    c->ssl = StartTls(c->fd);
    ASSERT_NE(c->ssl, nullptr);
    std::string packet = Str(pg::BuildStartupMessage(
        pg::StartupMessage{pg::kProtocol30, {{"user", "alice"}, {"database", "app"}}}));
    ASSERT_EQ(SSL_write(c->ssl, packet.data(), static_cast<int>(packet.size())),
              static_cast<int>(packet.size()));
  }
  uint64_t ConnectFailures(const std::string& address) {
    for (const auto& st : ctx_.board.AppStatus("mydb")) {
      if (st.key.address == address) return st.connect_failures;
    }
    return 0;
  }
};

TEST_F(HealthTest, AFailedConnectMarksTheMachineSoTheNextClientGets57P03WithoutADial) {
  int dead_port = 0;
  {
    Machine closed_soon;
    dead_port = closed_soon.port;
  }
  Serve(PgRoute(dead_port));
  {
    PgClient first;
    Login(&first);
    EXPECT_NE(first.Read().find("C08006"), std::string::npos) << "tried, and it failed";
  }
  EXPECT_EQ(ConnectFailures("127.0.0.1"), 1u);
  PgClient second;
  Login(&second);
  std::string error = second.Read();
  EXPECT_EQ(error[0], 'E');
  EXPECT_NE(error.find("C57P03"), std::string::npos) << error;
  EXPECT_NE(error.find("app \"mydb\" has no healthy machine"), std::string::npos) << error;
  EXPECT_EQ(error.find("127.0.0.1"), std::string::npos) << "never a private address";
  EXPECT_EQ(ConnectFailures("127.0.0.1"), 1u) << "the second client cost no attempt";
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kNoHealthyMachine), 1u);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kMachineUnreachable), 1u);
}

TEST_F(HealthTest, AMachineFailingItsCheckGetsNoConnection) {
  control::Route route = PgRoute(machine_.port);
  route.checks = {control::TcpCheck{}};
  auto now = std::chrono::steady_clock::now();
  health::MachineKey key{"mydb", "127.0.0.1", machine_.port};
  ctx_.board.SetTargets({{key, route.checks}}, now - 60s);  // long past its grace period
  ctx_.board.CheckResult(key, 0, false, "connection refused", now,
                         std::chrono::system_clock::now());
  Serve(route);
  PgClient c;
  Login(&c);
  std::string error = c.Read();
  EXPECT_NE(error.find("C57P03"), std::string::npos) << error;
  EXPECT_NE(error.find("has no healthy machine"), std::string::npos) << error;
  EXPECT_FALSE(machine_.Dialled());
}

TEST_F(HealthTest, ADeadMachineCostsOneAttemptAndTheLiveOneTakesEveryClient) {
  // Two machines on one port: 127.0.0.1 answers, 127.0.0.3 refuses.
  control::Route route = PgRoute(machine_.port);
  route.machines = {{"m1", "127.0.0.1"}, {"m2", "127.0.0.3"}};
  Serve(route);
  std::vector<std::unique_ptr<PgClient>> clients;
  std::vector<int> accepted;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<PgClient>());
    Login(clients.back().get());
    int m = machine_.Accept();
    ASSERT_GE(m, 0) << "client " << i << " reached the live machine";
    accepted.push_back(m);
  }
  EXPECT_EQ(ConnectFailures("127.0.0.3"), 1u);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kMachineUnreachable), 0u);
  // The machine's accept can return before the edge's io thread has seen its connect complete
  // and counted it (seen under ASan): wait for the counts, do not read them at once.
  EXPECT_TRUE(Eventually([&] { return ctx_.metrics.machine_connect_seconds.count() == 4u; }))
      << ctx_.metrics.machine_connect_seconds.count();
  EXPECT_TRUE(Eventually([&] { return ctx_.metrics.tls_handshake_seconds.count() == 4u; }))
      << ctx_.metrics.tls_handshake_seconds.count();
  EXPECT_TRUE(Eventually([&] { return ctx_.metrics.app_connections.Get("mydb") == 4u; }))
      << ctx_.metrics.app_connections.Get("mydb");
  EXPECT_EQ(ConnectFailures("127.0.0.3"), 1u) << "and no more attempts meanwhile";
  for (int m : accepted) close(m);
}

TEST_F(HealthTest, NewConnectionsGoToTheLeastLoadedMachine) {
  Machine second("127.0.0.2", machine_.port);
  control::Route route = PgRoute(machine_.port);
  route.machines = {{"m1", "127.0.0.1"}, {"m2", "127.0.0.2"}};
  Serve(route);
  PgClient a, b;
  Login(&a);
  bool first_on_one = machine_.Dialled(2000ms);
  int m1 = first_on_one ? machine_.Accept() : second.Accept();
  ASSERT_GE(m1, 0);
  Login(&b);
  // The other machine, whatever the rotation says, since the first has a session.
  int m2 = first_on_one ? second.Accept() : machine_.Accept();
  EXPECT_GE(m2, 0);
  close(m1);
  if (m2 >= 0) close(m2);
}

TEST_F(HealthTest, AtTheHardLimitAClientWaitsThenGetsFatal53300) {
  ctx_.limits.hard_limit_wait = 300ms;
  control::Route route = PgRoute(machine_.port);
  route.hard_limit = 1;
  Serve(route);
  PgClient holder;
  Login(&holder);
  int m = machine_.Accept();
  ASSERT_GE(m, 0);
  PgClient waiter;
  auto start = std::chrono::steady_clock::now();
  Login(&waiter);
  std::string error = waiter.Read();
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_NE(error.find("C53300"), std::string::npos) << error;
  EXPECT_NE(error.find("too many connections for app \"mydb\""), std::string::npos) << error;
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 1500ms);
  EXPECT_FALSE(machine_.Dialled(0ms)) << "the machine at its limit was never dialled";
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kMachineHardLimit), 1u);
  close(m);
}

TEST_F(HealthTest, AClientWaitingAtTheHardLimitGetsTheSlotThatFreesUp) {
  ctx_.limits.hard_limit_wait = 1500ms;
  control::Route route = PgRoute(machine_.port);
  route.hard_limit = 1;
  Serve(route);
  PgClient holder;
  Login(&holder);
  int m = machine_.Accept();
  ASSERT_GE(m, 0);
  // The holder's session ends (its server closes) while the next client waits.
  PgClient waiter;
  Login(&waiter);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(machine_.Dialled(0ms));
  close(m);
  int m2 = machine_.Accept();
  EXPECT_GE(m2, 0) << "connected once the slot was free";
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kMachineHardLimit), 0u);
  if (m2 >= 0) close(m2);
}

TEST_F(HealthTest, AFreshStandbyIsNeverGivenAReadWriteClient) {
  control::Route route = PgRoute(machine_.port);
  route.target = control::TargetSessionAttrs::kReadWrite;
  ctx_.board.LearnRole({"mydb", "127.0.0.1", machine_.port}, true,
                       std::chrono::steady_clock::now());
  Serve(route);
  PgClient c;
  Login(&c);
  std::string error = c.Read();
  EXPECT_NE(error.find("C57P03"), std::string::npos) << error;
  EXPECT_NE(error.find("app \"mydb\" has no primary machine available now"), std::string::npos)
      << error;
  EXPECT_FALSE(machine_.Dialled());
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kNoMachineWithRole), 1u);
}

TEST_F(HealthTest, AStandbyServesAPreferStandbyClient) {
  control::Route route = PgRoute(machine_.port);
  route.target = control::TargetSessionAttrs::kPreferStandby;
  ctx_.board.LearnRole({"mydb", "127.0.0.1", machine_.port}, false,
                       std::chrono::steady_clock::now());
  Serve(route);
  PgClient c;
  Login(&c);
  int m = machine_.Accept();
  EXPECT_GE(m, 0) << "a primary is the last tier of prefer-standby, not refused";
  if (m >= 0) close(m);
}

TEST_F(HealthTest, ASourceOutsideTheAllowlistGetsFatal28000BeforeAnyMachineIsContacted) {
  control::Route route = PgRoute(machine_.port);
  route.allowed_sources = {*base::ParseCidr("10.0.0.0/8"), *base::ParseCidr("2001:db8::/32")};
  Serve(route);
  PgClient c;
  Login(&c);
  std::string error = c.Read();
  EXPECT_NE(error.find("C28000"), std::string::npos) << error;
  EXPECT_NE(error.find("source address not allowed for app \"mydb\""), std::string::npos)
      << error;
  EXPECT_FALSE(machine_.Dialled());
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kSourceNotAllowed), 1u);
}

TEST_F(HealthTest, ASourceInsideTheAllowlistConnects) {
  control::Route route = PgRoute(machine_.port);
  route.allowed_sources = {*base::ParseCidr("10.0.0.0/8"), *base::ParseCidr("127.0.0.1")};
  Serve(route);
  PgClient c;
  Login(&c);
  int m = machine_.Accept();
  EXPECT_GE(m, 0);
  if (m >= 0) close(m);
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kSourceNotAllowed), 0u);
}

TEST_F(HealthTest, RawTcpFromOutsideTheAllowlistIsClosedWithoutADial) {
  control::Route route = PgRoute(machine_.port);
  route.pg_tls = false;
  route.allowed_sources = {*base::ParseCidr("192.0.2.0/24")};
  Serve(route);
  int fd = Connect(port_);
  bool eof = false;
  EXPECT_EQ(RecvToEnd(fd, &eof), "");
  EXPECT_TRUE(eof);
  EXPECT_FALSE(machine_.Dialled());
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kSourceNotAllowed), 1u);
  close(fd);
}

}  // namespace
}  // namespace drawbridge::net
