// The etcd store against a real etcd (/usr/bin/etcd, members on loopback with free ports and temp
// data dirs, stopped by PID): the Store contract run against SQLite and etcd alike, two stores
// ("nodes") on one etcd, etcd going away and coming back, a restart with etcd down, compaction
// while a node was cut off, TLS with client certificates, user/password auth, and a 3-member
// cluster losing one member. Every wait is bounded.
#include "store/etcd_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "store/etcd_client.h"
#include "store/store.h"

namespace drawbridge::store {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string TempDir(const std::string& what) {
  static std::atomic<int> n{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("drawbridge-etcd-test-" + std::to_string(::getpid()) + "-" + what + "-" +
              std::to_string(n++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return 0;
  }
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// Runs a program to completion (bounded by /usr/bin/timeout); its exit status.
int RunProgram(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<std::string> full{"/usr/bin/timeout", "20"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

template <typename F>
bool Eventually(F f, std::chrono::milliseconds limit = 5000ms) {
  auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

// TLS material for etcd and its clients, made with openssl.
struct TlsFiles {
  std::string ca, server_cert, server_key, client_cert, client_key;
};

// One etcd member (or a whole single-member cluster).
class EtcdMember {
 public:
  EtcdMember(std::string name, std::string dir) : name_(std::move(name)), dir_(std::move(dir)) {
    client_port_ = FreePort();
    peer_port_ = FreePort();
  }
  ~EtcdMember() { Kill(); }

  std::string scheme() const { return tls_ ? "https" : "http"; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }
  std::string peer_url() const { return "http://127.0.0.1:" + std::to_string(peer_port_); }
  std::string name() const { return name_; }
  void set_tls(const TlsFiles* tls) { tls_ = tls; }

  void Start(const std::string& initial_cluster, bool fresh) {
    ASSERT_EQ(pid_, -1);
    std::string client_url = scheme() + "://" + endpoint();
    std::vector<std::string> args{
        "/usr/bin/etcd",
        "--name",
        name_,
        "--data-dir",
        dir_ + "/data",
        "--listen-client-urls",
        client_url,
        "--advertise-client-urls",
        client_url,
        "--listen-peer-urls",
        peer_url(),
        "--initial-advertise-peer-urls",
        peer_url(),
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        fresh ? "new" : "existing",
        "--initial-cluster-token",
        "drawbridge-test",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--log-level",
        "warn",
    };
    if (tls_) {
      for (const auto& a :
           {std::string("--cert-file"), tls_->server_cert, std::string("--key-file"),
            tls_->server_key, std::string("--trusted-ca-file"), tls_->ca,
            std::string("--client-cert-auth")}) {
        args.push_back(a);
      }
    }
    std::string log = dir_ + "/etcd.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      // A test killed midway takes its etcd with it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ASSERT_GT(pid_, 0);
  }

  // Waits until the member answers a quorum read.
  bool WaitReady(std::chrono::milliseconds limit = 15000ms) {
    EtcdClientOptions o;
    o.endpoints = {endpoint()};
    o.request_timeout = 1000ms;
    o.name = "test";
    if (tls_) {
      o.ca_file = tls_->ca;
      o.cert_file = tls_->client_cert;
      o.key_file = tls_->client_key;
    }
    auto client = EtcdClient::Create(o);
    if (!client.ok()) return false;
    return Eventually(
        [&] {
          auto r = (*client)->Call("/v3/kv/range", {{"key", EtcdBase64("probe")}}, true);
          // With auth on, an unauthenticated read is refused: the member answers all the same.
          return r.ok() || r.code() == base::StatusCode::kInvalidArgument;
        },
        limit);
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  bool running() const { return pid_ > 0; }

 private:
  std::string name_, dir_;
  int client_port_ = 0, peer_port_ = 0;
  pid_t pid_ = -1;
  const TlsFiles* tls_ = nullptr;
};

// A single-member etcd in its own temp dir.
class Etcd {
 public:
  explicit Etcd(const TlsFiles* tls = nullptr) : dir_(TempDir("etcd")), member_("m1", dir_) {
    member_.set_tls(tls);
  }
  ~Etcd() {
    member_.Kill();
    std::filesystem::remove_all(dir_);
  }
  bool Start() {
    member_.Start(member_.name() + "=" + member_.peer_url(), !started_once_);
    started_once_ = true;
    return member_.WaitReady();
  }
  void Kill() { member_.Kill(); }
  std::string endpoint() const { return member_.endpoint(); }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  EtcdMember member_;
  bool started_once_ = false;
};

// A loopback TCP proxy in front of etcd: Cut() closes every connection and stops listening, so a
// store behind it is cut off while etcd itself stays up for others; Resume() listens again.
class Proxy {
 public:
  explicit Proxy(int target) : target_(target), port_(FreePort()) { Resume(); }
  ~Proxy() { Cut(); }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  void Resume() {
    std::lock_guard lock(mu_);
    if (running_) return;
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = Addr(port_);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 64) != 0) {
      ADD_FAILURE() << "proxy cannot listen on " << port_;
      return;
    }
    running_ = true;
    thread_ = std::thread([this] { Loop(); });
  }

  void Cut() {
    {
      std::lock_guard lock(mu_);
      if (!running_) return;
      running_ = false;
    }
    thread_.join();
  }

 private:
  static sockaddr_in Addr(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    return a;
  }

  // Bounded: each poll() waits 50 ms at most and the loop ends on Cut().
  void Loop() {
    std::vector<std::pair<int, int>> pairs;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (!running_) break;
      }
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (auto [a, b] : pairs) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      ::poll(fds.data(), fds.size(), 50);
      // The pairs polled above first (fds[1 + 2i], fds[2 + 2i]), then a new connection.
      std::vector<std::pair<int, int>> alive;
      for (size_t i = 0; i < pairs.size(); ++i) {
        auto [a, b] = pairs[i];
        bool open = true;
        for (auto [from, to, ev] :
             {std::tuple{a, b, fds[1 + 2 * i].revents}, std::tuple{b, a, fds[2 + 2 * i].revents}}) {
          if (!open || !(ev & (POLLIN | POLLHUP | POLLERR))) continue;
          char buf[65536];
          ssize_t n = ::recv(from, buf, sizeof buf, MSG_DONTWAIT);
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
          if (n <= 0 || ::send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) open = false;
        }
        if (open) {
          alive.emplace_back(a, b);
        } else {
          ::close(a);
          ::close(b);
        }
      }
      if (fds[0].revents & POLLIN) {
        int c = ::accept(listener_, nullptr, nullptr);
        int u = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in t = Addr(target_);
        if (c >= 0 && ::connect(u, reinterpret_cast<sockaddr*>(&t), sizeof t) == 0) {
          alive.emplace_back(c, u);
        } else {
          if (c >= 0) ::close(c);
          ::close(u);
        }
      }
      pairs = std::move(alive);
    }
    for (auto [a, b] : pairs) {
      ::close(a);
      ::close(b);
    }
    ::close(listener_);
  }

  int target_, port_;
  int listener_ = -1;
  std::mutex mu_;
  bool running_ = false;
  std::thread thread_;
};

int PortOf(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

EtcdOptions Options(const std::vector<std::string>& endpoints, const std::string& prefix,
                    const std::string& cache = "") {
  EtcdOptions o;
  o.endpoints = endpoints;
  o.prefix = prefix;
  o.cache_path = cache;
  o.quiet_prefixes = {"nodes/"};
  o.request_timeout = 1000ms;
  return o;
}

std::unique_ptr<Store> MustOpen(EtcdOptions o) {
  auto s = OpenEtcdStore(std::move(o));
  EXPECT_TRUE(s.ok()) << s.message();
  return s.ok() ? std::move(*s) : nullptr;
}

std::optional<std::string> ValueOf(Store* s, const std::string& key) {
  auto kv = s->Get(key);
  if (!kv.ok() || !kv->has_value()) return std::nullopt;
  return (*kv)->value;
}

// ---- ParseEtcdUrl ---------------------------------------------------------------------------

TEST(ParseEtcdUrlTest, AcceptsHostPortListsAndBracketedIpv6) {
  auto r = ParseEtcdUrl("etcd://127.0.0.1:2379,etcd-2.example:2380,[::1]:2381");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(*r, (std::vector<std::string>{"127.0.0.1:2379", "etcd-2.example:2380", "[::1]:2381"}));
}

TEST(ParseEtcdUrlTest, RefusesWhatIsNotAnEndpointListSayingWhy) {
  struct Case {
    const char* url;
    const char* says;
  } cases[] = {
      {"http://127.0.0.1:2379", "not an etcd store URL"},
      {"etcd://", "no endpoint"},
      {"etcd://127.0.0.1", "no port"},
      {"etcd://127.0.0.1:0", "not a number from 1 to 65535"},
      {"etcd://127.0.0.1:99999", "not a number from 1 to 65535"},
      {"etcd://127.0.0.1:x", "not a number"},
      {"etcd://a:1,,b:2", "an empty endpoint"},
      {"etcd://::1:2379", "in brackets"},
      {"etcd://[::1:2379", "no closing ]"},
      {"etcd://[nope]:2379", "not an IPv6 address"},
      {"etcd://[::1]", "no port"},
      {"etcd://h:1/prefix", "only host:port"},
      {"etcd://user@h:1", "only host:port"},
      {"etcd://h:1,h:1", "given twice"},
      {"etcd://bad host:1", "not a host name"},
  };
  for (const auto& c : cases) {
    auto r = ParseEtcdUrl(c.url);
    ASSERT_FALSE(r.ok()) << c.url;
    EXPECT_EQ(r.code(), base::StatusCode::kInvalidArgument) << c.url;
    EXPECT_NE(r.message().find(c.says), std::string::npos) << c.url << " -> " << r.message();
  }
}

// ---- The Store contract, SQLite and etcd alike ------------------------------------------------

// One etcd for the whole contract suite; each test has its own prefix.
Etcd* shared_etcd = nullptr;

class ContractTest : public ::testing::TestWithParam<bool> {
 protected:
  static void SetUpTestSuite() {
    shared_etcd = new Etcd();
    ASSERT_TRUE(shared_etcd->Start()) << "etcd did not start; see " << shared_etcd->dir();
  }
  static void TearDownTestSuite() {
    delete shared_etcd;
    shared_etcd = nullptr;
  }
  void SetUp() override {
    dir_ = TempDir("contract");
    if (GetParam()) {
      static int n = 0;
      store_ = MustOpen(Options({shared_etcd->endpoint()}, "/t" + std::to_string(n++) + "/"));
    } else {
      auto s = OpenSqliteStore(dir_ + "/state.db");
      ASSERT_TRUE(s.ok()) << s.message();
      store_ = std::move(*s);
    }
    ASSERT_NE(store_, nullptr);
    base_ = *store_->Revision();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Store> store_;
  std::string dir_;
  int64_t base_ = 0;
};

TEST_P(ContractTest, PutGetListDelete) {
  auto r = store_->Commit(
      {{},
       {Op::Put("a/1", "x"), Op::Put("a/2", "y"), Op::Put("b/1", "z"), Op::Put("ab", "sibling")}});
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_TRUE(r->succeeded);
  EXPECT_GT(r->revision, base_);
  EXPECT_EQ(*store_->Revision(), r->revision) << "read-your-writes";
  auto kv = store_->Get("a/2");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->value, "y");
  EXPECT_EQ((*kv)->create_revision, r->revision);
  EXPECT_EQ((*kv)->mod_revision, r->revision);
  auto list = store_->List("a/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "a/1");
  EXPECT_EQ((*list)[1].key, "a/2");
  EXPECT_EQ(store_->List("")->size(), 4u);
  auto d = store_->Commit({{}, {Op::DeletePrefix("a/")}});
  ASSERT_TRUE(d.ok() && d->succeeded);
  EXPECT_TRUE(store_->List("a/")->empty());
  EXPECT_EQ(store_->List("b/")->size(), 1u);
  EXPECT_EQ(ValueOf(store_.get(), "ab"), "sibling");
  EXPECT_EQ(*store_->Revision(), d->revision);
  EXPECT_GT(d->revision, r->revision);
  ASSERT_TRUE(store_->Commit({{}, {Op::Delete("b/1")}})->succeeded);
  EXPECT_FALSE(store_->Get("b/1")->has_value());
  // Values are bytes, not text.
  std::string binary("\0\xff\x01zz\n", 6);
  ASSERT_TRUE(store_->Commit({{}, {Op::Put("bin", binary)}})->succeeded);
  EXPECT_EQ(ValueOf(store_.get(), "bin"), binary);
}

TEST_P(ContractTest, CompareAbsentIsCreateOnce) {
  auto first = store_->Commit({{Compare::Absent("ips/1")}, {Op::Put("ips/1", "app-a")}});
  auto second = store_->Commit({{Compare::Absent("ips/1")}, {Op::Put("ips/1", "app-b")}});
  ASSERT_TRUE(first.ok() && second.ok()) << first.message() << second.message();
  EXPECT_TRUE(first->succeeded);
  EXPECT_FALSE(second->succeeded);
  EXPECT_EQ(ValueOf(store_.get(), "ips/1"), "app-a");
  EXPECT_EQ(*store_->Revision(), first->revision) << "a failed transaction writes nothing";
}

TEST_P(ContractTest, CompareModRevision) {
  ASSERT_TRUE(store_->Commit({{}, {Op::Put("k", "v1")}}).ok());
  int64_t rev = (*store_->Get("k"))->mod_revision;
  EXPECT_TRUE(store_->Commit({{Compare::ModRevision("k", rev)}, {Op::Put("k", "v2")}})->succeeded);
  EXPECT_FALSE(store_->Commit({{Compare::ModRevision("k", rev)}, {Op::Put("k", "v3")}})->succeeded);
  EXPECT_EQ(ValueOf(store_.get(), "k"), "v2");
  EXPECT_EQ((*store_->Get("k"))->create_revision, rev);
  // A comparison on an absent key's mod revision fails; the empty transaction succeeds.
  EXPECT_FALSE(
      store_->Commit({{Compare::ModRevision("none", rev)}, {Op::Put("x", "1")}})->succeeded);
  auto empty = store_->Commit({{Compare::ModRevision("k", rev + 1)}, {}});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->succeeded);
  EXPECT_FALSE(store_->Get("x")->has_value());
}

TEST_P(ContractTest, WatchersHearEveryCommit) {
  std::mutex mu;
  std::vector<int64_t> seen;
  store_->Watch([&](int64_t rev) {
    std::lock_guard lock(mu);
    seen.push_back(rev);
  });
  auto a = store_->Commit({{}, {Op::Put("a", "1")}});
  EXPECT_FALSE(store_->Commit({{Compare::Absent("a")}, {Op::Put("a", "2")}})->succeeded);
  auto b = store_->Commit({{}, {Op::Delete("a")}});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(Eventually(
      [&] {
        std::lock_guard lock(mu);
        return seen.size() >= 2;
      },
      2000ms));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<int64_t>{a->revision, b->revision}));
}

TEST_P(ContractTest, ConcurrentCreatesNeverCollide) {
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 25; ++k) {
        std::string key = "k/" + std::to_string(k);
        auto r = store_->Commit({{Compare::Absent(key)}, {Op::Put(key, std::to_string(t))}});
        if (r.ok() && r->succeeded) wins++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wins.load(), 25);
  EXPECT_EQ(store_->List("k/")->size(), 25u);
}

INSTANTIATE_TEST_SUITE_P(Impl, ContractTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Etcd" : "Sqlite"; });

// ---- Two nodes on one etcd ------------------------------------------------------------------

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_ = std::make_unique<Etcd>();
    ASSERT_TRUE(etcd_->Start()) << "etcd did not start; see " << etcd_->dir();
    dir_ = TempDir("node");
  }
  void TearDown() override {
    etcd_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Etcd> etcd_;
  std::string dir_;
};

TEST_F(EtcdStoreTest, TwoNodesCompareAndSetAgainstEachOtherAndSeeEachOthersWrites) {
  auto a = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/", dir_ + "/a.json"));
  auto b = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/", dir_ + "/b.json"));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->Describe(), "etcd://" + etcd_->endpoint());
  EXPECT_EQ(a->Endpoints(), std::vector<std::string>{etcd_->endpoint()});
  std::atomic<int64_t> heard{0};
  b->Watch([&](int64_t rev) { heard = rev; });
  auto start = Clock::now();
  auto w = a->Commit({{}, {Op::Put("apps/x", "1")}});
  ASSERT_TRUE(w.ok() && w->succeeded) << w.message();
  ASSERT_TRUE(Eventually([&] { return heard.load() >= w->revision; }, 1000ms))
      << "b's watcher did not hear a's write within 1 s";
  EXPECT_LT(Clock::now() - start, 1000ms);
  EXPECT_EQ(ValueOf(b.get(), "apps/x"), "1");
  // Both read the same mod revision; the first to commit wins, the second is told so and, once
  // the call returns, reads the winner's value (so a retry loop makes progress).
  int64_t rev = (*b->Get("apps/x"))->mod_revision;
  auto won = a->Commit({{Compare::ModRevision("apps/x", rev)}, {Op::Put("apps/x", "a")}});
  auto lost = b->Commit({{Compare::ModRevision("apps/x", rev)}, {Op::Put("apps/x", "b")}});
  ASSERT_TRUE(won.ok() && lost.ok());
  EXPECT_TRUE(won->succeeded);
  EXPECT_FALSE(lost->succeeded);
  EXPECT_EQ(ValueOf(b.get(), "apps/x"), "a") << "a failed compare returns after catching up";
  // Creates race from both nodes: every key created once.
  std::atomic<int> wins{0};
  auto race = [&](Store* s) {
    for (int k = 0; k < 40; ++k) {
      std::string key = "ips/" + std::to_string(k);
      auto r = s->Commit({{Compare::Absent(key)}, {Op::Put(key, "x")}});
      if (r.ok() && r->succeeded) wins++;
    }
  };
  std::thread ta(race, a.get()), tb(race, b.get());
  ta.join();
  tb.join();
  EXPECT_EQ(wins.load(), 40);
  // Quiet prefixes: the heartbeat does not wake watchers, but it is applied.
  ASSERT_TRUE(Eventually([&] { return heard.load() >= *a->Revision(); }, 1000ms));
  int64_t before = heard;
  auto q = a->Commit({{}, {Op::Put("nodes/a", "alive")}});
  ASSERT_TRUE(q.ok() && q->succeeded);
  ASSERT_TRUE(Eventually([&] { return ValueOf(b.get(), "nodes/a").has_value(); }, 1000ms));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(heard.load(), before);
  EXPECT_EQ(b->Health().applied_revision, q->revision);
  EXPECT_TRUE(b->Health().healthy) << b->Health().error;
}

TEST_F(EtcdStoreTest, EtcdDownWritesFailAtOnceReadsServeAndItCatchesUp) {
  std::string cache = dir_ + "/a.json";
  auto a = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/", cache));
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Commit({{}, {Op::Put("apps/x", "1")}})->succeeded);
  struct stat st {};
  ASSERT_EQ(::stat(cache.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  etcd_->Kill();
  auto start = Clock::now();
  auto w = a->Commit({{}, {Op::Put("apps/y", "2")}});
  EXPECT_LT(Clock::now() - start, 500ms) << "a refused connection fails at once";
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.code(), base::StatusCode::kUnavailable);
  EXPECT_NE(w.message().find("etcd://" + etcd_->endpoint() + ": unreachable"), std::string::npos)
      << w.message();
  EXPECT_NE(w.message().find("nothing was written"), std::string::npos) << w.message();
  EXPECT_EQ(ValueOf(a.get(), "apps/x"), "1");
  ASSERT_TRUE(Eventually([&] { return !a->Health().healthy; }, 2000ms));
  EXPECT_FALSE(a->Health().error.empty());
  ASSERT_TRUE(etcd_->Start());
  // Another node writes; a catches up (backoff at most 1 s).
  auto b = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/"));
  ASSERT_TRUE(b);
  auto late = b->Commit({{}, {Op::Put("apps/z", "3")}});
  ASSERT_TRUE(late.ok() && late->succeeded);
  ASSERT_TRUE(Eventually([&] { return ValueOf(a.get(), "apps/z") == "3"; }, 3000ms));
  EXPECT_TRUE(Eventually([&] { return a->Health().healthy; }, 2000ms)) << a->Health().error;
  EXPECT_TRUE(a->Commit({{}, {Op::Put("apps/y", "2")}})->succeeded);
}

TEST_F(EtcdStoreTest, ReopenedWithEtcdDownServesItsLocalCopyAndWithoutOneRefuses) {
  std::string cache = dir_ + "/a.json";
  {
    auto a = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/", cache));
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->Commit({{}, {Op::Put("apps/x", "1"), Op::Put("certs/x", "pem")}})->succeeded);
  }
  etcd_->Kill();
  auto a = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/", cache));
  ASSERT_TRUE(a);
  EXPECT_EQ(ValueOf(a.get(), "apps/x"), "1");
  EXPECT_EQ(a->List("")->size(), 2u);
  EXPECT_FALSE(a->Health().healthy);
  EXPECT_NE(a->Health().error.find("unreachable"), std::string::npos) << a->Health().error;
  auto w = a->Commit({{}, {Op::Put("apps/y", "2")}});
  EXPECT_EQ(w.code(), base::StatusCode::kUnavailable);
  // No local copy: nothing to serve, a clear error.
  auto none = OpenEtcdStore(Options({etcd_->endpoint()}, "/drawbridge/", dir_ + "/absent.json"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.code(), base::StatusCode::kUnavailable);
  EXPECT_NE(none.message().find("etcd://" + etcd_->endpoint()), std::string::npos)
      << none.message();
  EXPECT_NE(none.message().find("no local copy"), std::string::npos) << none.message();
  // A copy made for another prefix is not served.
  auto other = OpenEtcdStore(Options({etcd_->endpoint()}, "/other/", cache));
  EXPECT_FALSE(other.ok());
  // etcd back: the degraded store resyncs and becomes healthy and writable.
  ASSERT_TRUE(etcd_->Start());
  EXPECT_TRUE(Eventually([&] { return a->Health().healthy; }, 3000ms)) << a->Health().error;
  auto again = a->Commit({{}, {Op::Put("apps/y", "2")}});
  ASSERT_TRUE(again.ok() && again->succeeded) << again.message();
  EXPECT_EQ(ValueOf(a.get(), "apps/y"), "2");
}

TEST_F(EtcdStoreTest, CompactionWhileCutOffResyncsInFull) {
  Proxy proxy(PortOf(etcd_->endpoint()));
  auto a = MustOpen(Options({proxy.endpoint()}, "/drawbridge/", dir_ + "/a.json"));
  auto b = MustOpen(Options({etcd_->endpoint()}, "/drawbridge/"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->Commit({{}, {Op::Put("apps/keep", "1"), Op::Put("apps/gone", "1")}})->succeeded);
  ASSERT_TRUE(Eventually([&] { return ValueOf(a.get(), "apps/gone").has_value(); }, 1000ms));
  std::atomic<int> wakes{0};
  a->Watch([&](int64_t) { wakes++; });
  proxy.Cut();
  ASSERT_TRUE(Eventually([&] { return !a->Health().healthy; }, 2000ms));
  ASSERT_TRUE(b->Commit({{}, {Op::Delete("apps/gone"), Op::Put("apps/new", "2")}})->succeeded);
  auto last = b->Commit({{}, {Op::Put("apps/keep", "3")}});
  ASSERT_TRUE(last.ok() && last->succeeded);
  // Compact etcd's history up to now: a's resume point is gone.
  auto client = EtcdClient::Create({{etcd_->endpoint()}, "", "", "", "", "", 1000ms, "test"});
  ASSERT_TRUE(client.ok());
  auto c =
      (*client)->Call("/v3/kv/compaction",
                      {{"revision", std::to_string(last->revision)}, {"physical", true}}, true);
  ASSERT_TRUE(c.ok()) << c.message();
  proxy.Resume();
  ASSERT_TRUE(Eventually([&] { return ValueOf(a.get(), "apps/keep") == "3"; }, 4000ms));
  EXPECT_FALSE(a->Get("apps/gone")->has_value());
  EXPECT_EQ(ValueOf(a.get(), "apps/new"), "2");
  EXPECT_EQ(*a->Revision(), last->revision);
  EXPECT_TRUE(Eventually([&] { return wakes.load() > 0; }, 1000ms)) << "the resync woke no watcher";
  auto la = a->List(""), lb = b->List("");
  ASSERT_EQ(la->size(), lb->size());
  for (size_t i = 0; i < la->size(); ++i) {
    EXPECT_EQ((*la)[i].key, (*lb)[i].key);
    EXPECT_EQ((*la)[i].value, (*lb)[i].value);
    EXPECT_EQ((*la)[i].mod_revision, (*lb)[i].mod_revision);
    EXPECT_EQ((*la)[i].create_revision, (*lb)[i].create_revision);
  }
  EXPECT_TRUE(Eventually([&] { return a->Health().healthy; }, 2000ms)) << a->Health().error;
}

TEST_F(EtcdStoreTest, UserAndPasswordAuth) {
  std::string log = dir_ + "/etcdctl.log";
  std::string ep = "--endpoints=" + etcd_->endpoint();
  ASSERT_EQ(RunProgram({"/usr/bin/etcdctl", ep, "user", "add", "root:s3cret"}, log), 0);
  ASSERT_EQ(RunProgram({"/usr/bin/etcdctl", ep, "user", "grant-role", "root", "root"}, log), 0);
  ASSERT_EQ(RunProgram({"/usr/bin/etcdctl", ep, "auth", "enable"}, log), 0);
  auto o = Options({etcd_->endpoint()}, "/drawbridge/");
  // Without credentials, or with a wrong password: refused, saying so.
  auto anonymous = OpenEtcdStore(o);
  EXPECT_FALSE(anonymous.ok());
  o.user = "root";
  o.password = "wrong";
  auto wrong = OpenEtcdStore(o);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("authentication as user root failed"), std::string::npos)
      << wrong.message();
  o.password = "s3cret";
  auto a = MustOpen(o);
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Commit({{}, {Op::Put("apps/x", "1")}})->succeeded);
  EXPECT_EQ(ValueOf(a.get(), "apps/x"), "1");
  // A restarted etcd forgets its tokens: the store authenticates again.
  etcd_->Kill();
  ASSERT_TRUE(etcd_->Start());
  ASSERT_TRUE(Eventually([&] { return a->Health().healthy; }, 3000ms)) << a->Health().error;
  auto w = a->Commit({{}, {Op::Put("apps/y", "2")}});
  ASSERT_TRUE(w.ok() && w->succeeded) << w.message();
}

// ---- TLS with client certificates -----------------------------------------------------------

TEST(EtcdTlsTest, ClientCertificatesOverTls) {
  std::string dir = TempDir("tls");
  TlsFiles f{dir + "/ca.crt", dir + "/server.crt", dir + "/server.key", dir + "/client.crt",
             dir + "/client.key"};
  std::string log = dir + "/openssl.log";
  auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    return RunProgram(args, log);
  };
  ASSERT_EQ(openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", dir + "/ca.key", "-out", f.ca, "-days", "2", "-subj",
                     "/CN=test etcd CA"}),
            0);
  for (auto [name, subj, ext] :
       {std::tuple{std::string("server"), std::string("/CN=etcd"),
                   std::string("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage="
                               "serverAuth,clientAuth\n")},
        std::tuple{std::string("client"), std::string("/CN=root"),
                   std::string("extendedKeyUsage=clientAuth\n")}}) {
    std::ofstream(dir + "/" + name + ".ext") << ext;
    ASSERT_EQ(
        openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                 dir + "/" + name + ".key", "-out", dir + "/" + name + ".csr", "-subj", subj}),
        0);
    ASSERT_EQ(openssl({"x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", f.ca, "-CAkey",
                       dir + "/ca.key", "-CAcreateserial", "-out", dir + "/" + name + ".crt",
                       "-days", "2", "-extfile", dir + "/" + name + ".ext"}),
              0);
  }
  {
    Etcd etcd(&f);
    ASSERT_TRUE(etcd.Start()) << "etcd (TLS) did not start; see " << etcd.dir();
    auto o = Options({etcd.endpoint()}, "/drawbridge/");
    o.ca_file = f.ca;
    o.cert_file = f.client_cert;
    o.key_file = f.client_key;
    auto a = MustOpen(o);
    ASSERT_TRUE(a);
    auto w = a->Commit({{}, {Op::Put("apps/x", "1")}});
    ASSERT_TRUE(w.ok() && w->succeeded) << w.message();
    EXPECT_EQ(ValueOf(a.get(), "apps/x"), "1");
    EXPECT_TRUE(a->Health().healthy) << a->Health().error;
    // Without a client certificate etcd refuses the handshake; without TLS nothing answers.
    auto no_cert = Options({etcd.endpoint()}, "/drawbridge/");
    no_cert.ca_file = f.ca;
    EXPECT_FALSE(OpenEtcdStore(no_cert).ok());
    EXPECT_FALSE(OpenEtcdStore(Options({etcd.endpoint()}, "/drawbridge/")).ok());
    // A certificate without its key is refused up front.
    auto half = o;
    half.key_file.clear();
    auto h = OpenEtcdStore(half);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.code(), base::StatusCode::kInvalidArgument);
  }
  std::filesystem::remove_all(dir);
}

// ---- A 3-member cluster losing one member -----------------------------------------------------

TEST(EtcdClusterTest, OneMemberKilledChangesNothingVisible) {
  std::string dir = TempDir("cluster");
  std::vector<std::unique_ptr<EtcdMember>> members;
  std::string initial;
  for (int i = 1; i <= 3; ++i) {
    std::string d = dir + "/m" + std::to_string(i);
    std::filesystem::create_directories(d);
    members.push_back(std::make_unique<EtcdMember>("m" + std::to_string(i), d));
    initial += (i > 1 ? "," : "") + members.back()->name() + "=" + members.back()->peer_url();
  }
  for (auto& m : members) m->Start(initial, true);
  for (auto& m : members) ASSERT_TRUE(m->WaitReady()) << "cluster did not form; see " << dir;
  std::vector<std::string> endpoints;
  for (auto& m : members) endpoints.push_back(m->endpoint());
  auto a = MustOpen(Options(endpoints, "/drawbridge/"));
  auto b = MustOpen(Options({endpoints[2], endpoints[1]}, "/drawbridge/"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Commit({{}, {Op::Put("apps/x", "1")}})->succeeded);
  // a talks to m1 (first, sticky): kill it.
  members[0]->Kill();
  // Writes go on through the others; an election may take one write's timeout at most.
  auto until = Clock::now() + 5s;
  base::Result<TxnResult> w = base::Status::Unavailable("not tried");
  int attempts = 0;
  while (Clock::now() < until) {
    ++attempts;
    w = a->Commit({{Compare::Absent("apps/y")}, {Op::Put("apps/y", "2")}});
    if (w.ok()) break;
  }
  ASSERT_TRUE(w.ok()) << w.message();
  EXPECT_LE(attempts, 2);
  for (int i = 0; i < 20; ++i) {
    auto r = a->Commit({{}, {Op::Put("apps/n", std::to_string(i))}});
    ASSERT_TRUE(r.ok() && r->succeeded) << r.message();
  }
  EXPECT_EQ(ValueOf(a.get(), "apps/n"), "19");
  ASSERT_TRUE(Eventually([&] { return ValueOf(b.get(), "apps/n") == "19"; }, 1000ms));
  EXPECT_TRUE(Eventually([&] { return a->Health().healthy; }, 3000ms)) << a->Health().error;
  EXPECT_TRUE(b->Health().healthy) << b->Health().error;
  a.reset();
  b.reset();
  for (auto& m : members) m->Kill();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace drawbridge::store
