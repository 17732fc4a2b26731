// The node channel: the datagram codec and replay cache on their own, then real channels on
// loopback UDP sockets the test binds (port 0), with datagrams the test crafts.
#include "fleet/peer_channel.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

namespace drawbridge::fleet {
namespace {

using namespace std::chrono_literals;

PeerKey Key(uint8_t fill) {
  PeerKey k{};
  k.fill(fill);
  return k;
}

Nonce NonceOf(uint8_t fill) {
  Nonce n{};
  n.fill(fill);
  return n;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const pg::CancelKey kCancel{0x01234567, pg::Bytes{1, 2, 3, 4}};

template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

TEST(PeerDatagramTest, RoundTrip) {
  for (size_t len : {size_t{1}, size_t{4}, size_t{32}, size_t{256}}) {
    pg::CancelKey key{0x7ABCDEF0, pg::Bytes(len, 0x5A)};
    std::vector<std::string> apps = {"mydb", std::string(255, 'a'), "x"};
    auto d = BuildPeerDatagram(Key(1), 7, 1234567890123, NonceOf(9), key, apps);
    ASSERT_TRUE(d.ok()) << d.message();
    auto opened = OpenPeerDatagram(Key(1), *d);
    ASSERT_TRUE(std::holds_alternative<OpenedDatagram>(opened));
    const auto& o = std::get<OpenedDatagram>(opened);
    EXPECT_EQ(o.cancel.from_node, 7);
    EXPECT_EQ(o.cancel.key, key);
    EXPECT_EQ(o.cancel.apps, apps);
    EXPECT_EQ(o.unix_ms, 1234567890123);
    EXPECT_EQ(o.nonce, NonceOf(9));
  }
}

TEST(PeerDatagramTest, EveryChangedBitIsABadMac) {
  auto d = BuildPeerDatagram(Key(1), 2, NowMs(), NonceOf(1), kCancel, {"mydb"});
  ASSERT_TRUE(d.ok());
  for (size_t i = 0; i < d->size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      base::Bytes changed = *d;
      changed[i] ^= static_cast<uint8_t>(1 << bit);
      auto opened = OpenPeerDatagram(Key(1), changed);
      ASSERT_TRUE(std::holds_alternative<PeerRefusal>(opened)) << i << " " << bit;
      EXPECT_EQ(std::get<PeerRefusal>(opened), PeerRefusal::kBadMac) << i << " " << bit;
    }
  }
}

TEST(PeerDatagramTest, AnotherFleetsKeyIsABadMac) {
  auto d = BuildPeerDatagram(Key(2), 2, NowMs(), NonceOf(1), kCancel, {"mydb"});
  ASSERT_TRUE(d.ok());
  auto opened = OpenPeerDatagram(Key(1), *d);
  ASSERT_TRUE(std::holds_alternative<PeerRefusal>(opened));
  EXPECT_EQ(std::get<PeerRefusal>(opened), PeerRefusal::kBadMac);
}

// A datagram with a correct MAC over `body`, as a buggy (or other-version) node would send.
base::Bytes Signed(const PeerKey& key, base::Bytes body) {
  uint8_t mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), body.data(), body.size(), mac,
       &len);
  body.insert(body.end(), mac, mac + 32);
  return body;
}

TEST(PeerDatagramTest, BadLayoutsAreMalformed) {
  auto good = BuildPeerDatagram(Key(1), 2, NowMs(), NonceOf(1), kCancel, {"mydb"});
  ASSERT_TRUE(good.ok());
  base::Bytes body(good->begin(), good->end() - 32);
  auto refused = [&](const base::Bytes& datagram) {
    auto opened = OpenPeerDatagram(Key(1), datagram);
    return std::holds_alternative<PeerRefusal>(opened) ? std::get<PeerRefusal>(opened)
                                                       : PeerRefusal::kCount;
  };
  EXPECT_EQ(refused(Signed(Key(1), body)), PeerRefusal::kCount) << "the control case opens";
  base::Bytes v2 = body;
  v2[0] = 2;
  EXPECT_EQ(refused(Signed(Key(1), v2)), PeerRefusal::kMalformed);
  base::Bytes node0 = body;
  node0[1] = 0;
  EXPECT_EQ(refused(Signed(Key(1), node0)), PeerRefusal::kMalformed);
  base::Bytes trailing = body;
  trailing.push_back(0);
  EXPECT_EQ(refused(Signed(Key(1), trailing)), PeerRefusal::kMalformed);
  base::Bytes cut = body;
  cut.pop_back();
  EXPECT_EQ(refused(Signed(Key(1), cut)), PeerRefusal::kMalformed);
  base::Bytes long_secret = body;
  long_secret[30] = 0x01;  // secret length 257 + ...
  long_secret[31] = 0x01;
  EXPECT_EQ(refused(Signed(Key(1), long_secret)), PeerRefusal::kMalformed);
  // Too short or too long for any datagram: refused before the MAC is even computed.
  EXPECT_EQ(refused(base::Bytes(10, 0)), PeerRefusal::kMalformed);
  EXPECT_EQ(refused(Signed(Key(1), base::Bytes(kMaxDatagram, 0))), PeerRefusal::kMalformed);
}

TEST(PeerDatagramTest, BuildRefusesWhatItCannotCarry) {
  EXPECT_FALSE(BuildPeerDatagram(Key(1), 2, 0, NonceOf(1), kCancel, {}).ok());
  EXPECT_FALSE(BuildPeerDatagram(Key(1), 2, 0, NonceOf(1), kCancel, {""}).ok());
  EXPECT_FALSE(BuildPeerDatagram(Key(1), 2, 0, NonceOf(1), kCancel, {std::string(256, 'a')}).ok());
  EXPECT_FALSE(BuildPeerDatagram(Key(1), 2, 0, NonceOf(1), pg::CancelKey{1, {}}, {"a"}).ok());
  std::vector<std::string> many(600, std::string(63, 'a'));
  auto too_big = BuildPeerDatagram(Key(1), 2, 0, NonceOf(1), kCancel, many);
  EXPECT_FALSE(too_big.ok());
  EXPECT_NE(too_big.message().find("too many apps"), std::string::npos) << too_big.message();
  std::vector<std::string> fits(400, std::string(63, 'a'));
  EXPECT_TRUE(BuildPeerDatagram(Key(1), 2, 0, NonceOf(1), kCancel, fits).ok());
}

TEST(ReplayCacheTest, RemembersNoncesForTheRetentionThenForgets) {
  ReplayCache cache(10, 61s);
  auto t0 = std::chrono::steady_clock::now();
  using V = ReplayCache::Verdict;
  EXPECT_EQ(cache.Check(NonceOf(1), t0), V::kFresh);
  EXPECT_EQ(cache.Check(NonceOf(1), t0 + 1s), V::kReplayed);
  EXPECT_EQ(cache.Check(NonceOf(2), t0 + 2s), V::kFresh);
  EXPECT_EQ(cache.Check(NonceOf(1), t0 + 60s), V::kReplayed);
  EXPECT_EQ(cache.Check(NonceOf(1), t0 + 61s), V::kFresh);  // forgotten, then seen anew
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Check(NonceOf(2), t0 + 64s), V::kFresh);
}

TEST(ReplayCacheTest, WhenFullNewNoncesAreRefusedNotOldOnesForgotten) {
  ReplayCache cache(3, 61s);
  auto t0 = std::chrono::steady_clock::now();
  using V = ReplayCache::Verdict;
  for (uint8_t i = 1; i <= 3; ++i) EXPECT_EQ(cache.Check(NonceOf(i), t0), V::kFresh);
  EXPECT_EQ(cache.Check(NonceOf(4), t0 + 1s), V::kFull);
  EXPECT_EQ(cache.Check(NonceOf(1), t0 + 1s), V::kReplayed);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.Check(NonceOf(4), t0 + 61s), V::kFresh);  // the old ones expired
  EXPECT_EQ(cache.size(), 1u);
}

// A channel and what its handlers saw.
struct Receiver {
  std::unique_ptr<PeerChannel> channel;
  std::mutex mu;
  std::vector<PeerCancel> cancels;
  std::vector<PeerRefusal> refusals;

  explicit Receiver(const PeerKey& key, int node = 2, size_t replay_capacity = 16384) {
    auto c = PeerChannel::Open("127.0.0.1:0", node, key, replay_capacity);
    if (!c.ok()) std::abort();
    channel = std::move(*c);
    channel->Start({[this](PeerCancel c) {
                      std::lock_guard lock(mu);
                      cancels.push_back(std::move(c));
                    },
                    [this](PeerRefusal r, const std::string&) {
                      std::lock_guard lock(mu);
                      refusals.push_back(r);
                    }});
  }
  size_t Seen() {
    std::lock_guard lock(mu);
    return cancels.size() + refusals.size();
  }
  std::vector<PeerRefusal> Refusals() {
    std::lock_guard lock(mu);
    return refusals;
  }
  std::vector<PeerCancel> Cancels() {
    std::lock_guard lock(mu);
    return cancels;
  }
};

// Sends raw bytes to a channel's address from a socket of the test.
void SendRaw(const std::string& to, const base::Bytes& datagram) {
  size_t colon = to.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(to.substr(colon + 1))));
  inet_pton(AF_INET, to.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(sendto(fd, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&sa),
                   sizeof sa),
            static_cast<ssize_t>(datagram.size()));
  close(fd);
}

TEST(PeerChannelTest, ACancelReachesTheOtherNode) {
  Receiver b(Key(1), 2);
  auto a = PeerChannel::Open("127.0.0.1:0", 1, Key(1));
  ASSERT_TRUE(a.ok()) << a.message();
  EXPECT_EQ((*a)->address().rfind("127.0.0.1:", 0), 0u) << (*a)->address();
  EXPECT_NE((*a)->address(), "127.0.0.1:0");
  pg::CancelKey key{0x01000042, pg::Bytes(32, 7)};
  ASSERT_TRUE((*a)->Send(b.channel->address(), key, {"mydb", "other"}).ok());
  ASSERT_TRUE(Eventually([&] { return b.Seen() == 1; }));
  auto got = b.Cancels();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].from_node, 1);
  EXPECT_EQ(got[0].key, key);
  EXPECT_EQ(got[0].apps, (std::vector<std::string>{"mydb", "other"}));
}

TEST(PeerChannelTest, SendToANodeTheDirectoryDoesNotKnowSendsNothing) {
  Receiver b(Key(1), 2);
  auto a = PeerChannel::Open("127.0.0.1:0", 1, Key(1));
  ASSERT_TRUE(a.ok());
  auto directory = [&](int node) -> std::optional<std::string> {
    if (node == 2) return b.channel->address();
    if (node == 4) return std::string();  // known, but published no address
    return std::nullopt;
  };
  base::Status s = (*a)->SendTo(3, directory, kCancel, {"mydb"});
  EXPECT_EQ(s.code(), base::StatusCode::kNotFound) << s.message();
  EXPECT_EQ((*a)->SendTo(4, directory, kCancel, {"mydb"}).code(), base::StatusCode::kUnavailable);
  // The control case, through the same directory: only this one arrives.
  ASSERT_TRUE((*a)->SendTo(2, directory, kCancel, {"mydb"}).ok());
  ASSERT_TRUE(Eventually([&] { return b.Seen() >= 1; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(b.Seen(), 1u);
  EXPECT_EQ(b.Cancels().size(), 1u);
}

TEST(PeerChannelTest, DatagramsWithABadMacAnOldTimestampOrAReplayedNonceAreRefused) {
  Receiver b(Key(1), 2);
  const std::string to = b.channel->address();
  auto fresh = BuildPeerDatagram(Key(1), 1, NowMs(), NonceOf(1), kCancel, {"mydb"});
  ASSERT_TRUE(fresh.ok());
  SendRaw(to, *fresh);
  SendRaw(to, *fresh);  // the same nonce again: a replay
  auto other_fleet = BuildPeerDatagram(Key(2), 1, NowMs(), NonceOf(2), kCancel, {"mydb"});
  SendRaw(to, *other_fleet);
  auto old = BuildPeerDatagram(Key(1), 1, NowMs() - 31000, NonceOf(3), kCancel, {"mydb"});
  SendRaw(to, *old);
  auto future = BuildPeerDatagram(Key(1), 1, NowMs() + 31000, NonceOf(4), kCancel, {"mydb"});
  SendRaw(to, *future);
  SendRaw(to, base::Bytes(kMaxDatagram + 100, 0xAB));  // longer than any datagram
  SendRaw(to, base::Bytes(3, 0));
  ASSERT_TRUE(Eventually([&] { return b.Seen() == 7; })) << b.Seen();
  EXPECT_EQ(b.Cancels().size(), 1u);
  EXPECT_EQ(b.Refusals(),
            (std::vector<PeerRefusal>{PeerRefusal::kReplayed, PeerRefusal::kBadMac,
                                      PeerRefusal::kStale, PeerRefusal::kStale,
                                      PeerRefusal::kMalformed, PeerRefusal::kMalformed}));
  // Within the window either side: accepted.
  auto skewed = BuildPeerDatagram(Key(1), 1, NowMs() - 25000, NonceOf(5), kCancel, {"mydb"});
  SendRaw(to, *skewed);
  ASSERT_TRUE(Eventually([&] { return b.Seen() == 8; }));
  EXPECT_EQ(b.Cancels().size(), 2u);
}

TEST(PeerChannelTest, AFullReplayCacheRefusesRatherThanForgets) {
  Receiver b(Key(1), 2, /*replay_capacity=*/2);
  const std::string to = b.channel->address();
  for (uint8_t i = 1; i <= 3; ++i) {
    auto d = BuildPeerDatagram(Key(1), 1, NowMs(), NonceOf(i), kCancel, {"mydb"});
    SendRaw(to, *d);
  }
  ASSERT_TRUE(Eventually([&] { return b.Seen() == 3; }));
  EXPECT_EQ(b.Cancels().size(), 2u);
  EXPECT_EQ(b.Refusals(), std::vector<PeerRefusal>{PeerRefusal::kReplayCacheFull});
}

TEST(PeerChannelTest, OpenRefusesAddressesPeersCannotUse) {
  for (const char* bad : {"0.0.0.0:0", "[::]:7000", "localhost:7000", "127.0.0.1", "127.0.0.1:x",
                          "127.0.0.1:70000", "[::1:7000"}) {
    auto c = PeerChannel::Open(bad, 1, Key(1));
    EXPECT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.code(), base::StatusCode::kInvalidArgument) << bad << ": " << c.message();
  }
}

TEST(PeerChannelTest, StopIsPromptAndIdempotent) {
  Receiver b(Key(1), 2);
  auto t0 = std::chrono::steady_clock::now();
  b.channel->Stop();
  b.channel->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  // Stopped: nothing is received any more.
  auto d = BuildPeerDatagram(Key(1), 1, NowMs(), NonceOf(1), kCancel, {"mydb"});
  SendRaw(b.channel->address(), *d);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(b.Seen(), 0u);
}

}  // namespace
}  // namespace drawbridge::fleet
