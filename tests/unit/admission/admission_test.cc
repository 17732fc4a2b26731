#include "admission/admission.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace drawbridge::admission {
namespace {

using Clock = Admission::Clock;
using std::chrono::milliseconds;

// A clock the test moves by hand.
struct FakeClock {
  std::atomic<int64_t> ms{3'600'000};
  Clock::time_point Now() const { return Clock::time_point() + milliseconds(ms.load()); }
  Admission::ClockFn Fn() {
    return [this] { return Now(); };
  }
};

Limits NoLimits() {
  Limits l;
  l.max_connections = 0;
  l.max_handshakes_in_flight = 0;
  l.max_connections_per_source = 0;
  l.tls_handshakes_per_second_per_source = 0;
  l.cancels_per_second_per_source = 0;
  return l;
}

TEST(AdmissionTest, DefaultsAreTheDocumentedOnes) {
  Limits l;
  EXPECT_EQ(l.max_connections, 100000);
  EXPECT_EQ(l.max_handshakes_in_flight, 4096);
  EXPECT_EQ(l.max_connections_per_source, 1000);
  EXPECT_EQ(l.tls_handshakes_per_second_per_source, 500);
  EXPECT_EQ(l.cancels_per_second_per_source, 50);
  Admission a(l);
  EXPECT_GE(a.source_capacity(), 200000u);
}

TEST(AdmissionTest, RefusalNames) {
  EXPECT_STREQ(RefusalName(Refusal::kMaxConnections), "max_connections");
  EXPECT_STREQ(RefusalName(Refusal::kMaxHandshakes), "max_handshakes");
  EXPECT_STREQ(RefusalName(Refusal::kPerSourceConnections), "per_source_connections");
  EXPECT_STREQ(RefusalName(Refusal::kTlsHandshakeRate), "tls_handshake_rate");
  EXPECT_STREQ(RefusalName(Refusal::kCancelRate), "cancel_rate");
}

TEST(AdmissionTest, GlobalCapRefusesAndARelease) {
  Limits l = NoLimits();
  l.max_connections = 2;
  Admission a(l);
  auto [r1, s1] = a.Admit("192.0.2.1");
  auto [r2, s2] = a.Admit("192.0.2.2");
  EXPECT_EQ(r1, Refusal::kNone);
  EXPECT_EQ(r2, Refusal::kNone);
  EXPECT_EQ(a.connections(), 2);
  auto [r3, s3] = a.Admit("192.0.2.3");
  EXPECT_EQ(r3, Refusal::kMaxConnections);
  EXPECT_FALSE(s3.held());
  EXPECT_EQ(a.Refusals(Refusal::kMaxConnections), 1u);
  s1.Release();
  EXPECT_EQ(a.connections(), 1);
  auto [r4, s4] = a.Admit("192.0.2.3");
  EXPECT_EQ(r4, Refusal::kNone);
  EXPECT_EQ(a.connections(), 2);
}

TEST(AdmissionTest, HandshakeCapCountsOnlyConnectionsStillNegotiating) {
  Limits l = NoLimits();
  l.max_handshakes_in_flight = 1;
  Admission a(l);
  auto [r1, s1] = a.Admit("192.0.2.1");
  ASSERT_EQ(r1, Refusal::kNone);
  EXPECT_EQ(a.handshaking(), 1);
  auto [r2, s2] = a.Admit("192.0.2.2");
  EXPECT_EQ(r2, Refusal::kMaxHandshakes);
  EXPECT_EQ(a.connections(), 1);  // a refused connection leaves no count behind
  s1.HandshakeDone();
  s1.HandshakeDone();  // idempotent
  EXPECT_EQ(a.handshaking(), 0);
  EXPECT_EQ(a.connections(), 1);
  auto [r3, s3] = a.Admit("192.0.2.2");
  EXPECT_EQ(r3, Refusal::kNone);
  EXPECT_EQ(a.handshaking(), 1);
  EXPECT_EQ(a.connections(), 2);
  s3.Release();
  EXPECT_EQ(a.handshaking(), 0);  // released while negotiating: leaves both counts
  EXPECT_EQ(a.connections(), 1);
}

TEST(AdmissionTest, PerSourceCapCountsIpv4AddressesAndIpv6Slash64s) {
  Limits l = NoLimits();
  l.max_connections_per_source = 2;
  Admission a(l);
  std::vector<Admission::Slot> held;
  auto admit = [&](const char* ip) {
    auto [r, s] = a.Admit(ip);
    if (s.held()) held.push_back(std::move(s));
    return r;
  };
  EXPECT_EQ(admit("192.0.2.1"), Refusal::kNone);
  EXPECT_EQ(admit("::ffff:192.0.2.1"), Refusal::kNone);  // the same source
  EXPECT_EQ(admit("192.0.2.1"), Refusal::kPerSourceConnections);
  EXPECT_EQ(admit("192.0.2.2"), Refusal::kNone);  // another source is not affected
  EXPECT_EQ(admit("2001:db8:0:1::1"), Refusal::kNone);
  EXPECT_EQ(admit("2001:db8:0:1::2"), Refusal::kNone);
  EXPECT_EQ(admit("2001:db8:0:1:ffff::9"), Refusal::kPerSourceConnections);  // same /64
  EXPECT_EQ(admit("2001:db8:0:2::1"), Refusal::kNone);                       // next /64
  EXPECT_EQ(a.Refusals(Refusal::kPerSourceConnections), 2u);
  EXPECT_EQ(a.sources_tracked(), 4);
  // Releasing one lets the source in again; with no rate configured, a source without
  // connections is forgotten at once.
  held.erase(held.begin());
  EXPECT_EQ(admit("192.0.2.1"), Refusal::kNone);
  held.clear();
  EXPECT_EQ(a.connections(), 0);
  EXPECT_EQ(a.sources_tracked(), 0);
}

TEST(AdmissionTest, ASlotReleasesExactlyOnceWhereverItIsMoved) {
  Limits l = NoLimits();
  l.max_connections_per_source = 5;
  Admission a(l);
  {
    auto [r, s] = a.Admit("192.0.2.1");
    ASSERT_TRUE(s.held());
    Admission::Slot moved(std::move(s));
    EXPECT_FALSE(s.held());  // NOLINT(bugprone-use-after-move): the point of the test
    EXPECT_TRUE(moved.handshaking());
    EXPECT_EQ(a.connections(), 1);
    Admission::Slot assigned;
    assigned = std::move(moved);
    EXPECT_EQ(a.connections(), 1);
    auto [r2, other] = a.Admit("192.0.2.1");
    EXPECT_EQ(a.connections(), 2);
    assigned = std::move(other);  // releases what `assigned` held
    EXPECT_EQ(a.connections(), 1);
    EXPECT_EQ(a.handshaking(), 1);
    assigned.Release();
    assigned.Release();
    EXPECT_EQ(a.connections(), 0);
    EXPECT_EQ(a.handshaking(), 0);
  }
  EXPECT_EQ(a.connections(), 0);
  EXPECT_EQ(a.handshaking(), 0);
  EXPECT_EQ(a.sources_tracked(), 0);
}

TEST(AdmissionTest, TlsHandshakeBucketRefillsWithInjectedTime) {
  FakeClock clock;
  Limits l = NoLimits();
  l.tls_handshakes_per_second_per_source = 10;  // burst 10
  Admission a(l, clock.Fn());
  auto t0 = clock.Now();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kNone) << i;
  }
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kTlsHandshakeRate);
  EXPECT_EQ(a.ChargeTlsHandshake("2001:db8::1", t0), Refusal::kNone);  // another source
  // 10/s: one token every 100 ms.
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0 + milliseconds(50)), Refusal::kTlsHandshakeRate);
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0 + milliseconds(100)), Refusal::kNone);
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0 + milliseconds(100)),
            Refusal::kTlsHandshakeRate);
  // A clock read earlier on another thread adds nothing.
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kTlsHandshakeRate);
  // A long pause refills one second's worth, no more.
  auto later = t0 + std::chrono::seconds(60);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", later), Refusal::kNone) << i;
  }
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", later), Refusal::kTlsHandshakeRate);
  EXPECT_EQ(a.Refusals(Refusal::kTlsHandshakeRate), 5u);
  // Cancels have their own bucket, here unlimited.
  EXPECT_EQ(a.ChargeCancel("192.0.2.1", later), Refusal::kNone);
}

TEST(AdmissionTest, CancelBucketAndSlowRates) {
  FakeClock clock;
  Limits l = NoLimits();
  l.cancels_per_second_per_source = 0.5;  // burst 1, one every 2 s
  Admission a(l, clock.Fn());
  auto t0 = clock.Now();
  EXPECT_EQ(a.ChargeCancel("192.0.2.1", t0), Refusal::kNone);
  EXPECT_EQ(a.ChargeCancel("192.0.2.1", t0 + milliseconds(1900)), Refusal::kCancelRate);
  EXPECT_EQ(a.ChargeCancel("192.0.2.1", t0 + milliseconds(4000)), Refusal::kNone);
  EXPECT_EQ(a.Refusals(Refusal::kCancelRate), 1u);
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kNone);  // unlimited here
}

TEST(AdmissionTest, IdleSourcesAreForgottenOnceTheirBucketsRefill) {
  FakeClock clock;
  Limits l = NoLimits();
  l.max_connections_per_source = 10;
  l.tls_handshakes_per_second_per_source = 2;  // refills in 1 s
  Admission a(l, clock.Fn());
  auto t0 = clock.Now();
  for (int i = 0; i < 100; ++i) {
    std::string ip = "198.51.100." + std::to_string(i);
    auto [r, s] = a.Admit(ip, t0);
    ASSERT_EQ(r, Refusal::kNone);
    EXPECT_EQ(a.ChargeTlsHandshake(ip, t0), Refusal::kNone);
  }  // every slot released here, at the clock's time
  EXPECT_EQ(a.sources_tracked(), 100);  // each still remembers a used bucket
  auto [r, held] = a.Admit("203.0.113.1", t0);  // a source with a connection stays
  EXPECT_EQ(a.ForgetIdle(t0 + milliseconds(999)), 0u);
  EXPECT_EQ(a.ForgetIdle(t0 + milliseconds(1000)), 100u);
  EXPECT_EQ(a.sources_tracked(), 1);
  EXPECT_EQ(a.sources_forgotten(), 0u);  // nothing was dropped early
}

TEST(AdmissionTest, TheSourceTableStaysWithinItsBoundUnderAFloodOfSources) {
  FakeClock clock;
  Limits l = NoLimits();
  l.max_connections_per_source = 4;
  l.tls_handshakes_per_second_per_source = 1;
  l.max_tracked_sources = 256;
  Admission a(l, clock.Fn());
  ASSERT_EQ(a.source_capacity(), 256u);
  auto t0 = clock.Now();
  // One source uses up its handshakes, then closes.
  {
    auto [r, s] = a.Admit("192.0.2.1", t0);
    ASSERT_EQ(r, Refusal::kNone);
    EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kNone);
    EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kTlsHandshakeRate);
  }
  // A flood of 20000 distinct /64s, each connecting once and handshaking, all within the
  // same instant (nothing has refilled).
  for (int i = 0; i < 20000; ++i) {
    char ip[64];
    std::snprintf(ip, sizeof ip, "2001:db8:%x:%x::1", i / 65536, i % 65536);
    auto [r, s] = a.Admit(ip, t0);
    ASSERT_EQ(r, Refusal::kNone) << ip;
    EXPECT_EQ(a.ChargeTlsHandshake(ip, t0), Refusal::kNone);
    ASSERT_LE(a.sources_tracked(), 256);
  }
  EXPECT_GE(a.sources_forgotten(), 20000u - 256u);
  // The first source was forgotten early: its bucket starts full again (documented).
  EXPECT_EQ(a.ChargeTlsHandshake("192.0.2.1", t0), Refusal::kNone);
}

TEST(AdmissionTest, AFullTableOfOpenSourcesRefusesNewSourcesAsMaxConnections) {
  Limits l = NoLimits();
  l.max_connections_per_source = 4;
  l.max_tracked_sources = 64;  // one entry per shard
  Admission a(l);
  std::vector<Admission::Slot> held;
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    auto [r, s] = a.Admit("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
    if (r == Refusal::kNone) {
      held.push_back(std::move(s));
    } else {
      EXPECT_EQ(r, Refusal::kMaxConnections);
      ++refused;
    }
    ASSERT_LE(a.sources_tracked(), 64);
  }
  EXPECT_EQ(static_cast<int64_t>(held.size()), a.sources_tracked());
  EXPECT_EQ(refused, 1000 - static_cast<int>(held.size()));
  EXPECT_EQ(a.Refusals(Refusal::kMaxConnections), static_cast<uint64_t>(refused));
  held.clear();
  EXPECT_EQ(a.sources_tracked(), 0);
  EXPECT_EQ(a.connections(), 0);
}

TEST(AdmissionTest, PrometheusPrintsEveryReasonAndTheGauges) {
  Limits l = NoLimits();
  l.max_connections = 1;
  Admission a(l);
  auto [r1, s1] = a.Admit("192.0.2.1");
  auto [r2, s2] = a.Admit("192.0.2.2");
  std::string text = a.Prometheus();
  EXPECT_NE(text.find("# TYPE drawbridge_admission_refusals_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("drawbridge_admission_refusals_total{reason=\"max_connections\"} 1\n"),
            std::string::npos);
  for (const char* reason : {"max_handshakes", "per_source_connections", "tls_handshake_rate",
                             "cancel_rate"}) {
    EXPECT_NE(text.find(std::string("drawbridge_admission_refusals_total{reason=\"") + reason +
                        "\"} 0\n"),
              std::string::npos)
        << reason;
  }
  EXPECT_EQ(text.find("reason=\"none\""), std::string::npos);
  EXPECT_NE(text.find("# TYPE drawbridge_connections_handshaking gauge\n"
                      "drawbridge_connections_handshaking 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("drawbridge_admission_sources_tracked 0\n"), std::string::npos);
  EXPECT_NE(text.find("drawbridge_admission_sources_forgotten_total 0\n"), std::string::npos);
}

// Many threads admit, hand over and release slots of a few shared sources, and charge their
// buckets: the caps hold at every moment and every count returns to zero. Run under TSan too.
TEST(AdmissionTest, ConcurrentAdmitsAndReleasesKeepTheCaps) {
  Limits l;
  l.max_connections = 40;
  l.max_handshakes_in_flight = 30;
  l.max_connections_per_source = 6;
  l.tls_handshakes_per_second_per_source = 1000;
  l.cancels_per_second_per_source = 1000;
  l.max_tracked_sources = 128;
  Admission a(l);
  constexpr int kSources = 8, kThreads = 8, kRounds = 3000;
  std::array<std::atomic<int>, kSources> per_source{};
  std::atomic<int> total{0}, max_total{0}, max_per_source{0}, admitted{0}, refused{0};
  auto bump_max = [](std::atomic<int>& m, int v) {
    int cur = m.load();
    while (v > cur && !m.compare_exchange_weak(cur, v)) {
    }
  };
  std::vector<std::thread> threads;
  std::barrier start(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      std::vector<std::pair<int, Admission::Slot>> mine;
      for (int i = 0; i < kRounds; ++i) {
        int src = (t + i / 8) % kSources;  // runs of 8 from one source pass its cap
        std::string ip = src % 2 ? "2001:db8:" + std::to_string(src) + "::" + std::to_string(i)
                                 : "192.0.2." + std::to_string(src);
        auto [r, s] = a.Admit(ip);
        if (r == Refusal::kNone) {
          admitted++;
          bump_max(max_per_source, ++per_source[src]);
          bump_max(max_total, ++total);
          (void)a.ChargeTlsHandshake(ip, Clock::now());
          (void)a.ChargeCancel(ip, Clock::now());
          if (i % 3 == 0) s.HandshakeDone();
          mine.emplace_back(src, std::move(s));
        } else {
          refused++;
        }
        // Release the oldest now and then, counting down before the slot goes.
        if (mine.size() > static_cast<size_t>(10 + t % 3)) {
          per_source[mine.front().first]--;
          total--;
          Admission::Slot moved = std::move(mine.front().second);
          mine.erase(mine.begin());
          moved.HandshakeDone();
        }
      }
      for (auto& [src, s] : mine) {
        per_source[src]--;
        total--;
        s.Release();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(a.connections(), 0);
  EXPECT_EQ(a.handshaking(), 0);
  EXPECT_LE(max_total.load(), 40);
  EXPECT_LE(max_per_source.load(), 6);
  EXPECT_GT(admitted.load(), 0);
  EXPECT_GT(refused.load(), 0);
  uint64_t counted = 0;
  for (size_t i = 1; i < static_cast<size_t>(Refusal::kCount); ++i) {
    if (i != static_cast<size_t>(Refusal::kTlsHandshakeRate) &&
        i != static_cast<size_t>(Refusal::kCancelRate)) {
      counted += a.Refusals(static_cast<Refusal>(i));
    }
  }
  EXPECT_EQ(counted, static_cast<uint64_t>(refused.load()));
  EXPECT_LE(a.sources_tracked(), 128);
}

}  // namespace
}  // namespace drawbridge::admission
