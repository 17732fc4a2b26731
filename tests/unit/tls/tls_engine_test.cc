// TlsEngine driven by a real OpenSSL client over memory BIOs (docs/protocol.md, "Direct TLS and
// ALPN" and "TLS settings").
#include "tls/tls_engine.h"

#include <gtest/gtest.h>

#include "tls/test_tls.h"

namespace drawbridge::tls {
namespace {

using tlstest::ClientPair;
using tlstest::CommonName;
using tlstest::MakeCert;
using tlstest::TempDir;
using Io = TlsEngine::Io;

class TlsEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    default_cert_ = MakeCert(*dir_, "default.example", "DNS:default.example");
    db_cert_ = MakeCert(*dir_, "db.example.com", "DNS:db.example.com,DNS:*.pg.example.com");
    auto set = CertSet::Load({default_cert_, db_cert_});
    if (!set.ok()) std::abort();
    certs_ = new std::shared_ptr<const CertSet>(*set);
  }
  static void TearDownTestSuite() {
    delete certs_;
    delete dir_;
  }

  static std::unique_ptr<ClientPair> Connect(ClientPair::ClientOptions client,
                                             SessionPolicy policy = {}) {
    auto engine = TlsEngine::NewServer(*certs_, std::move(policy));
    if (!engine.ok()) std::abort();
    return std::make_unique<ClientPair>(std::move(*engine), client);
  }

  static std::string PeerCommonName(SSL* client) {
    return CommonName(SSL_get0_peer_certificate(client));
  }

  static TempDir* dir_;
  static CertFiles default_cert_, db_cert_;
  static std::shared_ptr<const CertSet>* certs_;
};

TempDir* TlsEngineTest::dir_ = nullptr;
CertFiles TlsEngineTest::default_cert_, TlsEngineTest::db_cert_;
std::shared_ptr<const CertSet>* TlsEngineTest::certs_ = nullptr;

ClientPair::ClientOptions Client(std::string sni, std::vector<std::string> alpn = {}) {
  ClientPair::ClientOptions o;
  o.sni = std::move(sni);
  o.alpn = std::move(alpn);
  return o;
}

std::string Alpn(SSL* ssl) {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &p, &len);
  return std::string(reinterpret_cast<const char*>(p), len);
}

TEST_F(TlsEngineTest, HandshakeSelectsPostgresqlAlpn) {
  auto pair = Connect(Client("db.example.com", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  EXPECT_EQ(pair->server().alpn(), "postgresql");
  EXPECT_EQ(Alpn(pair->client()), "postgresql");
  EXPECT_EQ(pair->server().version(), "TLSv1.3");
  EXPECT_FALSE(pair->server().cipher().empty());
  EXPECT_EQ(pair->server().server_name(), "db.example.com");
}

TEST_F(TlsEngineTest, PostgresqlIsPickedFromAListOfSeveral) {
  auto pair = Connect(Client("", {"h2", "http/1.1", "postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  EXPECT_EQ(pair->server().alpn(), "postgresql");
}

// "Direct TLS and ALPN" (ALPACA): a list without "postgresql" gets alert 120
// no_application_protocol.
TEST_F(TlsEngineTest, ClientOfferingOnlyH2Fails) {
  auto pair = Connect(Client("db.example.com", {"h2"}));
  EXPECT_FALSE(pair->Handshake());
  EXPECT_EQ(pair->client_error, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
  EXPECT_FALSE(pair->server().error().empty());
  EXPECT_EQ(pair->server().Handshake(), Io::kError) << "a failed session stays failed";
}

// The SSLRequest path tolerates clients without ALPN (libpq before 17).
TEST_F(TlsEngineTest, NoAlpnIsAccepted) {
  auto pair = Connect(Client("db.example.com"));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  EXPECT_EQ(pair->server().alpn(), "");
}

TEST_F(TlsEngineTest, ListPolicySelectsFromItsList) {
  SessionPolicy policy;
  policy.alpn_policy = AlpnPolicy::kList;
  policy.alpn = {"h2", "http/1.1"};
  auto pair = Connect(Client("", {"http/1.1"}), policy);
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  EXPECT_EQ(pair->server().alpn(), "http/1.1");

  auto refused = Connect(Client("", {"postgresql"}), policy);
  EXPECT_FALSE(refused->Handshake());
  EXPECT_EQ(refused->client_error, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);

  SessionPolicy none;
  none.alpn_policy = AlpnPolicy::kList;
  auto ignored = Connect(Client("", {"postgresql"}), none);
  ASSERT_TRUE(ignored->Handshake()) << ignored->server().error();
  EXPECT_EQ(ignored->server().alpn(), "") << "an empty list acknowledges nothing";
}

TEST_F(TlsEngineTest, SniPicksTheSecondCertificate) {
  struct Case {
    std::string sni;
    std::string want_cn;
  };
  for (const Case& c :
       {Case{"db.example.com", "db.example.com"}, Case{"DB.Example.COM", "db.example.com"},
        Case{"ep-1.pg.example.com", "db.example.com"}, Case{"default.example", "default.example"},
        Case{"unknown.example", "default.example"}, Case{"", "default.example"}}) {
    SCOPED_TRACE(c.sni);
    auto pair = Connect(Client(c.sni, {"postgresql"}));
    ASSERT_TRUE(pair->Handshake()) << pair->server().error();
    EXPECT_EQ(PeerCommonName(pair->client()), c.want_cn);
  }
}

TEST_F(TlsEngineTest, DataRoundTripBothWays) {
  auto pair = Connect(Client("db.example.com", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();

  Io last;
  EXPECT_EQ(pair->ServerRead(&last), "");
  EXPECT_EQ(last, Io::kWantRead);

  pair->ClientWrite("startup packet");
  EXPECT_EQ(pair->ServerRead(&last), "startup packet");
  EXPECT_EQ(last, Io::kWantRead);

  ASSERT_EQ(pair->ServerWrite("R and K and Z"), Io::kOk);
  EXPECT_FALSE(pair->server().HasOutput()) << "Write's records go to the caller's buffer";
  EXPECT_EQ(pair->ClientRead(), "R and K and Z");

  // Larger than one TLS record, both ways, read through a small buffer.
  std::string big(100000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  pair->ClientWrite(big);
  EXPECT_EQ(pair->ServerRead(&last, 1000), big);
  ASSERT_EQ(pair->ServerWrite(big), Io::kOk);
  EXPECT_EQ(pair->ClientRead(), big);
}

// Read() decrypts every whole record it is given, as far as the buffer goes; the lent bytes it
// has not consumed are copied before it returns, so the caller may reuse its buffer at once.
TEST_F(TlsEngineTest, LentInputIsConsumedOrKept) {
  auto pair = Connect(Client("", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  pair->ClientSeal("first record;");
  pair->ClientSeal("second record");
  base::Bytes wire = pair->TakeClientCiphertext();

  std::vector<uint8_t> buf(64);
  size_t n = 0;
  ASSERT_EQ(pair->server().Read(wire, buf, &n), Io::kOk);
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + n), "first record;second record")
      << "both records in one call";
  EXPECT_TRUE(pair->server().read_drained()) << "no whole record left";

  pair->ClientSeal("third record");
  pair->ClientSeal("fourth record");
  wire = pair->TakeClientCiphertext();
  std::vector<uint8_t> small(12);
  ASSERT_EQ(pair->server().Read(wire, small, &n), Io::kOk);
  EXPECT_EQ(std::string(small.begin(), small.begin() + n), "third record");
  EXPECT_FALSE(pair->server().read_drained()) << "the buffer filled with a record still kept";
  std::fill(wire.begin(), wire.end(), 0xEE);  // the caller's buffer is reused
  std::string rest;
  for (int i = 0; i < 4; ++i) {
    Io io = pair->server().Read({}, small, &n);
    if (io != Io::kOk) {
      EXPECT_EQ(io, Io::kWantRead);
      break;
    }
    rest.append(small.begin(), small.begin() + static_cast<std::ptrdiff_t>(n));
  }
  EXPECT_EQ(rest, "fourth record");

  // Half a record is taken in (the engine holds it), the rest completes it.
  pair->ClientSeal("split across two reads");
  wire = pair->TakeClientCiphertext();
  size_t half = wire.size() / 2;
  ASSERT_EQ(pair->server().Read(base::ByteSpan(wire).first(half), buf, &n), Io::kWantRead);
  ASSERT_EQ(pair->server().Read(base::ByteSpan(wire).subspan(half), buf, &n), Io::kOk);
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + n), "split across two reads");
}

// Read() stops after the record that used up the input, and goes on when more than that is
// left: here a whole record followed by half of the next, which OpenSSL takes in and holds.
TEST_F(TlsEngineTest, AWholeRecordAndHalfOfTheNext) {
  auto pair = Connect(Client("", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  pair->ClientSeal("whole");
  base::Bytes first = pair->TakeClientCiphertext();
  pair->ClientSeal("and the next one");
  base::Bytes second = pair->TakeClientCiphertext();
  size_t half = second.size() / 2;
  base::Bytes wire = first;
  wire.insert(wire.end(), second.begin(), second.begin() + static_cast<std::ptrdiff_t>(half));

  std::vector<uint8_t> buf(64);
  size_t n = 0;
  ASSERT_EQ(pair->server().Read(wire, buf, &n), Io::kOk);
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)), "whole");
  EXPECT_TRUE(pair->server().read_drained()) << "the rest is not a whole record";
  ASSERT_EQ(pair->server().Read(base::ByteSpan(second).subspan(half), buf, &n), Io::kOk);
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)),
            "and the next one");
  EXPECT_TRUE(pair->server().read_drained());
  EXPECT_EQ(pair->server().Read({}, buf, &n), Io::kWantRead);
}

// A TLS 1.3 KeyUpdate the client requests is read in passing; OpenSSL answers it with the next
// Write's records, which the client then decrypts under the new key.
TEST_F(TlsEngineTest, KeyUpdateIsAnsweredInTheNextWrite) {
  auto pair = Connect(Client("", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  ASSERT_EQ(SSL_key_update(pair->client(), SSL_KEY_UPDATE_REQUESTED), 1);
  pair->ClientWrite("after update");
  Io last;
  EXPECT_EQ(pair->ServerRead(&last), "after update");
  EXPECT_EQ(last, Io::kWantRead);
  ASSERT_EQ(pair->ServerWrite("reply"), Io::kOk);
  EXPECT_FALSE(pair->server().HasOutput());
  EXPECT_EQ(pair->ClientRead(), "reply");
  pair->ClientWrite("and again");
  EXPECT_EQ(pair->ServerRead(&last), "and again");
}

TEST_F(TlsEngineTest, CloseNotifyGivesClosed) {
  auto pair = Connect(Client("", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  pair->ClientSeal("last words");
  SSL_shutdown(pair->client());
  base::Bytes wire = pair->TakeClientCiphertext();
  std::vector<uint8_t> buf(64);
  size_t n = 0;
  // The bytes before the close come first; the engine is not drained (the close is next).
  ASSERT_EQ(pair->server().Read(wire, buf, &n), Io::kOk);
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + n), "last words");
  EXPECT_FALSE(pair->server().read_drained());
  EXPECT_EQ(pair->server().Read({}, buf, &n), Io::kClosed);

  // And the other way: the server's close_notify reaches the client.
  pair->server().Shutdown();
  pair->Shuttle();
  char plain[16];
  EXPECT_NE(SSL_read_ex(pair->client(), plain, sizeof plain, &n), 1);
  EXPECT_EQ(SSL_get_error(pair->client(), 0), SSL_ERROR_ZERO_RETURN);
}

TEST_F(TlsEngineTest, CloseHandsOverTheCloseNotify) {
  auto pair = Connect(Client("db.example.com", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  base::Bytes out;
  pair->server().Close(&out);
  EXPECT_FALSE(pair->server().HasOutput());
  ASSERT_FALSE(out.empty());
  BIO_write(SSL_get_rbio(pair->client()), out.data(), static_cast<int>(out.size()));
  char plain[16];
  size_t n = 0;
  EXPECT_NE(SSL_read_ex(pair->client(), plain, sizeof plain, &n), 1);
  EXPECT_EQ(SSL_get_error(pair->client(), 0), SSL_ERROR_ZERO_RETURN);
}

TEST_F(TlsEngineTest, ShutdownBeforeHandshakeIsHarmless) {
  auto pair = Connect({});
  pair->server().Shutdown();
  EXPECT_FALSE(pair->server().HasOutput());
}

TEST_F(TlsEngineTest, GarbageIsAnError) {
  auto engine = TlsEngine::NewServer(*certs_, {});
  ASSERT_TRUE(engine.ok());
  (*engine)->FeedCiphertext(base::AsBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ((*engine)->Handshake(), Io::kError);
  EXPECT_FALSE((*engine)->error().empty());
}

TEST_F(TlsEngineTest, HandshakeWaitsForMoreBytes) {
  auto engine = TlsEngine::NewServer(*certs_, {});
  ASSERT_TRUE(engine.ok());
  EXPECT_EQ((*engine)->Handshake(), Io::kWantRead);
  const uint8_t half_header[] = {0x16, 0x03};
  (*engine)->FeedCiphertext(half_header);
  EXPECT_EQ((*engine)->Handshake(), Io::kWantRead) << "half a record header";
}

TEST_F(TlsEngineTest, Tls12WhenCappedWithAMozillaCipher) {
  SessionPolicy policy;
  policy.max_version = TLS1_2_VERSION;
  auto pair = Connect(Client("", {"postgresql"}), policy);
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  EXPECT_EQ(pair->server().version(), "TLSv1.2");
  // The client's preference decides (no server order, as Mozilla "intermediate" says); any
  // ECDSA suite of the intermediate list will do.
  std::string cipher = pair->server().cipher();
  EXPECT_TRUE(cipher == "ECDHE-ECDSA-AES128-GCM-SHA256" ||
              cipher == "ECDHE-ECDSA-AES256-GCM-SHA384" ||
              cipher == "ECDHE-ECDSA-CHACHA20-POLY1305")
      << cipher;
  EXPECT_EQ(pair->server().alpn(), "postgresql");
}

// "TLS settings": no session tickets, so the client holds no resumable session.
TEST_F(TlsEngineTest, NoSessionTickets) {
  auto pair = Connect(Client("", {"postgresql"}));
  ASSERT_TRUE(pair->Handshake()) << pair->server().error();
  ASSERT_EQ(pair->ServerWrite("x"), Io::kOk);
  EXPECT_EQ(pair->ClientRead(), "x");  // a NewSessionTicket would have arrived before this
  SSL_SESSION* session = SSL_get0_session(pair->client());
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(SSL_SESSION_is_resumable(session), 0);
}

TEST_F(TlsEngineTest, EngineKeepsItsOwnReferenceToTheCertificates) {
  auto set = CertSet::Load({db_cert_});
  ASSERT_TRUE(set.ok()) << set.message();
  auto engine = TlsEngine::NewServer(*set, {});
  ASSERT_TRUE(engine.ok());
  set = base::Status::Internal("dropped");  // the caller's reference is gone
  ClientPair pair(std::move(*engine), Client("db.example.com", {"postgresql"}));
  ASSERT_TRUE(pair.Handshake()) << pair.server().error();
  EXPECT_EQ(PeerCommonName(pair.client()), "db.example.com");
}

}  // namespace
}  // namespace drawbridge::tls
