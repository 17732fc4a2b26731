// The publisher over the in-memory store and a real control plane with a CA: what it serves
// after a commit, coalescing of bursts, parsing only what changed, commits from inside a
// watcher or a swap hook (no deadlock), and waiting for a revision with a timeout.
#include "publish/publisher.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "tls/ca.h"
#include "tls/ca_issuer.h"

namespace drawbridge::publish {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kConfig = R"(app = "%s"

[[services]]
  internal_port = 5432
  protocol = "tcp"

  [[services.ports]]
    handlers = ["pg_tls"]
    port = %d
)";

std::string Config(const std::string& app, int port) {
  char buf[512];
  std::snprintf(buf, sizeof buf, kConfig, app.c_str(), port);
  return buf;
}

// Opens and closes by hand: lets a test hold the publisher thread inside its swap hook.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Pass() {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  bool WaitEntered(milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entered_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  bool entered_ = false;
};

// Fails and ends the binary if `f` does not return within 10 s: a deadlock would otherwise hang
// the suite until CTest's timeout, without saying which test.
template <typename F>
void WithinTenSeconds(const char* what, F f) {
  std::promise<void> done;
  auto finished = done.get_future();
  std::thread([&f, &done] {
    f();
    done.set_value();
  }).detach();
  if (finished.wait_for(seconds(10)) != std::future_status::ready) {
    std::fprintf(stderr, "%s did not return within 10 s: deadlock\n", what);
    std::_Exit(1);
  }
}

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("drawbridge-publisher-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    auto ca = tls::EnsureCa(dir_.string(), "Test CA");
    ASSERT_TRUE(ca.ok()) << ca.message();
    auto apex = tls::IssueLeaf(*ca, {"example.test"}, 30);
    ASSERT_TRUE(apex.ok()) << apex.message();
    ca_ = *ca;
    issuer_ = std::make_unique<tls::CaCertIssuer>(ca_);
    store_ = store::NewMemoryStore();
    plane::PlaneOptions o;
    o.domain = "example.test";
    o.v4_pool = "127.0.10.0/24";
    o.v6_pool = "fd00:db:1::/64";
    auto created = plane::ControlPlane::Create(store_.get(), o, issuer_.get());
    ASSERT_TRUE(created.ok()) << created.message();
    plane_ = std::move(*created);
    PublisherOptions po;
    po.domain = "example.test";
    po.base_certs.push_back({"apex", apex->cert_pem, apex->key_pem});
    publisher_ = std::make_unique<Publisher>(plane_.get(), po);
  }
  void TearDown() override {
    publisher_.reset();
    std::filesystem::remove_all(dir_);
  }

  // An app with an address (and so a certificate from the CA), deployed on `port`.
  void AddApp(const std::string& app, int port) {
    ASSERT_TRUE(plane_->apps().Create(app).ok());
    ASSERT_TRUE(plane_->machines().Add(app, "10.0.0.5", "local", "").ok());
    ASSERT_TRUE(plane_->ips().Allocate(app, "v4").ok());
    ASSERT_TRUE(plane_->releases().Deploy(app, Config(app, port), "fly.toml", "").ok());
  }
  int64_t Revision() { return *store_->Revision(); }
  bool Served() { return publisher_->WaitFor(Revision(), seconds(5)); }

  std::filesystem::path dir_;
  tls::CaFiles ca_;
  std::unique_ptr<tls::CaCertIssuer> issuer_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<plane::ControlPlane> plane_;
  std::unique_ptr<Publisher> publisher_;
};

TEST_F(PublisherTest, PublishNowServesWhatTheStoreHolds) {
  AddApp("alpha", 5432);
  ASSERT_TRUE(publisher_->PublishNow().ok());
  EXPECT_EQ(publisher_->published_revision(), Revision());
  auto routes = publisher_->routes()->Current();
  ASSERT_TRUE(routes);
  EXPECT_EQ(routes->version(), static_cast<uint64_t>(Revision()));
  EXPECT_EQ(routes->Ports(), std::vector<int>{5432});
  auto certs = publisher_->certs()->Current();
  ASSERT_TRUE(certs);
  EXPECT_NE(certs->Find("alpha.example.test"), nullptr);
  EXPECT_EQ(certs->Find("example.test"), certs->default_ctx()) << "the base certificate first";
  auto zone = publisher_->zone();
  ASSERT_TRUE(zone);
  EXPECT_EQ(zone->domain, "example.test");
  EXPECT_EQ(zone->public_ips.at("alpha").size(), 1u);
  EXPECT_EQ(zone->internal_ips.at("alpha"), std::vector<std::string>{"10.0.0.5"});
}

TEST_F(PublisherTest, ABaseCertificateThatDoesNotLoadIsNamed) {
  PublisherOptions po;
  po.domain = "example.test";
  po.base_certs.push_back({"my.crt / my.key", "not a certificate", "not a key"});
  Publisher bad(plane_.get(), po);
  auto s = bad.PublishNow();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("my.crt / my.key: ", 0), 0u) << s.message();
}

TEST_F(PublisherTest, ACommitIsServedByThePublisherThread) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  std::thread::id hook_thread;
  int swaps = 0;
  publisher_->Start([&] {
    hook_thread = std::this_thread::get_id();
    ++swaps;
  });
  AddApp("alpha", 5432);
  ASSERT_TRUE(Served());
  EXPECT_NE(hook_thread, std::this_thread::get_id()) << "not on the committing thread";
  EXPECT_GE(swaps, 1);
  EXPECT_EQ(publisher_->routes()->Current()->Ports(), std::vector<int>{5432});
  EXPECT_NE(publisher_->certs()->Current()->Find("alpha.example.test"), nullptr);
  EXPECT_EQ(publisher_->zone()->public_ips.count("alpha"), 1u);
}

TEST_F(PublisherTest, ABurstOfCommitsIsOneRebuildAtTheNewest) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  Gate gate;
  bool first = true;
  publisher_->Start([&] {
    if (std::exchange(first, false)) gate.Pass();  // holds the thread in its first rebuild
  });
  ASSERT_TRUE(plane_->apps().Create("app0").ok());
  ASSERT_TRUE(gate.WaitEntered(seconds(5)));
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(plane_->apps().Create("app" + std::to_string(i)).ok());
  int64_t newest = Revision();
  EXPECT_LT(publisher_->published_revision(), newest);
  gate.Open();
  ASSERT_TRUE(publisher_->WaitFor(newest, seconds(5)));
  // PublishNow, the rebuild held at the gate, and one for the ten commits behind it.
  EXPECT_EQ(publisher_->stats().rebuilds, 3u);
  EXPECT_EQ(publisher_->routes()->Current()->version(), static_cast<uint64_t>(newest));
  EXPECT_EQ(publisher_->zone()->public_ips.size(), 11u);
}

TEST_F(PublisherTest, OnlyTheChangedCertificateIsParsed) {
  for (const char* app : {"alpha", "beta", "gamma"}) AddApp(app, 5432);
  ASSERT_TRUE(publisher_->PublishNow().ok());
  EXPECT_EQ(publisher_->stats().cert_parses, 4u) << "the base certificate and three apps'";
  publisher_->Start({});
  auto before = publisher_->certs()->Current();

  // A commit that touches no certificate keeps the set as it is.
  ASSERT_TRUE(plane_->machines().Add("alpha", "10.0.0.6", "local", "").ok());
  ASSERT_TRUE(Served());
  EXPECT_EQ(publisher_->stats().cert_parses, 4u);
  EXPECT_EQ(publisher_->certs()->Current(), before);

  // The operator replaces beta's certificate: that one is parsed, the others are shared.
  auto own = tls::IssueLeaf(ca_, {"beta.example.test"}, 30);
  ASSERT_TRUE(own.ok());
  ASSERT_TRUE(plane_->certificates().Add("beta.example.test", own->cert_pem, own->key_pem).ok());
  ASSERT_TRUE(Served());
  EXPECT_EQ(publisher_->stats().cert_parses, 5u);
  auto after = publisher_->certs()->Current();
  ASSERT_NE(after, before);
  EXPECT_EQ(after->Find("alpha.example.test"), before->Find("alpha.example.test"));
  EXPECT_EQ(after->Find("gamma.example.test"), before->Find("gamma.example.test"));
  EXPECT_EQ(after->default_ctx(), before->default_ctx());
  EXPECT_NE(after->Find("beta.example.test"), before->Find("beta.example.test"));
  EXPECT_NE(after->Find("beta.example.test"), nullptr);
  // The old set still works for the connections that hold it.
  EXPECT_NE(before->Find("beta.example.test"), nullptr);
}

TEST_F(PublisherTest, OnlyTheChangedReleaseIsParsed) {
  AddApp("alpha", 5432);
  AddApp("beta", 5433);
  ASSERT_TRUE(publisher_->PublishNow().ok());
  EXPECT_EQ(publisher_->stats().config_parses, 2u);
  publisher_->Start({});
  ASSERT_TRUE(plane_->machines().Add("alpha", "10.0.0.6", "local", "").ok());
  ASSERT_TRUE(Served());
  EXPECT_EQ(publisher_->stats().config_parses, 2u) << "no release changed";
  ASSERT_TRUE(plane_->releases().Deploy("beta", Config("beta", 5434), "fly.toml", "").ok());
  ASSERT_TRUE(Served());
  EXPECT_EQ(publisher_->stats().config_parses, 3u);
  EXPECT_EQ(publisher_->routes()->Current()->Ports(), (std::vector<int>{5432, 5434}));

  // Destroyed and created again with another text: parsed again, the old ports gone.
  ASSERT_TRUE(plane_->apps().Destroy("alpha").ok());
  AddApp("alpha", 5435);
  ASSERT_TRUE(Served());
  EXPECT_EQ(publisher_->routes()->Current()->Ports(), (std::vector<int>{5434, 5435}));
}

TEST_F(PublisherTest, RefreshParsesEverythingAgain) {
  AddApp("alpha", 5432);
  ASSERT_TRUE(publisher_->PublishNow().ok());
  publisher_->Start({});
  auto before = publisher_->stats();
  publisher_->Refresh();
  for (int i = 0; i < 500 && publisher_->stats().rebuilds == before.rebuilds; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto after = publisher_->stats();
  EXPECT_EQ(after.rebuilds, before.rebuilds + 1);
  EXPECT_EQ(after.cert_parses, before.cert_parses + 1) << "alpha's; the base stays parsed";
  EXPECT_EQ(after.config_parses, before.config_parses + 1);
  EXPECT_NE(publisher_->certs()->Current()->Find("alpha.example.test"), nullptr);
}

TEST_F(PublisherTest, CertificatesAreSwappedBeforeTheRoutes) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  bool had_cert = false;
  publisher_->Start([&] {
    auto routes = publisher_->routes()->Current();
    if (routes->Ports().empty()) return;
    had_cert = publisher_->certs()->Current()->Find("alpha.example.test") != nullptr;
  });
  AddApp("alpha", 5432);
  ASSERT_TRUE(Served());
  EXPECT_TRUE(had_cert);
}

TEST_F(PublisherTest, CommitsFromInsideAWatcherOrTheSwapHookDoNotDeadlock) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  // The swap hook runs on the publisher thread; it commits once (a renewal would).
  std::atomic<bool> hook_committed = false;
  publisher_->Start([&] {
    if (!hook_committed.exchange(true)) {
      ASSERT_TRUE(plane_->apps().Create("from-hook").ok());
    }
  });
  // Another watcher commits from the committing thread, inside the store's notification.
  std::atomic<bool> watcher_committed = false;
  store_->Watch([&](int64_t) {
    if (!watcher_committed.exchange(true)) {
      ASSERT_TRUE(plane_->apps().Create("from-watcher").ok());
    }
  });
  WithinTenSeconds("a commit with committing watchers", [&] {
    ASSERT_TRUE(plane_->apps().Create("first").ok());
    ASSERT_TRUE(Served());
  });
  ASSERT_TRUE(watcher_committed);
  // The hook's commit comes after its swap; wait for it to be served as well.
  for (int i = 0; i < 500 && !hook_committed; ++i) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_TRUE(hook_committed);
  WithinTenSeconds("waiting for the hook's commit", [&] { ASSERT_TRUE(Served()); });
  auto zone = publisher_->zone();
  EXPECT_EQ(zone->public_ips.count("first"), 1u);
  EXPECT_EQ(zone->public_ips.count("from-watcher"), 1u);
  EXPECT_EQ(zone->public_ips.count("from-hook"), 1u);
}

TEST_F(PublisherTest, WaitForTimesOutWhileTheThreadIsBusy) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  EXPECT_TRUE(publisher_->WaitFor(Revision(), milliseconds(0))) << "already served";
  EXPECT_FALSE(publisher_->WaitFor(Revision() + 1, seconds(5))) << "not started: false at once";
  Gate gate;
  publisher_->Start([&] { gate.Pass(); });
  ASSERT_TRUE(plane_->apps().Create("alpha").ok());
  ASSERT_TRUE(gate.WaitEntered(seconds(5)));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(publisher_->WaitForStore(milliseconds(200)));
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, milliseconds(200));
  EXPECT_LT(waited, seconds(3));
  gate.Open();
  EXPECT_TRUE(publisher_->WaitForStore(seconds(5)));
}

TEST_F(PublisherTest, WaitersAreReleasedByStop) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  publisher_->Start({});
  // A revision the store never reaches: only Stop() ends this wait early.
  int64_t never = Revision() + 5;
  auto waiter =
      std::async(std::launch::async, [&] { return publisher_->WaitFor(never, seconds(30)); });
  std::this_thread::sleep_for(milliseconds(50));
  publisher_->Stop();
  ASSERT_EQ(waiter.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_FALSE(waiter.get());
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(publisher_->WaitFor(never, seconds(5))) << "stopped: false at once";
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
}

TEST_F(PublisherTest, TheStoreMayOutliveThePublisher) {
  ASSERT_TRUE(publisher_->PublishNow().ok());
  publisher_->Start({});
  publisher_.reset();
  // The store keeps the watcher; it must not reach the destroyed publisher.
  ASSERT_TRUE(plane_->apps().Create("alpha").ok());
}

}  // namespace
}  // namespace drawbridge::publish
