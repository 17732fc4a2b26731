#include "pg/backend_watcher.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "test_util.h"

namespace drawbridge::pg {
namespace {

using testutil::Cat;
using testutil::Hex;
using testutil::Str;

Bytes Message(char type, const Bytes& body) {
  Bytes out{static_cast<uint8_t>(type), 0, 0, 0, 0};
  base::StoreU32(out.data() + 1, static_cast<uint32_t>(4 + body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes ParameterStatus(std::string_view name, std::string_view value) {
  return Message('S', Cat({Str(name), Hex("00"), Str(value), Hex("00")}));
}

const Bytes kAuthOk = Message('R', Hex("00 00 00 00"));
const Bytes kReadyForQuery = Message('Z', Str("I"));
const CancelKey kServerKey{4242, Hex("01 02 03 04")};
const CancelKey kEdgeKey{0x1234567, Hex("a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af b0")};

// What PostgreSQL 15 sends after a successful login.
Bytes ServerStartup(const CancelKey& key) {
  return Cat({kAuthOk, ParameterStatus("application_name", ""),
              ParameterStatus("client_encoding", "UTF8"),
              ParameterStatus("server_version", "15.4 (Debian 15.4-1.pgdg120+1)"),
              ParameterStatus("TimeZone", "Etc/UTC"), BuildBackendKeyData(key), kReadyForQuery});
}

// Records every server key the watcher asks about, and answers with kEdgeKey.
struct FakeRewriter {
  std::vector<CancelKey> seen;
  BackendWatcher::KeyRewriter Fn() {
    return [this](const CancelKey& k) {
      seen.push_back(k);
      return kEdgeKey;
    };
  }
};

TEST(BackendWatcherTest, RewritesBackendKeyDataAndCapturesServerVersion) {
  FakeRewriter rewriter;
  BackendWatcher w(rewriter.Fn());
  Bytes out;
  ASSERT_TRUE(w.Feed(ServerStartup(kServerKey), &out).ok());
  EXPECT_EQ(testutil::ToHex(out), testutil::ToHex(ServerStartup(kEdgeKey)));
  ASSERT_EQ(rewriter.seen.size(), 1u);
  EXPECT_EQ(rewriter.seen[0], kServerKey);
  EXPECT_TRUE(w.saw_key());
  EXPECT_TRUE(w.done());
  EXPECT_EQ(w.server_version(), "15.4 (Debian 15.4-1.pgdg120+1)");
  EXPECT_FALSE(w.error());
}

// Every parser is tested byte by byte: the output must not depend on how the input is split.
TEST(BackendWatcherTest, SameOutputWhateverTheSplit) {
  Bytes in = Cat({ServerStartup(kServerKey), Message('T', Hex("00 00")), kReadyForQuery});
  Bytes want = Cat({ServerStartup(kEdgeKey), Message('T', Hex("00 00")), kReadyForQuery});
  for (size_t split = 0; split <= in.size(); ++split) {
    FakeRewriter rewriter;
    BackendWatcher w(rewriter.Fn());
    Bytes out;
    ASSERT_TRUE(w.Feed(ByteSpan(in).first(split), &out).ok()) << split;
    ASSERT_TRUE(w.Feed(ByteSpan(in).subspan(split), &out).ok()) << split;
    EXPECT_EQ(out, want) << "split at " << split;
    EXPECT_EQ(rewriter.seen.size(), 1u) << split;
    EXPECT_EQ(w.server_version(), "15.4 (Debian 15.4-1.pgdg120+1)") << split;
  }
}

TEST(BackendWatcherTest, OneByteAtATime) {
  Bytes in = ServerStartup(kServerKey);
  FakeRewriter rewriter;
  BackendWatcher w(rewriter.Fn());
  Bytes out;
  for (uint8_t b : in) ASSERT_TRUE(w.Feed(ByteSpan(&b, 1), &out).ok());
  EXPECT_EQ(out, ServerStartup(kEdgeKey));
  EXPECT_TRUE(w.done());
}

TEST(BackendWatcherTest, HoldsBackOnlyAnIncompleteWatchedMessage) {
  FakeRewriter rewriter;
  BackendWatcher w(rewriter.Fn());
  Bytes key = BuildBackendKeyData(kServerKey);
  Bytes out;
  ASSERT_TRUE(w.Feed(Cat({kAuthOk, ByteSpan(key).first(7)}), &out).ok());
  EXPECT_EQ(out, kAuthOk) << "the partial 'K' is held, the complete 'R' is not";
  ASSERT_TRUE(w.Feed(ByteSpan(key).subspan(7), &out).ok());
  EXPECT_EQ(out, Cat({kAuthOk, BuildBackendKeyData(kEdgeKey)}));
  EXPECT_FALSE(w.done());
}

TEST(BackendWatcherTest, BytesAfterReadyForQueryPassUnchanged) {
  FakeRewriter rewriter;
  BackendWatcher w(rewriter.Fn());
  // After 'Z', even a 'K' or a bad length is the client's business, not the watcher's.
  Bytes after = Cat({BuildBackendKeyData(kServerKey), Hex("53 00 00 00 01 ff ff")});
  Bytes out;
  ASSERT_TRUE(w.Feed(Cat({kAuthOk, kReadyForQuery, after}), &out).ok());
  EXPECT_TRUE(w.done());
  EXPECT_EQ(out, Cat({kAuthOk, kReadyForQuery, after}));
  EXPECT_TRUE(rewriter.seen.empty());
  Bytes more = Str("anything at all");
  ASSERT_TRUE(w.Feed(more, &out).ok());
  EXPECT_EQ(out, Cat({kAuthOk, kReadyForQuery, after, more}));
}

TEST(BackendWatcherTest, RewrittenKeyMayChangeLength) {
  CancelKey long_server{99, Bytes(32, 0x33)};
  BackendWatcher w([](const CancelKey&) { return CancelKey{7, Hex("0a0b0c0d")}; });
  Bytes out;
  ASSERT_TRUE(w.Feed(Cat({BuildBackendKeyData(long_server), kReadyForQuery}), &out).ok());
  EXPECT_EQ(out, Cat({Hex("4b 00 00 00 0c 00 00 00 07 0a 0b 0c 0d"), kReadyForQuery}));
}

TEST(BackendWatcherTest, CapturesTheFirstErrorResponse) {
  BackendWatcher w([](const CancelKey& k) { return k; });
  Bytes first = BuildFatal("28P01", "password authentication failed for user \"alice\"");
  Bytes second = BuildFatal("53300", "sorry, too many clients already");
  Bytes out;
  ASSERT_TRUE(w.Feed(Cat({first, second}), &out).ok());
  EXPECT_EQ(out, Cat({first, second}));
  ASSERT_TRUE(w.error());
  EXPECT_EQ(w.error()->sqlstate, "28P01");
  EXPECT_EQ(w.error()->severity, "FATAL");
  EXPECT_FALSE(w.saw_key());
  EXPECT_FALSE(w.done());
}

TEST(BackendWatcherTest, NoBackendKeyDataIsFine) {
  // RDS Proxy sends no 'K' (pgdog PR #918).
  FakeRewriter rewriter;
  BackendWatcher w(rewriter.Fn());
  Bytes in = Cat({kAuthOk, ParameterStatus("server_version", "16.1"), kReadyForQuery});
  Bytes out;
  ASSERT_TRUE(w.Feed(in, &out).ok());
  EXPECT_EQ(out, in);
  EXPECT_FALSE(w.saw_key());
  EXPECT_TRUE(rewriter.seen.empty());
  EXPECT_EQ(w.server_version(), "16.1");
}

// A large message of a type the watcher does not read streams through: the output grows with
// the input, and nothing is buffered beyond a header.
TEST(BackendWatcherTest, LargeUnwatchedMessageIsNotBuffered) {
  for (char type : {'N', 'S'}) {  // 'S' too: a watched type above kMaxWatched streams as well
    SCOPED_TRACE(type);
    BackendWatcher w([](const CancelKey& k) { return k; });
    Bytes body(1 << 20, 'x');
    body.back() = 0;
    Bytes big = Message(type, body);
    Bytes out;
    size_t fed = 0;
    constexpr size_t kChunk = 4096;
    while (fed < big.size()) {
      size_t n = std::min(kChunk, big.size() - fed);
      ASSERT_TRUE(w.Feed(ByteSpan(big).subspan(fed, n), &out).ok());
      fed += n;
      ASSERT_EQ(out.size(), fed) << "output must keep up with input";
    }
    EXPECT_EQ(out, big);
    ASSERT_TRUE(w.Feed(kReadyForQuery, &out).ok());
    EXPECT_TRUE(w.done());
  }
}

TEST(BackendWatcherTest, LengthBelowFourIsAnError) {
  for (uint8_t len : {0, 1, 2, 3}) {
    SCOPED_TRACE(static_cast<int>(len));
    for (char type : {'R', 'K', 'Z'}) {
      BackendWatcher w([](const CancelKey& k) { return k; });
      Bytes out;
      Bytes msg = {static_cast<uint8_t>(type), 0, 0, 0, len};
      // A protocol violation: kInvalidArgument, SQLSTATE 08P01 through pg/sqlstate.h.
      EXPECT_EQ(w.Feed(msg, &out).code(), base::StatusCode::kInvalidArgument) << type;
    }
  }
}

TEST(BackendWatcherTest, EmptyMessagesAreFine) {
  // Length exactly 4, watched and unwatched types.
  BackendWatcher w([](const CancelKey& k) { return k; });
  Bytes in = Cat({Message('N', {}), Message('S', {}), Message('E', {}), kReadyForQuery});
  Bytes out;
  ASSERT_TRUE(w.Feed(in, &out).ok());
  EXPECT_EQ(out, in);
  EXPECT_TRUE(w.done());
}

TEST(BackendWatcherTest, MalformedBackendKeyDataIsAnError) {
  for (size_t key_len : {size_t{0}, size_t{257}}) {
    SCOPED_TRACE(key_len);
    BackendWatcher w([](const CancelKey& k) { return k; });
    Bytes out;
    Bytes body = Cat({Hex("00 00 00 01"), Bytes(key_len, 9)});
    EXPECT_EQ(w.Feed(Message('K', body), &out).code(), base::StatusCode::kInvalidArgument);
  }
  BackendWatcher w([](const CancelKey& k) { return k; });
  Bytes out;
  EXPECT_EQ(w.Feed(Message('K', Hex("00 00 01")), &out).code(), base::StatusCode::kInvalidArgument)
      << "shorter than a pid";
}

// PostgreSQL 14+ reports in_hot_standby at login: the edge learns the machine's role from it
// and may stop the login right after it (the offset says where, whatever the split).
TEST(BackendWatcherTest, ReportsInHotStandbyAndWhereItEnded) {
  for (std::string_view value : {"on", "off"}) {
    SCOPED_TRACE(value);
    Bytes head = Cat({kAuthOk, ParameterStatus("server_version", "16.1"),
                      ParameterStatus("in_hot_standby", value)});
    Bytes in = Cat({head, ParameterStatus("TimeZone", "UTC"), BuildBackendKeyData(kServerKey),
                    kReadyForQuery});
    for (size_t split = 0; split <= in.size(); ++split) {
      BackendWatcher w([](const CancelKey& k) { return k; });
      Bytes out;
      ASSERT_TRUE(w.Feed(ByteSpan(in).first(split), &out).ok());
      std::optional<size_t> end = w.in_hot_standby_end();
      size_t first_len = out.size();
      ASSERT_TRUE(w.Feed(ByteSpan(in).subspan(split), &out).ok());
      if (!end) {
        ASSERT_TRUE(w.in_hot_standby_end()) << split;
        end = first_len + *w.in_hot_standby_end();
      } else {
        EXPECT_FALSE(w.in_hot_standby_end()) << "reset by the next Feed()";
      }
      EXPECT_EQ(*end, head.size()) << split;
      ASSERT_TRUE(w.in_hot_standby()) << split;
      EXPECT_EQ(*w.in_hot_standby(), value == "on");
      EXPECT_EQ(out, in);
    }
  }
}

TEST(BackendWatcherTest, NoInHotStandbyFromAnOlderServer) {
  BackendWatcher w([](const CancelKey& k) { return k; });
  Bytes out;
  ASSERT_TRUE(w.Feed(ServerStartup(kServerKey), &out).ok());
  EXPECT_TRUE(w.done());
  EXPECT_FALSE(w.in_hot_standby());
  EXPECT_FALSE(w.in_hot_standby_end());
  // A value that is neither on nor off says nothing.
  BackendWatcher odd([](const CancelKey& k) { return k; });
  ASSERT_TRUE(odd.Feed(ParameterStatus("in_hot_standby", "maybe"), &out).ok());
  EXPECT_FALSE(odd.in_hot_standby());
}

TEST(BackendWatcherTest, EmptyFeedIsANoOp) {
  BackendWatcher w([](const CancelKey& k) { return k; });
  Bytes out;
  EXPECT_TRUE(w.Feed({}, &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(w.done());
}

}  // namespace
}  // namespace drawbridge::pg
