// Fuzz target for config::ParseFlyToml and config::AppNameOfFlyToml: any text either fails with
// "file:line: ..." or yields a config that satisfies every rule the parser promises to enforce
// (every warning with its file:line too, and the same app either way); routes build from it.
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "config/fly_toml.h"
#include "control/route_table.h"
#include "fuzz_util.h"

namespace {

// "fuzz.toml:<line>: ..." with a line of 1 or more: every error and every warning names one.
bool NamesALine(const std::string& message) {
  constexpr std::string_view kFile = "fuzz.toml:";
  if (message.rfind(kFile, 0) != 0) return false;
  size_t i = kFile.size();
  size_t digits = 0;
  while (i + digits < message.size() && message[i + digits] >= '0' && message[i + digits] <= '9') {
    ++digits;
  }
  return digits > 0 && message[i] != '0' && message.compare(i + digits, 2, ": ") == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT: a fuzz entry point
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The libFuzzer build compiles toml++ in with UBSan: any input that reaches toml++ 3.3's
  // TOML_UNREACHABLE (non-ASCII code points where it tests for whitespace) stops the run, so
  // this also checks that config/toml_text.cc keeps every such input away from it.
  auto app = config::AppNameOfFlyToml(text, "fuzz.toml");
  if (!app.ok()) FUZZ_CHECK(NamesALine(app.message()));
  auto r = config::ParseFlyToml(text, "fuzz.toml");
  if (!r.ok()) {
    FUZZ_CHECK(NamesALine(r.message()));
    return 0;
  }
  FUZZ_CHECK(app.ok() && *app == r->config.app);
  for (const auto& w : r->warnings) FUZZ_CHECK(NamesALine(w));
  std::set<int> seen;
  for (const auto& s : r->config.services) {
    FUZZ_CHECK(s.internal_port >= 1 && s.internal_port <= 65535);
    FUZZ_CHECK(s.protocol == "tcp" || s.protocol == "udp");
    for (const auto& p : s.ports) {
      FUZZ_CHECK(p.port.has_value() != (p.start_port.has_value() && p.end_port.has_value()));
      for (const auto& h : p.handlers) {
        FUZZ_CHECK(h == "tls" || h == "pg_tls" || h == "http" || h == "proxy_proto");
      }
      FUZZ_CHECK(!(p.HasHandler("tls") && p.HasHandler("pg_tls")));
      FUZZ_CHECK(!p.HasHandler("pg_tls") || s.protocol == "tcp");
      if (p.force_https.value_or(false)) FUZZ_CHECK(p.HasHandler("http"));
      for (int port : p.PublicPorts()) {
        FUZZ_CHECK(port >= 1 && port <= 65535);
        FUZZ_CHECK(seen.insert(port).second);
      }
    }
    if (s.concurrency) {
      FUZZ_CHECK(s.concurrency->hard_limit.value_or(1) >= 1);
      FUZZ_CHECK(s.concurrency->soft_limit.value_or(1) >= 1);
    }
  }
  // Routes cover only ports the config declares (services the edge does not serve yet, such
  // as udp or http, are left out).
  control::RouteTable table(1, control::RoutesForApp(r->config, {}));
  for (int port : table.Ports()) {
    FUZZ_CHECK(seen.count(port) == 1);
    FUZZ_CHECK(table.Find("", port) != nullptr);
  }
  return 0;
}
