// The relay phase on its own: a Session on socket pairs, adopted by a real RelayLoop, with a
// TLS client made by OpenSSL for the pg_tls cases. No Postgres, no Asio.
#include "net/session.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "net/test_sockets.h"
#include "tls/test_tls.h"

namespace drawbridge::net {
namespace {

using nettest::Eventually;
using nettest::SocketPair;

using namespace std::chrono_literals;

void SendAll(int fd, std::string_view data) {
  size_t done = 0;
  ASSERT_TRUE(Eventually([&] {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) done += static_cast<size_t>(n);
    return done == data.size();
  }));
}

// Reads until `want` bytes came or EOF; *eof says whether EOF was seen.
std::string RecvUpTo(int fd, size_t want, bool* eof = nullptr) {
  std::string got;
  bool closed = false;
  Eventually([&] {
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (n == 0) closed = true;
    return closed || got.size() >= want;
  });
  if (eof) *eof = closed;
  return got;
}

bool SeesEof(int fd) {
  bool eof = false;
  RecvUpTo(fd, SIZE_MAX, &eof);
  return eof;
}

std::string Str(const base::Bytes& b) { return std::string(b.begin(), b.end()); }

// A PostgreSQL backend message.
std::string Message(char type, std::string_view body) {
  std::string m(1, type);
  uint32_t len = htonl(static_cast<uint32_t>(body.size() + 4));
  m.append(reinterpret_cast<const char*>(&len), 4);
  m.append(body);
  return m;
}

const health::MachineKey kMachine{"mydb", "10.0.0.5", 5432};

class SessionTest : public ::testing::Test {
 protected:
  // What the board says of the session's machine now.
  health::MachineView Board() {
    std::string address = kMachine.address;
    return ctx_.board.View(kMachine.app, kMachine.port, std::span<const std::string>(&address, 1),
                           std::chrono::steady_clock::now())[0];
  }

  void SetUp() override {
    route_.app = "mydb";
    route_.host = "mydb.drawbridge.test";
    route_.internal_port = 5432;
    ctx_.on_server_version = [this](const std::string& app, const std::string& machine,
                                    const std::string& version) {
      std::lock_guard lock(mu_);
      observed_ = app + " " + machine + " " + version;
    };
    ASSERT_TRUE(loop_.Start().ok());
  }
  void TearDown() override { loop_.Stop(); }

  // Hands the session to the loop as the negotiation does, counted as live, with a session
  // ticket of its machine's as the negotiation takes before it dials.
  void Start(std::unique_ptr<tls::TlsEngine> engine) {
    ctx_.live.Enter();
    ctx_.metrics.active++;
    SessionParts parts;
    parts.client_fd = client_.ours;
    parts.server_fd = server_.ours;
    parts.tls = std::move(engine);
    parts.record.route = &route_;
    parts.record.local.ip = {127, 0, 10, 2};  // the address the client dialled
    parts.record.local.port = 5432;
    parts.machine_address = "10.0.0.5";
    parts.ticket = ctx_.board.OpenSession(kMachine);
    std::unique_ptr<RelayHandler> session = std::make_unique<Session>(&ctx_, std::move(parts));
    ASSERT_TRUE(loop_.Adopt(&session, client_.ours, server_.ours));
  }

  // A TLS client whose handshake with the session's engine is done in memory.
  std::unique_ptr<tls::TlsEngine> HandshakenEngine() {
    auto engine = tls::TlsEngine::NewServer(certs_, {});
    if (!engine.ok()) std::abort();
    tls::tlstest::ClientPair::ClientOptions options;
    options.sni = "mydb.drawbridge.test";
    options.alpn = {"postgresql"};
    pair_ = std::make_unique<tls::tlstest::ClientPair>(std::move(*engine), options);
    if (!pair_->Handshake()) std::abort();
    return pair_->TakeServer();
  }

  // The TLS client's side over client_.theirs: moves ciphertext, then reads plaintext until
  // `want` bytes, the server's close_notify (*closed) or the socket's EOF.
  std::string TlsRead(size_t want, bool* closed = nullptr) {
    std::string got;
    bool done = false;
    Eventually([&] {
      char buf[65536];
      ssize_t n = recv(client_.theirs, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) BIO_write(pair_->client_in(), buf, static_cast<int>(n));
      size_t m = 0;
      int r = 0;
      while ((r = SSL_read_ex(pair_->client(), buf, sizeof buf, &m)) == 1) got.append(buf, m);
      if (SSL_get_error(pair_->client(), r) == SSL_ERROR_ZERO_RETURN) done = true;
      ERR_clear_error();
      return done || n == 0 || got.size() >= want;  // n == 0: EOF without close_notify
    });
    if (closed) *closed = done;
    return got;
  }
  void TlsWrite(std::string_view data) {
    pair_->ClientSeal(data);
    SendAll(client_.theirs, Str(pair_->TakeClientCiphertext()));
  }

  std::shared_ptr<const tls::CertSet> certs_ = tls::tlstest::CertSetFor("mydb.drawbridge.test");
  control::Route route_;
  ServerContext ctx_;
  RelayLoop loop_;
  SocketPair client_, server_;
  std::unique_ptr<tls::tlstest::ClientPair> pair_;
  std::mutex mu_;
  std::string observed_;
};

TEST_F(SessionTest, RawTcpRelaysBothWaysAndKeepsTheHalfClose) {
  Start(nullptr);
  SendAll(client_.theirs, "ping");
  EXPECT_EQ(RecvUpTo(server_.theirs, 4), "ping");
  SendAll(server_.theirs, "pong");
  EXPECT_EQ(RecvUpTo(client_.theirs, 4), "pong");

  // The client half-closes: the machine sees EOF and may still answer.
  ASSERT_EQ(shutdown(client_.theirs, SHUT_WR), 0);
  EXPECT_TRUE(SeesEof(server_.theirs));
  SendAll(server_.theirs, "bye");
  EXPECT_EQ(RecvUpTo(client_.theirs, 3), "bye");
  EXPECT_EQ(ctx_.live.count(), 1u);

  server_.CloseTheirs();
  EXPECT_TRUE(SeesEof(client_.theirs));
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.closed.load(), 1u);
  EXPECT_EQ(ctx_.metrics.active.load(), 0u);
  EXPECT_EQ(ctx_.metrics.bytes_in.load(), 4u);
  EXPECT_EQ(ctx_.metrics.bytes_out.load(), 7u);
}

TEST_F(SessionTest, ASlowClientGetsEveryByteInOrder) {
  Start(nullptr);
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 4096);
  std::thread writer([&] { SendAll(server_.theirs, big); });
  std::this_thread::sleep_for(50ms);  // the client reads nothing yet: the session must hold
  std::string got = RecvUpTo(client_.theirs, big.size());
  writer.join();
  EXPECT_TRUE(got == big) << got.size() << " of " << big.size() << " bytes";
}

TEST_F(SessionTest, PgTlsIssuesItsOwnCancelKeyAndReportsTheVersion) {
  route_.pg_tls = true;
  Start(HandshakenEngine());
  base::Bytes real_secret = {1, 2, 3, 4};
  std::string before_key =
      Message('R', std::string("\0\0\0\0", 4)) + Message('S', std::string("server_version\0"
                                                                          "15.4\0",
                                                                          20));
  std::string startup = before_key +
                        Str(pg::BuildBackendKeyData(pg::CancelKey{1234, real_secret})) +
                        Message('Z', "I");
  SendAll(server_.theirs, startup);
  std::string got = TlsRead(startup.size());
  ASSERT_EQ(got.size(), startup.size());
  // Everything but the key passes unchanged; the key is one the edge issued.
  size_t k = before_key.size();
  ASSERT_EQ(startup[k], 'K');
  EXPECT_EQ(got.substr(0, k), startup.substr(0, k));
  EXPECT_EQ(got.substr(k + 17), startup.substr(k + 17));
  EXPECT_NE(got.substr(k, 17), startup.substr(k, 17));
  ASSERT_EQ(ctx_.cancels.size(), 1u);
  pg::CancelKey issued;
  uint32_t pid_be = 0;
  std::memcpy(&pid_be, got.data() + k + 5, 4);  // unaligned in the stream
  issued.pid = ntohl(pid_be);
  issued.secret.assign(got.begin() + static_cast<std::ptrdiff_t>(k + 9),
                       got.begin() + static_cast<std::ptrdiff_t>(k + 13));
  auto target = ctx_.cancels.Find(issued);
  ASSERT_TRUE(target.has_value());
  EXPECT_EQ(target->app, "mydb");
  EXPECT_EQ(target->address, "10.0.0.5");
  EXPECT_EQ(target->port, 5432);
  EXPECT_EQ(target->key.pid, 1234u);
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(observed_, "mydb 10.0.0.5 15.4");
  }

  // A query goes through in plaintext to the machine.
  std::string query = Message('Q', std::string("SELECT 1\0", 9));
  TlsWrite(query);
  EXPECT_EQ(RecvUpTo(server_.theirs, query.size()), query);

  // The server closes: the client gets close_notify and EOF at once, without closing first,
  // and the session's key is gone.
  server_.CloseTheirs();
  bool closed = false;
  TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(SeesEof(client_.theirs));
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.cancels.size(), 0u);
}

TEST_F(SessionTest, AServerThatBreaksTheProtocolDuringLoginGetsTheClientAFatal08P01) {
  route_.pg_tls = true;
  Start(HandshakenEngine());
  std::string auth_ok = Message('R', std::string("\0\0\0\0", 4));
  std::string bad = std::string("S\0\0\0\2", 5);  // a length below 4
  SendAll(server_.theirs, auth_ok + bad);
  bool closed = false;
  std::string got = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  ASSERT_GT(got.size(), auth_ok.size());
  EXPECT_EQ(got.substr(0, auth_ok.size()), auth_ok);
  std::string fatal = got.substr(auth_ok.size());
  EXPECT_EQ(fatal[0], 'E');
  EXPECT_NE(fatal.find("C08P01"), std::string::npos);
  EXPECT_NE(fatal.find("the database server broke the protocol"), std::string::npos);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
}

TEST_F(SessionTest, StoppingBetweenTwoMessagesTellsThePgTlsClientWhy) {
  route_.pg_tls = true;
  Start(HandshakenEngine());
  std::string ready = Message('Z', "I");
  SendAll(server_.theirs, ready);
  EXPECT_EQ(TlsRead(ready.size()), ready);
  loop_.Stop();
  bool closed = false;
  std::string fatal = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  ASSERT_FALSE(fatal.empty());
  EXPECT_EQ(fatal[0], 'E');
  EXPECT_NE(fatal.find("C57P01"), std::string::npos);
  EXPECT_EQ(ctx_.live.count(), 0u);
  EXPECT_TRUE(SeesEof(server_.theirs));
}

TEST_F(SessionTest, StoppingInTheMiddleOfAMessageOnlyCloses) {
  route_.pg_tls = true;
  Start(HandshakenEngine());
  std::string half = Message('D', std::string(100, 'x')).substr(0, 50);
  SendAll(server_.theirs, half);
  EXPECT_EQ(TlsRead(half.size()), half);
  loop_.Stop();
  bool closed = false;
  std::string more = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(more.empty()) << "a FATAL inside a DataRow would corrupt the stream";
  EXPECT_TRUE(SeesEof(client_.theirs));
  EXPECT_EQ(ctx_.live.count(), 0u);
}

// What the control plane says after a change: `app` holds `addresses` (no entry: destroyed).
std::shared_ptr<const control::AddressHolders> Holders(
    std::map<std::string, std::set<std::string>> apps) {
  return std::make_shared<const control::AddressHolders>(100, std::move(apps));
}

TEST_F(SessionTest, AReleasedAddressEndsThePgTlsSessionWithFatal57P01SayingSo) {
  route_.pg_tls = true;
  ctx_.holders.Swap(Holders({{"mydb", {"127.0.10.2"}}}));
  Start(HandshakenEngine());
  std::string ready = Message('Z', "I");
  SendAll(server_.theirs, ready);
  EXPECT_EQ(TlsRead(ready.size()), ready);
  // Another address of the app goes: this session stays.
  ctx_.holders.Swap(Holders({{"mydb", {"127.0.10.2"}}, {"other", {}}}));
  loop_.RecheckAll();
  std::string query = Message('Q', std::string("SELECT 1\0", 9));
  TlsWrite(query);
  EXPECT_EQ(RecvUpTo(server_.theirs, query.size()), query);
  SendAll(server_.theirs, ready);
  EXPECT_EQ(TlsRead(ready.size()), ready);
  // Its own address is released: it ends at once, idle as it is.
  ctx_.holders.Swap(Holders({{"mydb", {"127.0.10.3"}}}));
  loop_.RecheckAll();
  bool closed = false;
  std::string fatal = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  ASSERT_FALSE(fatal.empty());
  EXPECT_EQ(fatal[0], 'E');
  EXPECT_NE(fatal.find("SFATAL"), std::string::npos);
  EXPECT_NE(fatal.find("C57P01"), std::string::npos);
  EXPECT_NE(fatal.find("terminating connection: address 127.0.10.2 was released from app "
                       "\"mydb\""),
            std::string::npos);
  EXPECT_TRUE(SeesEof(client_.theirs));
  EXPECT_TRUE(SeesEof(server_.theirs)) << "the machine's session ends too";
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.revoked.load(), 1u);
}

TEST_F(SessionTest, ADestroyedAppEndsARawTcpSessionWithoutAWord) {
  ctx_.holders.Swap(Holders({{"mydb", {"127.0.10.2"}}}));
  Start(nullptr);
  SendAll(client_.theirs, "ping");
  EXPECT_EQ(RecvUpTo(server_.theirs, 4), "ping");
  ctx_.holders.Swap(Holders({{"other", {"127.0.10.2"}}}));
  loop_.RecheckAll();
  bool eof = false;
  EXPECT_EQ(RecvUpTo(client_.theirs, SIZE_MAX, &eof), "");
  EXPECT_TRUE(eof);
  EXPECT_TRUE(SeesEof(server_.theirs));
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.revoked.load(), 1u);
}

TEST_F(SessionTest, ASessionRoutedAfterTheAddressWasReleasedEndsAsItIsAdopted) {
  // The negotiation routed it with the old table and checked before the release; the relay
  // loop's recheck on adoption catches it.
  route_.pg_tls = true;
  ctx_.holders.Swap(Holders({}));
  Start(HandshakenEngine());
  bool closed = false;
  std::string fatal = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  EXPECT_NE(fatal.find("C57P01"), std::string::npos);
  EXPECT_NE(fatal.find("terminating connection: app \"mydb\" was destroyed"), std::string::npos);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
}

// ---- health: session counts, roles (docs/connection.md, "Roles") ---------------------------

std::string ParameterStatus(std::string_view name, std::string_view value) {
  std::string body(name);
  body += '\0';
  body += value;
  body += '\0';
  return Message('S', body);
}

TEST_F(SessionTest, TheSessionCountsOnItsMachineUntilItEnds) {
  Start(nullptr);
  EXPECT_EQ(Board().sessions, 1);
  SendAll(client_.theirs, "ping");
  EXPECT_EQ(RecvUpTo(server_.theirs, 4), "ping");
  server_.CloseTheirs();
  client_.CloseTheirs();
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(Board().sessions, 0);
  EXPECT_EQ(ctx_.metrics.session_seconds.count(), 1u);
}

TEST_F(SessionTest, AStandbyLoginForAReadWriteServiceEndsWithFatal57P03BeforeReadyForQuery) {
  route_.pg_tls = true;
  route_.target = control::TargetSessionAttrs::kReadWrite;
  Start(HandshakenEngine());
  std::string head = Message('R', std::string("\0\0\0\0", 4)) +
                     ParameterStatus("server_version", "16.1") +
                     ParameterStatus("in_hot_standby", "on");
  std::string rest = ParameterStatus("TimeZone", "UTC") +
                     Str(pg::BuildBackendKeyData(pg::CancelKey{1, {1, 2, 3, 4}})) +
                     Message('Z', "I");
  SendAll(server_.theirs, head + rest);
  bool closed = false;
  std::string got = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  ASSERT_GT(got.size(), head.size());
  EXPECT_EQ(got.substr(0, head.size()), head);
  std::string fatal = got.substr(head.size());
  EXPECT_EQ(fatal[0], 'E');
  EXPECT_NE(fatal.find("SFATAL"), std::string::npos);
  EXPECT_NE(fatal.find("C57P03"), std::string::npos);
  EXPECT_NE(fatal.find("app \"mydb\" has no primary machine available now"), std::string::npos);
  EXPECT_EQ(fatal.find("10.0.0.5"), std::string::npos) << "never a private address";
  EXPECT_EQ(got.find(std::string("Z\0\0\0\5", 5)), std::string::npos) << "no ReadyForQuery";
  // The server is told to end the backend, then the socket closes.
  std::string to_server = RecvUpTo(server_.theirs, SIZE_MAX);
  EXPECT_EQ(to_server, std::string("X\0\0\0\4", 5));
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kRoleMismatch), 1u);
  EXPECT_EQ(Board().role, health::Role::kStandby) << "learned: the next pick avoids it";
  EXPECT_EQ(Board().sessions, 0);
  EXPECT_EQ(ctx_.cancels.size(), 0u);
}

TEST_F(SessionTest, APrimaryLoginForAStandbyServiceEndsSaying) {
  route_.pg_tls = true;
  route_.target = control::TargetSessionAttrs::kReadOnly;
  Start(HandshakenEngine());
  SendAll(server_.theirs, Message('R', std::string("\0\0\0\0", 4)) +
                              ParameterStatus("in_hot_standby", "off") + Message('Z', "I"));
  bool closed = false;
  std::string got = TlsRead(SIZE_MAX, &closed);
  EXPECT_TRUE(closed);
  EXPECT_NE(got.find("app \"mydb\" has no standby machine available now"), std::string::npos);
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(Board().role, health::Role::kPrimary);
}

// A standby's login for a service that may use one, then a promotion in the live session.
class RoleTest : public SessionTest,
                 public ::testing::WithParamInterface<control::TargetSessionAttrs> {};

TEST_P(RoleTest, TheRightRoleLogsInAndALivePromotionIsLearned) {
  route_.pg_tls = true;
  route_.target = GetParam();
  Start(HandshakenEngine());
  std::string login = Message('R', std::string("\0\0\0\0", 4)) +
                      ParameterStatus("in_hot_standby", "on") + Message('Z', "I");
  SendAll(server_.theirs, login);
  EXPECT_EQ(TlsRead(login.size()), login);
  EXPECT_EQ(Board().role, health::Role::kStandby);
  // The standby is promoted: PostgreSQL tells every session.
  std::string promoted = ParameterStatus("in_hot_standby", "off");
  SendAll(server_.theirs, promoted);
  EXPECT_EQ(TlsRead(promoted.size()), promoted) << "passed on unchanged";
  EXPECT_TRUE(Eventually([&] { return Board().role == health::Role::kPrimary; }));
  EXPECT_EQ(ctx_.live.count(), 1u) << "the session goes on";
  server_.CloseTheirs();
  EXPECT_TRUE(Eventually([&] { return ctx_.live.count() == 0; }));
  EXPECT_EQ(ctx_.metrics.Failures(NetReason::kRoleMismatch), 0u);
}

INSTANTIATE_TEST_SUITE_P(Targets, RoleTest,
                         ::testing::Values(control::TargetSessionAttrs::kAny,
                                           control::TargetSessionAttrs::kStandby,
                                           control::TargetSessionAttrs::kPreferStandby));

}  // namespace
}  // namespace drawbridge::net
