// The data plane's counters as /metrics shows them: histograms with fixed buckets, the per-app
// counter with its bound, and the new failure reasons.
#include "net/metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace drawbridge::net {
namespace {

using namespace std::chrono_literals;

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(HistogramTest, RendersCumulativeBucketsSumAndCount) {
  static constexpr double kBounds[] = {0.001, 0.01, 0.1};
  Histogram h(kBounds);
  h.Observe(500us);  // <= 0.001
  h.Observe(1ms);    // <= 0.001: a bound is inclusive
  h.Observe(20ms);   // <= 0.1
  h.Observe(3s);     // above every bound
  std::string out;
  h.Render(&out, "x_seconds", "Help text.");
  EXPECT_TRUE(Has(out, "# HELP x_seconds Help text."));
  EXPECT_TRUE(Has(out, "# TYPE x_seconds histogram"));
  EXPECT_TRUE(Has(out, "x_seconds_bucket{le=\"0.001\"} 2")) << out;
  EXPECT_TRUE(Has(out, "x_seconds_bucket{le=\"0.01\"} 2")) << out;
  EXPECT_TRUE(Has(out, "x_seconds_bucket{le=\"0.1\"} 3")) << out;
  EXPECT_TRUE(Has(out, "x_seconds_bucket{le=\"+Inf\"} 4")) << out;
  EXPECT_TRUE(Has(out, "x_seconds_sum 3.021500")) << out;
  EXPECT_TRUE(Has(out, "x_seconds_count 4")) << out;
  EXPECT_EQ(h.count(), 4u);
}

TEST(HistogramTest, CountsFromManyThreadsWithoutLosingAny) {
  static constexpr double kBounds[] = {0.5};
  Histogram h(kBounds);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) h.Observe(i % 2 ? 1s : 1ms);
    });
  }
  for (auto& t : threads) t.join();
  std::string out;
  h.Render(&out, "y", "y");
  EXPECT_TRUE(Has(out, "y_bucket{le=\"0.5\"} 20000")) << out;
  EXPECT_TRUE(Has(out, "y_bucket{le=\"+Inf\"} 40000")) << out;
  EXPECT_TRUE(Has(out, "y_sum 20020.000000")) << out;
}

TEST(AppCounterTest, AtMostAThousandAppsByNameTheRestUnderOther) {
  AppCounter c;
  for (int i = 0; i < 1005; ++i) c.Count("app" + std::to_string(i));
  c.Count("app0");
  c.Count("app1004");  // beyond the bound: "other"
  EXPECT_EQ(c.Get("app0"), 2u);
  EXPECT_EQ(c.Get("app999"), 1u);
  EXPECT_EQ(c.Get("app1000"), 0u);
  EXPECT_EQ(c.Get("other"), 6u);
  std::string out;
  c.Render(&out);
  EXPECT_TRUE(Has(out, "# TYPE drawbridge_app_connections_total counter"));
  EXPECT_TRUE(Has(out, "drawbridge_app_connections_total{app=\"app0\"} 2"));
  EXPECT_TRUE(Has(out, "drawbridge_app_connections_total{app=\"other\"} 6"));
  EXPECT_EQ(out.find("app1000\""), std::string::npos);
}

TEST(AppCounterTest, EscapesLabelValues) {
  AppCounter c;
  c.Count("a\"b\\c\nd");
  std::string out;
  c.Render(&out);
  EXPECT_TRUE(Has(out, "drawbridge_app_connections_total{app=\"a\\\"b\\\\c\\nd\"} 1")) << out;
}

TEST(MetricsTest, PrometheusHasTheNewReasonsAndHistograms) {
  Metrics m;
  m.Failed(NetReason::kNoHealthyMachine);
  m.Failed(NetReason::kRoleMismatch);
  m.session_seconds.Observe(2s);
  m.app_connections.Count("mydb");
  std::string out = m.Prometheus();
  for (const char* reason : {"no_healthy_machine", "no_machine_with_role", "machine_hard_limit",
                             "source_not_allowed", "role_mismatch"}) {
    EXPECT_NE(out.find(std::string("drawbridge_failures_total{reason=\"") + reason + "\"}"),
              std::string::npos)
        << reason;
  }
  EXPECT_TRUE(Has(out, "drawbridge_failures_total{reason=\"no_healthy_machine\"} 1"));
  EXPECT_TRUE(Has(out, "drawbridge_failures_total{reason=\"role_mismatch\"} 1"));
  EXPECT_TRUE(Has(out, "# TYPE drawbridge_tls_handshake_seconds histogram"));
  EXPECT_TRUE(Has(out, "# TYPE drawbridge_machine_connect_seconds histogram"));
  EXPECT_TRUE(Has(out, "drawbridge_session_seconds_bucket{le=\"1\"} 0"));
  EXPECT_TRUE(Has(out, "drawbridge_session_seconds_bucket{le=\"10\"} 1"));
  EXPECT_TRUE(Has(out, "drawbridge_session_seconds_count 1"));
  EXPECT_TRUE(Has(out, "drawbridge_app_connections_total{app=\"mydb\"} 1"));
}

}  // namespace
}  // namespace drawbridge::net
