#include "config/fly_toml.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

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
