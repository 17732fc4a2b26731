#include "config/fly_toml.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>

#include "config/toml_text.h"

namespace drawbridge::config {
namespace {

// The error text of a config that must not parse.
std::string ErrorOf(std::string_view toml) {
  auto r = ParseFlyToml(toml, "fly.toml");
  if (r.ok()) {
    ADD_FAILURE() << "parsed, but should not have:\n" << toml;
    return "";
  }
  return r.message();
}

ParsedConfig MustParse(std::string_view toml) {
  auto r = ParseFlyToml(toml, "fly.toml");
  if (!r.ok()) {
    ADD_FAILURE() << r.message();
    return {};
  }
  return std::move(r.value());
}

bool HasWarning(const ParsedConfig& c, std::string_view text) {
  for (const auto& w : c.warnings) {
    if (w == text) return true;
  }
  return false;
}

std::string AllWarnings(const ParsedConfig& c) {
  std::string out;
  for (const auto& w : c.warnings) out += w + "\n";
  return out;
}

// tests/data/fly_toml: the fly.toml files the Python suites load and the fuzz seeds are made of.
const std::filesystem::path kFixtures =
    std::filesystem::path(DRAWBRIDGE_TEST_DATA_DIR) / "fly_toml";

std::string FixturePath(std::string_view name) {
  return (kFixtures / (std::string(name) + ".toml")).string();
}

std::string Fixture(std::string_view name) {
  std::ifstream in(FixturePath(name), std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << FixturePath(name);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The guide's services section (docs/fly-toml.md, "The guide's services section"):
// docs_page_pg_tls.toml.
TEST(FlyTomlTest, ParsesTheDocsPageServices) {
  ParsedConfig c = MustParse(Fixture("docs_page_pg_tls"));
  EXPECT_EQ(c.config.app, "my-pg");
  ASSERT_EQ(c.config.services.size(), 1u);
  const control::Service& s = c.config.services[0];
  EXPECT_EQ(s.internal_port, 5432);
  EXPECT_EQ(s.protocol, "tcp");
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0].port, 5432);
  EXPECT_EQ(s.ports[0].handlers, std::vector<std::string>{"pg_tls"});
  EXPECT_TRUE(s.ports[0].HasHandler("pg_tls"));
  EXPECT_FALSE(s.ports[0].force_https);
  EXPECT_FALSE(s.ports[0].tls_options);
  EXPECT_FALSE(s.concurrency);
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
}

// What `fly services list` shows for a Fly Postgres app: 5432 and 5433, both pg_tls, with the
// launcher's concurrency and the keys this edge keeps without acting on them.
TEST(FlyTomlTest, ParsesTheFlyPostgresServices) {
  ParsedConfig c = MustParse(R"(app = "my-pg"
primary_region = "ord"

[[services]]
  internal_port = 5432
  protocol = "tcp"
  auto_start_machines = true
  [services.concurrency]
    type = "connections"
    hard_limit = 1000
    soft_limit = 1000
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432

[[services]]
  internal_port = 5433
  protocol = "tcp"
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5433
)");
  ASSERT_EQ(c.config.services.size(), 2u);
  EXPECT_EQ(c.config.services[0].internal_port, 5432);
  EXPECT_EQ(c.config.services[1].internal_port, 5433);
  EXPECT_EQ(c.config.services[0].ports[0].port, 5432);
  EXPECT_EQ(c.config.services[1].ports[0].port, 5433);
  ASSERT_TRUE(c.config.services[0].concurrency);
  EXPECT_EQ(c.config.services[0].concurrency->type, "connections");
  EXPECT_EQ(c.config.services[0].concurrency->hard_limit, 1000);
  EXPECT_EQ(c.config.services[0].concurrency->soft_limit, 1000);
  EXPECT_FALSE(c.config.services[1].concurrency);
  EXPECT_TRUE(
      HasWarning(c, "fly.toml:2: primary_region: not acted on by this edge; kept as written"))
      << AllWarnings(c);
  EXPECT_TRUE(HasWarning(
      c, "fly.toml:7: services[0].auto_start_machines: not acted on by this edge; kept as written"))
      << AllWarnings(c);
  // The limits are enforced (per machine, per node): no warning about them.
  EXPECT_EQ(c.warnings.size(), 2u) << AllWarnings(c);
}

TEST(FlyTomlTest, PortRange) {
  ParsedConfig c = MustParse(R"(app = "a"
[[services]]
  internal_port = 8080
  [[services.ports]]
    start_port = 10000
    end_port = 10010
    handlers = ["tls"]
)");
  const control::ServicePort& p = c.config.services[0].ports[0];
  EXPECT_FALSE(p.port);
  EXPECT_EQ(p.start_port, 10000);
  EXPECT_EQ(p.end_port, 10010);
  std::vector<int> ports = p.PublicPorts();
  ASSERT_EQ(ports.size(), 11u);
  EXPECT_EQ(ports.front(), 10000);
  EXPECT_EQ(ports.back(), 10010);
  EXPECT_EQ(c.config.services[0].protocol, "tcp") << "tcp is the default";
}

TEST(FlyTomlTest, TlsOptionsAndProxyProtoOptions) {
  ParsedConfig c = MustParse(R"(app = "a"
[[services]]
  internal_port = 8080
  [[services.ports]]
    port = 443
    handlers = ["tls", "http"]
    force_https = true
    tls_options = { alpn = ["h2", "http/1.1"], versions = ["TLSv1.2", "TLSv1.3"], default_self_signed = false }
  [[services.ports]]
    port = 5000
    handlers = ["proxy_proto"]
    proxy_proto_options = { version = "v2" }
  [[services.ports]]
    port = 5001
    handlers = ["proxy_proto"]
    proxy_proto_options = {}
)");
  const auto& ports = c.config.services[0].ports;
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(ports[0].force_https, true);
  ASSERT_TRUE(ports[0].tls_options);
  EXPECT_EQ(ports[0].tls_options->alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(ports[0].tls_options->versions, (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
  EXPECT_EQ(ports[0].tls_options->default_self_signed, false);
  ASSERT_TRUE(ports[1].proxy_proto_options);
  EXPECT_EQ(ports[1].proxy_proto_options->version, "v2");
  ASSERT_TRUE(ports[2].proxy_proto_options);
  EXPECT_EQ(ports[2].proxy_proto_options->version, "v1") << "v1 is the default";
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
}

TEST(FlyTomlTest, UnknownKeysAreWarningsNotErrors) {
  ParsedConfig c = MustParse(R"(app = "a"
colour = "blue"
[[services]]
  internal_port = 8080
  flavour = 1
  [[services.ports]]
    port = 443
    handlers = ["tls"]
    tls_options = { alpn = ["h2"], curve = "x25519" }
    http_options = { compress = true }
    extra = [1, 2]
)");
  EXPECT_TRUE(HasWarning(c, "fly.toml:2: colour: unknown key; kept as written")) << AllWarnings(c);
  EXPECT_TRUE(HasWarning(c, "fly.toml:5: services[0].flavour: unknown key; kept as written"))
      << AllWarnings(c);
  EXPECT_TRUE(HasWarning(
      c, "fly.toml:9: services[0].ports[0].tls_options.curve: unknown key; kept as written"))
      << AllWarnings(c);
  EXPECT_TRUE(HasWarning(
      c,
      "fly.toml:10: services[0].ports[0].http_options: not acted on by this edge; kept as written"))
      << AllWarnings(c);
  EXPECT_TRUE(
      HasWarning(c, "fly.toml:11: services[0].ports[0].extra: unknown key; kept as written"))
      << AllWarnings(c);
  EXPECT_EQ(c.warnings.size(), 5u) << AllWarnings(c);
}

TEST(FlyTomlTest, NoServicesIsValid) {
  ParsedConfig c = MustParse("app = \"worker\"\n");
  EXPECT_EQ(c.config.app, "worker");
  EXPECT_TRUE(c.config.services.empty());
}

// Errors name file:line: key: text.

TEST(FlyTomlErrorTest, WrongType) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = "5432"
)"),
            "fly.toml:3: services[0].internal_port: expected an integer");
  EXPECT_EQ(ErrorOf("app = 7\n"), "fly.toml:1: app: expected a string");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    port = 5432
    handlers = "pg_tls"
)"),
            "fly.toml:6: services[0].ports[0].handlers: expected an array of strings");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    port = 5432
    force_https = "yes"
)"),
            "fly.toml:6: services[0].ports[0].force_https: expected a boolean");
  EXPECT_EQ(ErrorOf(R"(app = "a"
services = "none"
)"),
            "fly.toml:2: services: expected [[services]] tables");
}

TEST(FlyTomlErrorTest, UnknownHandler) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    port = 5432
    handlers = ["pgtls"]
)"),
            "fly.toml:6: services[0].ports[0].handlers: unknown handler \"pgtls\" "
            "(known: tls, pg_tls, http, proxy_proto)");
}

TEST(FlyTomlErrorTest, ForceHttpsWithoutHttp) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 8080
  [[services.ports]]
    port = 443
    handlers = ["tls"]
    force_https = true
)"),
            "fly.toml:7: services[0].ports[0].force_https: needs the \"http\" handler");
  // false is harmless.
  MustParse(R"(app = "a"
[[services]]
  internal_port = 8080
  [[services.ports]]
    port = 443
    handlers = ["tls"]
    force_https = false
)");
}

TEST(FlyTomlErrorTest, PortOutOfRange) {
  for (std::string_view port : {"0", "70000", "-1", "65536"}) {
    SCOPED_TRACE(port);
    std::string toml = std::string(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    port = )") + std::string(port) +
                       "\n";
    EXPECT_EQ(ErrorOf(toml),
              "fly.toml:5: services[0].ports[0].port: must be a port number between 1 and 65535");
  }
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 0
  [[services.ports]]
    port = 5432
)"),
            "fly.toml:3: services[0].internal_port: must be a port number between 1 and 65535");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    start_port = 65000
    end_port = 70000
)"),
            "fly.toml:6: services[0].ports[0].end_port: must be a port number between 1 and 65535");
  MustParse(R"(app = "a"
[[services]]
  internal_port = 65535
  [[services.ports]]
    port = 1
)");
}

TEST(FlyTomlErrorTest, PortShapes) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
)"),
            "fly.toml:4: services[0].ports[0]: needs `port`, or `start_port` and `end_port`");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    port = 5432
    start_port = 5000
)"),
            "fly.toml:4: services[0].ports[0]: `port` and `start_port`/`end_port` are exclusive");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    start_port = 6000
    end_port = 5000
)"),
            "fly.toml:4: services[0].ports[0]: `start_port` is above `end_port`");
}

TEST(FlyTomlErrorTest, DuplicatePublicPort) {
  std::string error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432

[[services]]
  internal_port = 5433
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
)");
  EXPECT_EQ(error.rfind("fly.toml:", 0), 0u) << error;
  EXPECT_NE(error.find(": services"), std::string::npos) << error;
  EXPECT_NE(error.find("public port 5432 is already used by another service"), std::string::npos)
      << error;
  // A range that covers a single port collides as well.
  error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = 8080
  [[services.ports]]
    start_port = 5000
    end_port = 5010
[[services]]
  internal_port = 8081
  [[services.ports]]
    port = 5005
)");
  EXPECT_EQ(error, "fly.toml:10: services[1].ports[0].port: public port 5005 is already used by "
                   "another service");
}

// The duplicate is reported at the line of the port that repeats it, as every other error names
// the line of the offending key; "fly.toml:2: services" points at the first, valid, service.
TEST(FlyTomlErrorTest, DuplicatePublicPortNamesTheLineOfTheDuplicate) {
  std::string error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432

[[services]]
  internal_port = 5433
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
)");
  EXPECT_EQ(error.rfind("fly.toml:12: services[1].ports[0].port: ", 0), 0u) << error;
}

TEST(FlyTomlErrorTest, TlsAndPgTlsAreExclusive) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    port = 5432
    handlers = ["tls", "pg_tls"]
)"),
            "fly.toml:6: services[0].ports[0].handlers: \"tls\" and \"pg_tls\" are exclusive");
}

TEST(FlyTomlErrorTest, ProtocolChecks) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  protocol = "sctp"
)"),
            "fly.toml:4: services[0].protocol: must be \"tcp\" or \"udp\"");
  std::string error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  protocol = "udp"
  [[services.ports]]
    port = 5432
    handlers = ["pg_tls"]
)");
  EXPECT_NE(error.find("services[0].protocol: pg_tls needs protocol \"tcp\""), std::string::npos)
      << error;
  ParsedConfig udp = MustParse(R"(app = "a"
[[services]]
  internal_port = 53
  protocol = "udp"
  [[services.ports]]
    port = 53
)");
  EXPECT_TRUE(HasWarning(udp,
                         "fly.toml:2: services[0].protocol: udp services are not served by "
                         "this edge yet"))
      << AllWarnings(udp);
}

TEST(FlyTomlErrorTest, MissingInternalPort) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  protocol = "tcp"
)"),
            "fly.toml:2: services[0].internal_port: is required");
}

TEST(FlyTomlErrorTest, OptionValues) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 443
  [[services.ports]]
    port = 443
    handlers = ["tls"]
    tls_options = { versions = ["TLSv1.1"] }
)"),
            "fly.toml:7: services[0].ports[0].tls_options.versions: unsupported TLS version "
            "\"TLSv1.1\" (TLSv1.2 or TLSv1.3)");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 443
  [[services.ports]]
    port = 443
    handlers = ["proxy_proto"]
    proxy_proto_options = { version = "v3" }
)"),
            "fly.toml:7: services[0].ports[0].proxy_proto_options.version: must be \"v1\" or "
            "\"v2\"");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 443
  [[services.ports]]
    port = 443
    tls_options = "modern"
)"),
            "fly.toml:6: services[0].ports[0].tls_options: expected a table");
}

TEST(FlyTomlErrorTest, ConcurrencyLimits) {
  // The line is that of [services.concurrency] (4), not of soft_limit (6).
  std::string error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [services.concurrency]
    hard_limit = 10
    soft_limit = 20
)");
  EXPECT_EQ(error.rfind("fly.toml:", 0), 0u) << error;
  EXPECT_NE(error.find(": services[0].concurrency.soft_limit: is above hard_limit"),
            std::string::npos)
      << error;
  error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [services.concurrency]
    hard_limit = 0
)");
  EXPECT_EQ(error, "fly.toml:5: services[0].concurrency.hard_limit: must be between 1 and 1000000");
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 5432
  [services.concurrency]
    type = "sessions"
)"),
            "fly.toml:5: services[0].concurrency.type: must be \"connections\" or \"requests\"");
}

// 4294967297 is 2^32 + 1 and -4294967295 is 1 - 2^32: both must be refused, not wrapped by the
// int64 -> int conversion to a limit of 1.
TEST(FlyTomlErrorTest, ConcurrencyLimitOutsideIntRangeIsRefused) {
  for (std::string_view limit : {"4294967297", "-4294967295", "2147483648"}) {
    for (std::string_view key : {"hard_limit", "soft_limit"}) {
      SCOPED_TRACE(std::string(key) + " = " + std::string(limit));
      std::string toml = std::string(R"(app = "a"
[[services]]
  internal_port = 5432
  [services.concurrency]
    )") + std::string(key) +
                         " = " + std::string(limit) + "\n";
      auto r = ParseFlyToml(toml, "fly.toml");
      if (r.ok()) {
        ASSERT_TRUE(r->config.services[0].concurrency);
        const auto& c = *r->config.services[0].concurrency;
        ADD_FAILURE() << key << " " << limit << " was accepted as "
                      << (key == "hard_limit" ? c.hard_limit : c.soft_limit).value_or(-1);
      }
    }
  }
}

TEST(FlyTomlErrorTest, TomlSyntaxErrorNamesTheLine) {
  std::string error = ErrorOf(R"(app = "a"
[[services]]
  internal_port = = 5432
)");
  EXPECT_EQ(error.rfind("fly.toml:3: ", 0), 0u) << error;
}

TEST(FlyTomlErrorTest, FirstErrorWins) {
  EXPECT_EQ(ErrorOf(R"(app = "a"
[[services]]
  internal_port = 0
  [[services.ports]]
    port = 70000
)"),
            "fly.toml:3: services[0].internal_port: must be a port number between 1 and 65535");
}

TEST(LoadFlyTomlTest, ReadsAFileAndNamesIt) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("fly_toml_test." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto ok = LoadFlyToml(FixturePath("docs_page_pg_tls"));
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->config.services[0].ports[0].port, 5432);
  std::string path = (dir / "fly.toml").string();
  { std::ofstream(path) << "app = \"a\"\n[[services]]\n  internal_port = \"x\"\n"; }
  auto bad = LoadFlyToml(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(), path + ":3: services[0].internal_port: expected an integer");
  auto missing = LoadFlyToml((dir / "absent.toml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.message(), (dir / "absent.toml").string() + ": cannot open");
  std::filesystem::remove_all(dir);
}

// Each file of the set parses, but for the error_* ones, which are refused at a file:line.
TEST(FlyTomlFixturesTest, EachParsesOrIsRefusedAsNamed) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kFixtures)) {
    if (entry.path().extension() != ".toml") continue;
    ++files;
    std::string path = entry.path().string();
    SCOPED_TRACE(path);
    auto r = LoadFlyToml(path);
    if (entry.path().stem().string().rfind("error_", 0) == 0) {
      ASSERT_FALSE(r.ok());
      EXPECT_TRUE(r.message().rfind(path + ":", 0) == 0) << r.message();
    } else {
      EXPECT_TRUE(r.ok()) << r.message();
    }
  }
  EXPECT_GE(files, 8);
}

}  // namespace
}  // namespace drawbridge::config

namespace drawbridge::config {
namespace {

TEST(FlyTomlTypoTest, ANearMissOfAKnownKeyIsAnError) {
  auto r = ParseFlyToml(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handler = ["pg_tls"]
    port = 5432
)", "fly.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(),
            "fly.toml:5: services[0].ports[0].handler: unknown key; did you mean `handlers`?");
  auto far = ParseFlyToml(R"(app = "a"
[[services]]
  internal_port = 5432
  shiny = true
  [[services.ports]]
    port = 5432
)", "fly.toml");
  ASSERT_TRUE(far.ok()) << far.message();
  EXPECT_EQ(far->warnings.at(0), "fly.toml:4: services[0].shiny: unknown key; kept as written");
}

}  // namespace
}  // namespace drawbridge::config

namespace drawbridge::config {
namespace {

TEST(FlyTomlHttpServiceTest, IsValidatedAndWarnedAbout) {
  auto ok = ParseFlyToml(R"(app = "a"
[http_service]
  internal_port = 8080
  force_https = true
  auto_stop_machines = "stop"
  [http_service.concurrency]
    type = "requests"
    soft_limit = 200
)", "fly.toml");
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->warnings.at(0),
            "fly.toml:2: http_service: the http handler is not served by this edge yet; nothing "
            "is exposed for it");
  auto bad = ParseFlyToml("[http_service]\ninternal_port = \"8080\"\n", "fly.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(), "fly.toml:2: http_service.internal_port: expected an integer");
  auto stop = ParseFlyToml("[http_service]\ninternal_port = 8080\nauto_stop_machines = \"nap\"\n",
                           "fly.toml");
  ASSERT_FALSE(stop.ok());
  EXPECT_EQ(stop.message(),
            "fly.toml:3: http_service.auto_stop_machines: expected a boolean or \"off\", \"stop\", "
            "\"suspend\"");
}

}  // namespace
}  // namespace drawbridge::config

// Issue 12: TOML is UTF-8. Comments, strings and a byte order mark are accepted; bytes that are
// not UTF-8, and non-ASCII text where TOML allows only ASCII, are refused at their line, before
// toml++ 3.3 (which reaches undefined behaviour on such code points) reads them.
namespace drawbridge::config {
namespace {

using namespace std::string_view_literals;

const std::string kPgTlsServices = R"([[services]]
  internal_port = 5432
  protocol = "tcp"
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
)";

TEST(FlyTomlUtf8Test, CommentsMayHoldAnyText) {
  ParsedConfig c = MustParse("# Base de données — Zürich · 東京 · 🐘\napp = \"a\" # café ☕\n" +
                             kPgTlsServices);
  EXPECT_EQ(c.config.app, "a");
  ASSERT_EQ(c.config.services.size(), 1u);
  EXPECT_EQ(c.config.services[0].ports[0].port, 5432);
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
}

TEST(FlyTomlUtf8Test, StringsAndQuotedKeysMayHoldAnyText) {
  auto app = AppNameOfFlyToml("app = \"café-☕\"\n", "fly.toml");
  ASSERT_TRUE(app.ok()) << app.message();
  EXPECT_EQ(*app, "café-☕");
  ParsedConfig c = MustParse(
      "app = 'littéral'\n[env]\n  \"clé\" = \"¡Hola! Привет! こんにちは\"\n  NOTES = \"\"\"\n"
      "Première ligne.\n\"\"\"\n  RAW = '''Grüße'''\n" +
      kPgTlsServices);
  EXPECT_EQ(c.config.app, "littéral");
  EXPECT_TRUE(HasWarning(c, "fly.toml:2: env: not acted on by this edge; kept as written"))
      << AllWarnings(c);
  ParsedConfig fixture = MustParse(Fixture("utf8_comments_and_strings"));
  EXPECT_EQ(fixture.config.app, "my-pg");
  ASSERT_EQ(fixture.config.services.size(), 1u);
  EXPECT_EQ(fixture.config.services[0].ports[0].HasHandler("pg_tls"), true);
}

TEST(FlyTomlUtf8Test, ALeadingByteOrderMarkIsSkippedAndLinesStayTheSame) {
  ParsedConfig plain = MustParse(Fixture("docs_page_pg_tls"));
  ParsedConfig bom = MustParse(Fixture("bom_docs_page_pg_tls"));
  EXPECT_EQ(bom.config, plain.config);
  EXPECT_EQ(bom.config.app, "my-pg") << "the key after the mark is `app`, not \"\\uFEFFapp\"";
  EXPECT_EQ(ErrorOf("\xEF\xBB\xBF" "app = \"a\"\n[[services]]\n  internal_port = \"x\"\n"),
            "fly.toml:3: services[0].internal_port: expected an integer");
  EXPECT_EQ(ErrorOf("\xEF\xBB\xBF" "app = \"a\"\n\nx = = 1\n").rfind("fly.toml:3: ", 0), 0u);
  // A mark anywhere else is an ordinary character: not allowed between tokens.
  EXPECT_EQ(ErrorOf("app = \"a\"\n\xEF\xBB\xBF" "x = 1\n").rfind("fly.toml:2: ", 0), 0u);
}

TEST(FlyTomlUtf8Test, BytesThatAreNotUtf8AreRefusedAtTheirLine) {
  EXPECT_EQ(ErrorOf(Fixture("error_not_utf8")),
            "fly.toml:3: not UTF-8: byte 0xE9 at column 15 (a fly.toml is UTF-8 text; was it "
            "saved in another encoding?)");
  const std::pair<std::string_view, std::string_view> bad[] = {
      {"\x80", "a continuation byte without a lead"},
      {"\xC0\xAF", "an overlong '/'"},
      {"\xE0\x80\xAF", "an overlong '/' in three bytes"},
      {"\xF0\x80\x80\xAF", "an overlong '/' in four bytes"},
      {"\xED\xA0\x80", "a surrogate (U+D800)"},
      {"\xF4\x90\x80\x80", "above U+10FFFF"},
      {"\xF5\x80\x80\x80", "a lead byte that never occurs"},
      {"\xFF", "0xFF"},
      {"\xE2\x82", "a sequence cut short"},
      {"\xC3(", "a lead byte without its continuation"},
  };
  for (const auto& [bytes, what] : bad) {
    SCOPED_TRACE(what);
    for (std::string_view where : {"# %\n", "x = \"%\"\n", "x = '''\n%'''\n"}) {
      std::string body(where);
      body.replace(body.find('%'), 1, bytes);
      std::string toml = "app = \"a\"\n\n" + body;
      std::string error = ErrorOf(toml);
      EXPECT_EQ(error.rfind("fly.toml:", 0), 0u) << error;
      EXPECT_NE(error.find(": not UTF-8: byte 0x"), std::string::npos) << error;
      int line = body.starts_with("x = '''") ? 4 : 3;
      EXPECT_EQ(error.rfind("fly.toml:" + std::to_string(line) + ": ", 0), 0u) << error;
    }
  }
  // A cut-short sequence at the very end of the file is refused too.
  EXPECT_EQ(ErrorOf("app = \"a\" # \xE2\x82").rfind("fly.toml:1: not UTF-8: byte 0xE2 at column 13",
                                                     0),
            0u);
  EXPECT_EQ(ErrorOf("app = \"a\"\n# nul \0 here\n"sv),
            "fly.toml:2: a NUL byte: a fly.toml is text");
}

TEST(FlyTomlUtf8Test, NonAsciiBetweenTokensIsRefusedAtItsLine) {
  for (std::string_view toml : {"app = \"a\"\nx = é\n", "app = \"a\"\nclé = 1\n",
                                "app = \"a\"\nx = 1é\n", "app = \"a\"\nx = true\xC2\xA0\n",
                                "app = \"a\"\n[tablé]\n", "app = \"a\"\n\xE3\x80\x80x = 1\n",
                                "app = \"a\"\nx = [1, \xCC\xAA" "2]\n"}) {
    SCOPED_TRACE(toml);
    std::string error = ErrorOf(toml);
    EXPECT_EQ(error.rfind("fly.toml:2: unexpected character U+", 0), 0u) << error;
    EXPECT_NE(error.find(" outside a string or comment (TOML allows only ASCII there)"),
              std::string::npos)
        << error;
  }
  EXPECT_EQ(ErrorOf("app = \"a\"\nx = é\n"),
            "fly.toml:2: unexpected character U+00E9 outside a string or comment (TOML allows "
            "only ASCII there)");
}

// The inputs fuzzing found: each reached toml++ 3.3's TOML_UNREACHABLE. Now each is refused with
// a line before toml++ reads it, but #190's, which is valid TOML and read through an escape
// (the fuzz replay runs them all under ASan/UBSan as well).
TEST(FlyTomlUtf8Test, TheFuzzCrashesAreReadOrRefusedWithALine) {
  const std::filesystem::path corpus =
      std::filesystem::path(DRAWBRIDGE_TEST_DATA_DIR) / ".." / ".." / "fuzz" / "corpus" /
      "fly_toml";
  int crashes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    if (entry.path().filename().string().rfind("crash_", 0) != 0) continue;
    ++crashes;
    SCOPED_TRACE(entry.path().string());
    std::ifstream in(entry.path(), std::ios::binary);
    std::string text(std::istreambuf_iterator<char>(in), {});
    auto r = ParseFlyToml(text, "fly.toml");
    if (entry.path().filename() == "crash_tomlpp_issue190") {
      EXPECT_TRUE(r.ok()) << r.message();
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.message().rfind("fly.toml:", 0), 0u) << r.message();
    }
  }
  EXPECT_GE(crashes, 4);
  EXPECT_EQ(ErrorOf("\xCC\xAA"),
            "fly.toml:1: unexpected character U+032A outside a string or comment (TOML allows "
            "only ASCII there)");
}

// Right after a line-ending backslash in a """ string, toml++ 3.3 tests the next character for
// whitespace (the input of marzer/tomlplusplus#190); as its \u escape it reads the same.
TEST(FlyTomlUtf8Test, TextAfterALineEndingBackslashIsAccepted) {
  auto app = AppNameOfFlyToml("app = \"\"\"\\\n    ¡Hola!\"\"\"\n", "fly.toml");
  ASSERT_TRUE(app.ok()) << app.message();
  EXPECT_EQ(*app, "¡Hola!");
  app = AppNameOfFlyToml("app = \"\"\"x\\  \r\n\n \t🐘 §\\\n\n  é\"\"\"\n", "fly.toml");
  ASSERT_TRUE(app.ok()) << app.message();
  EXPECT_EQ(*app, "x🐘 §é");
  auto text = CheckTomlText("s = \"\"\"\\\n  ¡Hola! ¡Hola!\\\n🐘\"\"\"\n", "fly.toml");
  ASSERT_TRUE(text.ok()) << text.message();
  EXPECT_EQ(*text, "s = \"\"\"\\\n  \\u00A1Hola! ¡Hola!\\\n\\U0001F418\"\"\"\n");
  MustParse(Fixture("utf8_after_line_ending_backslash"));
  // The crash input of #190 itself: valid TOML, now read.
  ParsedConfig c = MustParse("s = \"\"\"\\\n\xC2\xA7\"\"\"\n");
  EXPECT_TRUE(HasWarning(c, "fly.toml:1: s: unknown key; kept as written")) << AllWarnings(c);
  // A backslash followed by anything but an escape or the end of the line is not TOML.
  for (std::string_view toml : {"s = \"\"\"\\é\"\"\"\n", "s = \"\"\"\\  é\n\"\"\"\n"}) {
    SCOPED_TRACE(toml);
    std::string error = ErrorOf(toml);
    EXPECT_EQ(error.rfind("fly.toml:1: unexpected character U+00E9 after a backslash", 0), 0u)
        << error;
  }
}

// The check follows strings and comments as toml++ does: quotes inside them, escapes and runs
// of up to five closing quotes do not end them early or late.
TEST(FlyTomlUtf8Test, StringsAndCommentsEndWhereTomlSays) {
  for (std::string_view toml : {
           "s = \"a \\\" é\" # ü\n",             // an escaped quote
           "s = \"a \\\\\" # ü\n",               // an escaped backslash before the end
           "s = 'a \\' # ü\n",                   // no escapes in literal strings
           "s = \"\"\"a\"é\"\"é\"\"\" # ü\n",   // one and two quotes inside
           "s = \"\"\"a\"\"\"\"\" # ü\n",       // five quotes: two of them text
           "s = '''a''''' # ü\n",               // the same in a literal string
           "s = \"\"\"\\\"\"\"é\"\"\" # ü\n",  // an escaped quote before two
           "s = \"\" # é\n",                     // an empty string
           "s = '' # é\n",
           "\"é\" = 1 # ü\n",                    // quoted keys
           "[\"é\".'ü'] # ü\n",
           "s = [\"é\", # ü\n  'ü'] # é\n",
           "s = { \"é\" = \"ü\" } # é\n",
       }) {
    SCOPED_TRACE(toml);
    auto r = ParseFlyToml(toml, "fly.toml");
    EXPECT_TRUE(r.ok()) << r.message();
  }
  // Six quotes end a """ string after five: the sixth starts another string where TOML allows
  // none, which toml++ refuses.
  EXPECT_EQ(ErrorOf("s = \"\"\"a\"\"\"\"\"\" é\n").rfind("fly.toml:1: ", 0), 0u);
}

// toml++ scans a value that starts with a digit, a sign or a '.' up to the next space, ',',
// ']', '}' or '#', quotes included, testing each character for whitespace (found by fuzzing:
// fuzz/corpus/fly_toml/crash_tomlpp_unreachable_number_scan). A quote there starts no string.
TEST(FlyTomlUtf8Test, NonAsciiInAScannedValueIsRefused) {
  for (std::string_view toml : {
           "app = \"a\"\nx = 1\"é\"\n",
           "app = \"a\"\nx = -\"é\"\n",
           "app = \"a\"\nx = +'é'\n",
           "app = \"a\"\nx = .5\"é\"\n",
           "app = \"a\"\nx = [1, 2\"é\"]\n",
           "app = \"a\"\nx = [ # c\n 1\"é\"]\n",
           "app = \"a\"\nx = { y = 1\"é\" }\n",
           "app = \"a\"\nx = 1979-05-27 \"é\"\n",  // a date may go on past one space
           "app = \"a\"\nx = 1_0\"é\"\n",
       }) {
    SCOPED_TRACE(toml);
    std::string error = ErrorOf(toml);
    EXPECT_NE(error.find("unexpected character U+00E9 outside a string or comment"),
              std::string::npos)
        << error;
    EXPECT_EQ(error.rfind("fly.toml:", 0), 0u) << error;
  }
  EXPECT_EQ(ErrorOf("app = \"a\"\nx = [ # c\n 1\"é\"]\n").rfind("fly.toml:3: ", 0), 0u);
  // Where toml++ reads a string, and after a value's end, UTF-8 is as welcome as anywhere.
  for (std::string_view toml : {
           "x = 1 # é\n",
           "x = -1.5e3 # é\n",
           "x = 1979-05-27 # é\n",
           "x = 1979-05-27 07:32:00 # é\n",
           "x = 1979-05-27T07:32:00Z # é\n",
           "x = [1, \"é\", 'ü', [2, \"é\"], { a = \"é\" }] # é\n",
           "x = [\n  1, # é\n  2, # ü\n] # é\n",
           "x = [] # é\ny = {} # é\n",
           "x = { a = 1, \"é\" = 2 } # é\n",
           "1.\"é\" = 1 # a dotted key: \"1\", then \"é\"\n",
           "-.'é' = 1\n",
           "[1.\"é\"] # a table header\nx = 1\n",
           "[[2.\"é\"]]\nx = 1\n",
           "x = true # é\ny = \"é\"\n",
       }) {
    SCOPED_TRACE(toml);
    auto r = ParseFlyToml(toml, "fly.toml");
    EXPECT_TRUE(r.ok()) << r.message();
  }
}

// The connection limits are enforced now: a file using them is accepted without a warning
// (they warned "not enforced by this edge yet" before).
TEST(FlyTomlWarningTest, ConnectionLimitsDoNotWarn) {
  ParsedConfig c = MustParse(R"(app = "a"
[[services]]
  internal_port = 5432
  [services.concurrency]
    type = "connections"
    hard_limit = 25
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
[[services]]
  internal_port = 5433
  concurrency = { type = "connections", soft_limit = 20 }
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5433
)");
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
  ASSERT_TRUE(c.config.services[0].concurrency);
  EXPECT_EQ(c.config.services[0].concurrency->hard_limit, 25);
  ASSERT_TRUE(c.config.services[1].concurrency);
  EXPECT_EQ(c.config.services[1].concurrency->soft_limit, 20);
}

// Fly's "requests" counts HTTP requests; this edge counts connections: said at `type`.
TEST(FlyTomlWarningTest, RequestsConcurrencyWarnsThatConnectionsAreCounted) {
  ParsedConfig c = MustParse(R"(app = "a"
[[services]]
  internal_port = 5432
  [services.concurrency]
    type = "requests"
    soft_limit = 5
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
)");
  EXPECT_EQ(c.warnings, (std::vector<std::string>{
                            "fly.toml:5: services[0].concurrency.type: this edge counts "
                            "connections, not requests: soft_limit and hard_limit apply to each "
                            "machine's open connections"}));
  ASSERT_TRUE(c.config.services[0].concurrency);
  EXPECT_EQ(c.config.services[0].concurrency->type, "requests");
  EXPECT_EQ(c.config.services[0].concurrency->soft_limit, 5);
}

TEST(FlyTomlWarningTest, AConfigWithoutServicesWarns) {
  for (std::string_view toml : {"", "app = \"a\"\n", "app = \"a\"\nservices = []\n"}) {
    SCOPED_TRACE(toml);
    ParsedConfig c = MustParse(toml);
    EXPECT_EQ(c.warnings, (std::vector<std::string>{
                              "fly.toml:1: services: no [[services]]: nothing will be served for "
                              "this app"}));
  }
  // [http_service] says so itself.
  ParsedConfig http = MustParse("app = \"a\"\n[http_service]\n  internal_port = 8080\n");
  EXPECT_EQ(http.warnings.size(), 1u) << AllWarnings(http);
}

bool StartsWithFileAndLine(const std::string& w, const std::string& file) {
  if (w.rfind(file + ":", 0) != 0) return false;
  size_t i = file.size() + 1, digits = 0;
  while (i + digits < w.size() && std::isdigit(static_cast<unsigned char>(w[i + digits]))) ++digits;
  return digits > 0 && w[i] != '0' && w.compare(i + digits, 2, ": ") == 0;
}

// Every warning the parser makes names file:line, also for tables toml++ makes implicitly
// (`[env.sub]` makes `env`, a dotted key makes its parents) and for every fixture.
TEST(FlyTomlWarningTest, EveryWarningNamesFileAndLine) {
  ParsedConfig c = MustParse(R"(app = "a"
primary_region = "ord"
kill_signal = "SIGINT"
colour.shade = "blue"
[env.sub]
  X = "1"
[[services]]
  internal_port = 53
  protocol = "udp"
  processes = ["app"]
  auto_stop_machines = "stop"
  auto_start_machines = true
  min_machines_running = 1
  flavour = 1
  concurrency.hard_limit = 10
  concurrency.soft_limit = 5
  [[services.tcp_checks]]
    interval = "15s"
    restart_limit = 3
    colour = 1
  [[services.http_checks]]
    path = "/"
  [services.drawbridge]
    target_session_attrs = "any"
    sparkles = 1
  [[services.ports]]
    port = 53
    http_options = {}
    extra = 1
    tls_options = { odd = 1 }
[[services]]
  internal_port = 9
[http_service]
  internal_port = 8080
  processes = ["app"]
  sparkle = 1
[checks.x]
  port = 1
[drawbridge]
  allowed_sources = []
  extra_thing = 1
)");
  EXPECT_GE(c.warnings.size(), 20u) << AllWarnings(c);
  for (const auto& w : c.warnings) EXPECT_TRUE(StartsWithFileAndLine(w, "fly.toml")) << w;
  EXPECT_TRUE(HasWarning(c, "fly.toml:2: primary_region: not acted on by this edge; kept as "
                            "written"))
      << AllWarnings(c);
  EXPECT_TRUE(HasWarning(c, "fly.toml:5: env: not acted on by this edge; kept as written"))
      << AllWarnings(c);
  for (const auto& entry : std::filesystem::directory_iterator(kFixtures)) {
    if (entry.path().extension() != ".toml") continue;
    if (entry.path().stem().string().rfind("error_", 0) == 0) continue;
    std::string path = entry.path().string();
    auto r = LoadFlyToml(path);
    ASSERT_TRUE(r.ok()) << r.message();
    for (const auto& w : r->warnings) EXPECT_TRUE(StartsWithFileAndLine(w, path)) << w;
  }
}

TEST(FlyTomlWarningTest, WhereNamesTheLinesOfAppServicesAndPorts) {
  ParsedConfig c = MustParse("# a comment\napp = \"a\"\n\n" + kPgTlsServices);
  EXPECT_EQ(c.Where("app"), "fly.toml:2: app: ");
  EXPECT_EQ(c.Where("services[0]"), "fly.toml:4: services[0]: ");
  EXPECT_EQ(c.Where("services[0].ports[0]"), "fly.toml:7: services[0].ports[0]: ");
  EXPECT_EQ(c.Where("services[0].ports[0].handlers"),
            "fly.toml:8: services[0].ports[0].handlers: ");
  EXPECT_EQ(c.Where("services[3]"), "fly.toml:1: services[3]: ") << "not in the file: line 1";
}

// A file that does not parse is reported as such, also when it has no `app` line: its syntax
// error, never "missing an app name". The CLI resolves the app with AppNameOfFlyToml.
TEST(FlyTomlSyntaxTest, TheSyntaxErrorIsReportedFirst) {
  constexpr std::string_view kBroken = "# no app line\n[[services]]\n  internal_port = = 5432\n";
  std::string error = ErrorOf(kBroken);
  EXPECT_EQ(error.rfind("fly.toml:3: ", 0), 0u) << error;
  auto app = AppNameOfFlyToml(kBroken, "fly.toml");
  ASSERT_FALSE(app.ok());
  EXPECT_EQ(app.code(), base::StatusCode::kInvalidArgument);
  EXPECT_EQ(app.message(), error);
  // A valid file without `app`: no name, no error (the caller says what is missing).
  auto none = AppNameOfFlyToml(kPgTlsServices, "fly.toml");
  ASSERT_TRUE(none.ok()) << none.message();
  EXPECT_EQ(*none, "");
  // The name even when the rest would not validate (that is the deploy's to report).
  auto named = AppNameOfFlyToml("app = \"a\"\n[[services]]\n  internal_port = \"x\"\n", "f");
  ASSERT_TRUE(named.ok()) << named.message();
  EXPECT_EQ(*named, "a");
  auto typed = AppNameOfFlyToml("\napp = 7\n", "f.toml");
  ASSERT_FALSE(typed.ok());
  EXPECT_EQ(typed.message(), "f.toml:2: app: expected a string");
  auto bytes = AppNameOfFlyToml("app = \"a\"\n# \xE9\n", "f.toml");
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.message().rfind("f.toml:2: not UTF-8", 0), 0u) << bytes.message();
}

// ---- Health checks, roles and the source allowlist (issue 14) ---------------------------------

using std::chrono::milliseconds;

// A service with one pg_tls port and `extra` (TOML lines inside [[services]], after the port).
std::string PgService(std::string_view extra) {
  return std::string(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
)") + std::string(extra);
}

// The same, with `keys` (plain or inline keys of [[services]], from line 4) before the port.
std::string PgServiceKeys(std::string_view keys) {
  return "app = \"a\"\n[[services]]\n  internal_port = 5432\n" + std::string(keys) +
         "  [[services.ports]]\n    handlers = [\"pg_tls\"]\n    port = 5432\n";
}

// roles_health_limits.toml uses every new key the way the docs show them; `config validate`
// (the admin API's Releases::Validate) reports exactly ParseFlyToml's warnings, so it says
// nothing about this file.
TEST(FlyTomlRolesHealthTest, TheFixtureParsesWithoutAWarning) {
  auto r = LoadFlyToml(FixturePath("roles_health_limits"));
  ASSERT_TRUE(r.ok()) << r.message();
  const ParsedConfig& c = *r;
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
  EXPECT_EQ(c.config.allowed_sources,
            (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32", "127.0.0.2"}));
  ASSERT_EQ(c.config.services.size(), 2u);
  const control::Service& rw = c.config.services[0];
  EXPECT_EQ(rw.target_session_attrs, control::TargetSessionAttrs::kReadWrite);
  ASSERT_TRUE(rw.concurrency);
  EXPECT_EQ(rw.concurrency->soft_limit, 20);
  EXPECT_EQ(rw.concurrency->hard_limit, 25);
  ASSERT_EQ(rw.tcp_checks.size(), 1u);
  EXPECT_EQ(rw.tcp_checks[0].interval, milliseconds(1000));
  EXPECT_EQ(rw.tcp_checks[0].timeout, milliseconds(500));
  EXPECT_EQ(rw.tcp_checks[0].grace_period, milliseconds(1000));
  const control::Service& ro = c.config.services[1];
  EXPECT_EQ(ro.target_session_attrs, control::TargetSessionAttrs::kPreferStandby);
  ASSERT_EQ(ro.tcp_checks.size(), 2u);
  EXPECT_EQ(ro.tcp_checks[0].interval, milliseconds(2000)) << "an integer is milliseconds";
  EXPECT_EQ(ro.tcp_checks[0].timeout, milliseconds(1000));
  EXPECT_EQ(ro.tcp_checks[0].grace_period, milliseconds(1000)) << "Fly's default";
  EXPECT_EQ(ro.tcp_checks[1].interval, milliseconds(90000));
  EXPECT_EQ(ro.tcp_checks[1].timeout, milliseconds(10000));
  EXPECT_EQ(ro.tcp_checks[1].grace_period, milliseconds(0));
}

TEST(FlyTomlRolesHealthTest, ServicesWithoutTheKeysHaveNone) {
  ParsedConfig c = MustParse(PgService(""));
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
  EXPECT_TRUE(c.config.services[0].tcp_checks.empty()) << "defaults are the route's (RoutesForApp)";
  EXPECT_FALSE(c.config.services[0].target_session_attrs);
  EXPECT_TRUE(c.config.allowed_sources.empty());
}

TEST(FlyTomlRolesHealthTest, DurationsInFlysForms) {
  struct Case {
    std::string_view value;
    milliseconds ms;
  };
  for (const Case& k :
       {Case{"\"1s\"", milliseconds(1000)}, Case{"\"500ms\"", milliseconds(500)},
        Case{"\"1m30s\"", milliseconds(90000)}, Case{"\"1.5s\"", milliseconds(1500)},
        Case{"\"1h\"", milliseconds(3600000)}, Case{"\"2m\"", milliseconds(120000)},
        Case{"\"1s250ms\"", milliseconds(1250)}, Case{"\"0.25s\"", milliseconds(250)},
        Case{"15000", milliseconds(15000)}, Case{"100", milliseconds(100)}}) {
    SCOPED_TRACE(k.value);
    ParsedConfig c =
        MustParse(PgService("  [[services.tcp_checks]]\n    interval = " + std::string(k.value) +
                            "\n    timeout = \"50ms\"\n"));
    ASSERT_EQ(c.config.services.size(), 1u);
    ASSERT_EQ(c.config.services[0].tcp_checks.size(), 1u);
    EXPECT_EQ(c.config.services[0].tcp_checks[0].interval, k.ms);
    EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
  }
}

TEST(FlyTomlRolesHealthTest, BadDurationsAreErrorsAtTheirLine) {
  const std::string kForm =
      "expected a duration: a string such as \"15s\", \"500ms\" or \"1m30s\" (units ms, s, m, h), "
      "or an integer of milliseconds";
  for (std::string_view value :
       {"\"15\"", "\"1x\"", "\"\"", "\"-1s\"", "\"+1s\"", "\"1e3s\"", "\"s\"", "\"1s2\"",
        "\"1.2.3s\"", "\" 1s\"", "\"1 s\"", "\"1us\"", "\"1d\"", "\"inf s\"", "\"nans\"", "true",
        "1.5", "[1]", "\"1S\""}) {
    SCOPED_TRACE(value);
    EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = " + std::string(value) +
                                "\n")),
              "fly.toml:8: services[0].tcp_checks[0].interval: " + kForm);
  }
  // Out of range: interval 100ms..1h, timeout 10ms..1h, grace_period 0..1h.
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = 15\n")),
            "fly.toml:8: services[0].tcp_checks[0].interval: must be from 100ms to 1h (an integer "
            "is milliseconds)");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = \"0s\"\n")),
            "fly.toml:8: services[0].tcp_checks[0].interval: must be from 100ms to 1h");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = -1000\n")),
            "fly.toml:8: services[0].tcp_checks[0].interval: must be from 100ms to 1h (an integer "
            "is milliseconds)");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = \"61m\"\n")),
            "fly.toml:8: services[0].tcp_checks[0].interval: must be from 100ms to 1h");
  EXPECT_EQ(
      ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = \"99999999999999999999h\"\n")),
      "fly.toml:8: services[0].tcp_checks[0].interval: must be from 100ms to 1h");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    timeout = 2\n")),
            "fly.toml:8: services[0].tcp_checks[0].timeout: must be from 10ms to 1h (an integer "
            "is milliseconds)");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    grace_period = \"2h\"\n")),
            "fly.toml:8: services[0].tcp_checks[0].grace_period: must be from 0ms to 1h");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    grace_period = -1\n")),
            "fly.toml:8: services[0].tcp_checks[0].grace_period: must be from 0ms to 1h (an "
            "integer is milliseconds)");
  // The second check, on its own line.
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    interval = \"1s\"\n"
                              "  [[services.tcp_checks]]\n    timeout = \"x\"\n")),
            "fly.toml:10: services[0].tcp_checks[1].timeout: " + kForm);
  EXPECT_EQ(ErrorOf(PgServiceKeys("  tcp_checks = 5\n")),
            "fly.toml:4: services[0].tcp_checks: expected [[tcp_checks]] tables");
}

TEST(FlyTomlRolesHealthTest, TcpCheckWarnings) {
  ParsedConfig c = MustParse(PgService(R"(  [[services.tcp_checks]]
    interval = "1s"
    timeout = "1s"
    restart_limit = 3
    port = 5432
)"));
  EXPECT_EQ(c.warnings,
            (std::vector<std::string>{
                "fly.toml:9: services[0].tcp_checks[0].timeout: not below the interval (1000ms >= "
                "1000ms): a machine that does not answer is found out only one check late",
                "fly.toml:11: services[0].tcp_checks[0].port: unknown key; kept as written",
                "fly.toml:10: services[0].tcp_checks[0].restart_limit: not acted on by this edge; "
                "kept as written"}))
      << AllWarnings(c);
  ASSERT_EQ(c.config.services[0].tcp_checks.size(), 1u);
  // The default timeout (2s) against a shorter interval: said at the table's line.
  ParsedConfig d = MustParse(PgService("  [[services.tcp_checks]]\n    interval = \"1s\"\n"));
  EXPECT_EQ(d.warnings, (std::vector<std::string>{
                            "fly.toml:7: services[0].tcp_checks[0].timeout: not below the "
                            "interval (2000ms >= 1000ms): a machine that does not answer is found "
                            "out only one check late"}));
  // A near miss of a key is a typo: an error, as for every other table.
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    intervall = \"1s\"\n")),
            "fly.toml:8: services[0].tcp_checks[0].intervall: unknown key; did you mean "
            "`interval`?");
  EXPECT_EQ(ErrorOf(PgService("  [[services.tcp_checks]]\n    restart_limit = \"3\"\n")),
            "fly.toml:8: services[0].tcp_checks[0].restart_limit: expected an integer");
}

TEST(FlyTomlRolesHealthTest, OneTcpChecksTableIsOneCheck) {
  ParsedConfig c = MustParse(PgService("  [services.tcp_checks]\n    interval = \"5s\"\n"));
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
  ASSERT_EQ(c.config.services[0].tcp_checks.size(), 1u);
  EXPECT_EQ(c.config.services[0].tcp_checks[0].interval, milliseconds(5000));
  EXPECT_EQ(c.config.services[0].tcp_checks[0].timeout, milliseconds(2000));
  // Inline, as flyctl also writes them.
  ParsedConfig inl = MustParse(
      PgServiceKeys("  tcp_checks = [{ interval = \"3s\", timeout = 300 }, { interval = 700 }]\n"));
  ASSERT_EQ(inl.config.services[0].tcp_checks.size(), 2u) << AllWarnings(inl);
  EXPECT_EQ(inl.config.services[0].tcp_checks[0].timeout, milliseconds(300));
  EXPECT_EQ(inl.config.services[0].tcp_checks[1].interval, milliseconds(700));
}

TEST(FlyTomlRolesHealthTest, EveryTargetSessionAttrsWord) {
  using control::TargetSessionAttrs;
  for (auto [word, value] : {std::pair{"any", TargetSessionAttrs::kAny},
                             std::pair{"read-write", TargetSessionAttrs::kReadWrite},
                             std::pair{"read-only", TargetSessionAttrs::kReadOnly},
                             std::pair{"primary", TargetSessionAttrs::kPrimary},
                             std::pair{"standby", TargetSessionAttrs::kStandby},
                             std::pair{"prefer-standby", TargetSessionAttrs::kPreferStandby}}) {
    SCOPED_TRACE(word);
    ParsedConfig c = MustParse(PgService("  [services.drawbridge]\n    target_session_attrs = \"" +
                                         std::string(word) + "\"\n"));
    EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
    EXPECT_EQ(c.config.services[0].target_session_attrs, value);
    EXPECT_STREQ(control::TargetSessionAttrsName(value), word);
  }
  // Inline and dotted forms are the same table.
  ParsedConfig dotted =
      MustParse(PgServiceKeys("  drawbridge.target_session_attrs = \"standby\"\n"));
  EXPECT_EQ(dotted.config.services[0].target_session_attrs, control::TargetSessionAttrs::kStandby);
}

TEST(FlyTomlRolesHealthTest, BadTargetSessionAttrs) {
  EXPECT_EQ(ErrorOf(PgService("  [services.drawbridge]\n    target_session_attrs = \"replica\"\n")),
            "fly.toml:8: services[0].drawbridge.target_session_attrs: unknown value \"replica\" "
            "(libpq's words: any, read-write, read-only, primary, standby, prefer-standby)");
  EXPECT_EQ(
      ErrorOf(PgService("  [services.drawbridge]\n    target_session_attrs = \"Read-Write\"\n")),
      "fly.toml:8: services[0].drawbridge.target_session_attrs: unknown value \"Read-Write\" "
      "(libpq's words: any, read-write, read-only, primary, standby, prefer-standby)");
  EXPECT_EQ(ErrorOf(PgService("  [services.drawbridge]\n    target_session_attrs = 1\n")),
            "fly.toml:8: services[0].drawbridge.target_session_attrs: expected a string");
  EXPECT_EQ(ErrorOf(PgServiceKeys("  drawbridge = \"read-write\"\n")),
            "fly.toml:4: services[0].drawbridge: expected a table");
  EXPECT_EQ(ErrorOf(PgService("  [services.drawbridge]\n    target_session_attr = \"any\"\n")),
            "fly.toml:8: services[0].drawbridge.target_session_attr: unknown key; did you mean "
            "`target_session_attrs`?");
  ParsedConfig c = MustParse(PgService("  [services.drawbridge]\n    pool_mode = \"session\"\n"));
  EXPECT_EQ(c.warnings, (std::vector<std::string>{
                            "fly.toml:8: services[0].drawbridge.pool_mode: unknown key; kept as "
                            "written"}));
}

// Roles are learned from pg_tls logins: a role target on a service whose machines' port no
// pg_tls connection reaches would never see one.
TEST(FlyTomlRolesHealthTest, RoleTargetWithoutPgTlsWarns) {
  ParsedConfig c = MustParse(R"(app = "a"
[[services]]
  internal_port = 6432
  [services.drawbridge]
    target_session_attrs = "read-write"
  [[services.ports]]
    handlers = ["tls"]
    port = 6432
)");
  EXPECT_EQ(c.warnings,
            (std::vector<std::string>{
                "fly.toml:5: services[0].drawbridge.target_session_attrs: no pg_tls port reaches "
                "internal_port 6432: the edge learns roles from the Postgres logins of pg_tls "
                "connections, so every machine's role stays unknown and any machine is used"}));
  // Another service's pg_tls port on the same internal port teaches the roles: no warning.
  ParsedConfig shared = MustParse(R"(app = "a"
[[services]]
  internal_port = 5432
  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
[[services]]
  internal_port = 5432
  [services.drawbridge]
    target_session_attrs = "standby"
  [[services.ports]]
    port = 15432
)");
  EXPECT_TRUE(shared.warnings.empty()) << AllWarnings(shared);
  // "any" asks for no role.
  ParsedConfig any = MustParse(R"(app = "a"
[[services]]
  internal_port = 6432
  drawbridge = { target_session_attrs = "any" }
  [[services.ports]]
    port = 6432
)");
  EXPECT_TRUE(any.warnings.empty()) << AllWarnings(any);
}

TEST(FlyTomlRolesHealthTest, AllowedSources) {
  ParsedConfig c = MustParse(PgService("") + R"([drawbridge]
  allowed_sources = ["192.0.2.0/24", "::1", "10.1.2.3/8"]
)");
  EXPECT_TRUE(c.warnings.empty()) << AllWarnings(c);
  EXPECT_EQ(c.config.allowed_sources,
            (std::vector<std::string>{"192.0.2.0/24", "::1", "10.1.2.3/8"}))
      << "kept as written";
  // Anywhere in the file: [drawbridge] may come after the services.
  ParsedConfig first = MustParse("app = \"a\"\ndrawbridge.allowed_sources = [\"127.0.0.1\"]\n" +
                                 PgService("").substr(std::string("app = \"a\"\n").size()));
  EXPECT_EQ(first.config.allowed_sources, std::vector<std::string>{"127.0.0.1"});
  EXPECT_TRUE(first.warnings.empty()) << AllWarnings(first);
}

TEST(FlyTomlRolesHealthTest, BadAllowedSourcesAreErrorsAtTheirLine) {
  // The line of the bad entry, in a list written over several lines.
  EXPECT_EQ(ErrorOf(PgService("") + R"([drawbridge]
  allowed_sources = [
    "10.0.0.0/8",
    "10.0.0.0/33",
  ]
)"),
            "fly.toml:10: drawbridge.allowed_sources: network \"10.0.0.0/33\": the prefix length "
            "must be a number from 0 to 32 (each entry is a network such as \"10.0.0.0/8\" or "
            "\"2001:db8::/32\", or one address)");
  EXPECT_EQ(ErrorOf(PgService("") + "[drawbridge]\n  allowed_sources = [\"office.example.com\"]\n"),
            "fly.toml:8: drawbridge.allowed_sources: network \"office.example.com\": expected an "
            "IPv4 or IPv6 address, optionally with /LENGTH (each entry is a network such as "
            "\"10.0.0.0/8\" or \"2001:db8::/32\", or one address)");
  EXPECT_EQ(ErrorOf(PgService("") + "[drawbridge]\n  allowed_sources = \"10.0.0.0/8\"\n"),
            "fly.toml:8: drawbridge.allowed_sources: expected an array of strings");
  EXPECT_EQ(ErrorOf(PgService("") + "[drawbridge]\n  allowed_sources = [\"10.0.0.0/8\", 7]\n"),
            "fly.toml:8: drawbridge.allowed_sources: expected an array of strings");
  EXPECT_EQ(ErrorOf("app = \"a\"\ndrawbridge = 1\n"), "fly.toml:2: drawbridge: expected a table");
  EXPECT_EQ(ErrorOf(PgService("") + "[drawbridge]\n  allowed_source = [\"::1\"]\n"),
            "fly.toml:8: drawbridge.allowed_source: unknown key; did you mean `allowed_sources`?");
}

TEST(FlyTomlRolesHealthTest, AllowedSourcesWarnings) {
  ParsedConfig c =
      MustParse(PgService("") + "[drawbridge]\n  allowed_sources = []\n  colour = 1\n");
  EXPECT_EQ(c.warnings,
            (std::vector<std::string>{
                "fly.toml:8: drawbridge.allowed_sources: empty: every source address may connect "
                "(remove the key to say so, or list networks to limit it)",
                "fly.toml:9: drawbridge.colour: unknown key; kept as written"}))
      << AllWarnings(c);
  EXPECT_TRUE(c.config.allowed_sources.empty());
}

}  // namespace
}  // namespace drawbridge::config
