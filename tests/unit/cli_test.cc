// Unit tests of the CLI: the flyctl-compatible renderers, settings parsing, error mapping and the
// commands themselves against a fake transport (no daemon, no sockets, a fixed clock).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/settings.h"
#include "cli/table.h"
#include "cli/usage.h"

namespace drawbridge::cli {
namespace {

// Expands TABs to 8-column stops and strips trailing spaces of each line: what a terminal shows,
// and how the guide's transcripts were pasted.
std::string AsOnTerminal(const std::string& s) {
  std::string out, line;
  auto flush = [&] {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    line.clear();
  };
  size_t col = 0;
  for (char c : s) {
    if (c == '\n') {
      flush();
      out.push_back('\n');
      col = 0;
    } else if (c == '\t') {
      size_t n = 8 - col % 8;
      line.append(n, ' ');
      col += n;
    } else {
      line.push_back(c);
      if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++col;
    }
  }
  flush();
  return out;
}

TimePoint At(const char* rfc3339) {
  auto t = ParseRfc3339(rfc3339);
  EXPECT_TRUE(t.has_value()) << rfc3339;
  return t.value_or(TimePoint{});
}

// ------------------------------------------------------------------------------ tables

TEST(RenderTable, SeedServicesTableBytes) {
  std::string got = RenderTable(
      "", {"Protocol", "Ports", "Force HTTPS"},
      {{"TCP", "5432 => 5432 [PG_TLS]", "False"}, {"TCP", "5433 => 5433 [PG_TLS]", "False"}});
  // tablewriter with NoWhiteSpace and TablePadding "\t": header cells end in TAB, the last one
  // in a space; row cells all end in TAB; a blank line closes the table.
  EXPECT_EQ(got,
            "PROTOCOL\tPORTS                \tFORCE HTTPS \n"
            "TCP     \t5432 => 5432 [PG_TLS]\tFalse      \t\n"
            "TCP     \t5433 => 5433 [PG_TLS]\tFalse      \t\n"
            "\n");
  // And on a terminal it reads exactly as the guide's transcript.
  EXPECT_EQ(AsOnTerminal(got),
            "PROTOCOL        PORTS                   FORCE HTTPS\n"
            "TCP             5432 => 5432 [PG_TLS]   False\n"
            "TCP             5433 => 5433 [PG_TLS]   False\n"
            "\n");
}

TEST(RenderTable, WidthsAreTheWidestCellOrHeader) {
  std::string got = RenderTable("", {"a", "bbbbbb"}, {{"xyz", "1"}, {"", "22"}});
  EXPECT_EQ(got, "A  \tBBBBBB \nxyz\t1     \t\n   \t22    \t\n\n");
}

TEST(RenderTable, HeadersAreUpperCasedWithUnderscoresAsSpaces) {
  EXPECT_EQ(HeaderTitle("created_at"), "CREATED AT");
  EXPECT_EQ(HeaderTitle("Created At"), "CREATED AT");
  EXPECT_EQ(HeaderTitle("ip.address"), "IP ADDRESS");
  EXPECT_EQ(HeaderTitle("v0.0.1"), "V0.0.1");  // tablewriter keeps dots between digits
  EXPECT_EQ(HeaderTitle("a.b"), "A B");
  EXPECT_EQ(HeaderTitle(" "), " ");
  std::string got = RenderTable("", {"created_at"}, {{"1s ago"}});
  EXPECT_EQ(got, "CREATED AT \n1s ago    \t\n\n");
}

TEST(RenderTable, Utf8CellsArePaddedByCodePoints) {
  std::string got = RenderTable("", {"k", "v"}, {{"✓✓", "é"}, {"abc", "x"}});
  EXPECT_EQ(got, "K  \tV \n✓✓ \té\t\nabc\tx\t\n\n");
}

TEST(RenderTable, TitleAndNoRows) {
  EXPECT_EQ(RenderTable("Services", {"Protocol"}, {}), "Services\nPROTOCOL \n\n");
  EXPECT_EQ(RenderTable("", {}, {{"a", "b"}}), "a\tb\t\n\n");
}

TEST(RenderVerticalTable, SeedImageDetails) {
  std::string got = RenderVerticalTable("Image Details", {{"Registry", "registry-1.docker.io"},
                                                          {"Repository", "flyio/postgres"},
                                                          {"Tag", "14.4"},
                                                          {"Version", "v0.0.32"}});
  EXPECT_EQ(got,
            "Image Details\n"
            "  Registry   = registry-1.docker.io  \n"
            "  Repository = flyio/postgres        \n"
            "  Tag        = 14.4                  \n"
            "  Version    = v0.0.32               \n"
            "\n");
  EXPECT_EQ(AsOnTerminal(got),
            "Image Details\n"
            "  Registry   = registry-1.docker.io\n"
            "  Repository = flyio/postgres\n"
            "  Tag        = 14.4\n"
            "  Version    = v0.0.32\n"
            "\n");
}

TEST(RenderJson, FourSpaceIndentKeyOrderAndNewline) {
  Json j = Json::parse(R"([{"b": 1, "a": [], "c": {}, "d": "x"}])");
  EXPECT_EQ(RenderJson(j),
            "[\n"
            "    {\n"
            "        \"b\": 1,\n"
            "        \"a\": [],\n"
            "        \"c\": {},\n"
            "        \"d\": \"x\"\n"
            "    }\n"
            "]\n");
  EXPECT_EQ(RenderJson(Json::array()), "[]\n");
}

// ------------------------------------------------------------------------------ time

TEST(Time, ParsesRfc3339) {
  auto base = At("2026-11-25T21:19:08Z");
  EXPECT_EQ(At("2026-11-25T21:19:08.500Z") - base, std::chrono::milliseconds(500));
  EXPECT_EQ(At("2026-11-25T22:19:08+01:00"), base);
  EXPECT_EQ(At("2026-11-25t21:19:08z"), base);
  EXPECT_EQ(std::chrono::system_clock::to_time_t(At("1970-01-01T00:00:00Z")), 0);
  for (const char* bad : {"", "2026-11-25", "2026-11-25T21:19:08", "2026-13-25T21:19:08Z",
                          "2026-11-25T21:19:08Zjunk", "2026-11-25T21:19:08.Z", "yesterday"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

TEST(Time, RelativeTimeAsFlyctl) {
  auto now = At("2026-11-25T21:19:08Z");
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  EXPECT_EQ(RelativeTime(now - milliseconds(400), now), "just now");
  EXPECT_EQ(RelativeTime(now - seconds(1), now), "1s ago");
  EXPECT_EQ(RelativeTime(now - milliseconds(59'900), now), "59s ago");
  EXPECT_EQ(RelativeTime(now - seconds(300), now), "5m0s ago");
  EXPECT_EQ(RelativeTime(now - seconds(303), now), "5m3s ago");
  EXPECT_EQ(RelativeTime(now - seconds(2 * 3600 + 7 * 60 + 5), now), "2h7m ago");
  EXPECT_EQ(RelativeTime(now - seconds(2 * 86400), now), "Nov 23 2026 21:19");
  EXPECT_EQ(RelativeTime(now + seconds(42), now), "42s");
  EXPECT_EQ(RelativeTime(now + seconds(3 * 86400), now), "Nov 28 2026 21:19");
  EXPECT_EQ(RelativeTimeOf("2026-11-25T21:19:07Z", now), "1s ago");
  EXPECT_EQ(RelativeTimeOf("not a time", now), "not a time");
  EXPECT_EQ(RelativeTimeOf("", now), "");
}

// ------------------------------------------------------------------------------ settings

TEST(Settings, ParseEndpoint) {
  auto u = ParseEndpoint("unix:/var/lib/drawbridge/admin.sock");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(u->path, "/var/lib/drawbridge/admin.sock");
  EXPECT_EQ(u->host_header, "localhost");

  auto t = ParseEndpoint("http://127.0.0.1:4281");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 4281);
  EXPECT_EQ(t->host_header, "127.0.0.1:4281");

  auto v6 = ParseEndpoint("http://[::1]:4280/");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->host_header, "[::1]:4280");

  auto bare = ParseEndpoint("localhost");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->port, 4280);
  EXPECT_EQ(bare->host_header, "localhost:4280");

  for (const char* bad : {"unix:", "https://127.0.0.1:4280", "http://127.0.0.1:99999",
                          "http://127.0.0.1:4280/v1", "::1:4280", "http://[::1", "http://:80"}) {
    auto r = ParseEndpoint(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.message().find("--api"), std::string::npos) << r.message();
    }
  }
}

TEST(Settings, DefaultDataDirAndFirstNonEmpty) {
  EXPECT_EQ(DefaultDataDir(true, "/x", "/root"), "/var/lib/drawbridge");
  EXPECT_EQ(DefaultDataDir(false, nullptr, "/home/ann"), "/home/ann/.local/share/drawbridge");
  EXPECT_EQ(DefaultDataDir(false, "", "/home/ann"), "/home/ann/.local/share/drawbridge");
  EXPECT_EQ(DefaultDataDir(false, "/home/ann/.data", "/home/ann"), "/home/ann/.data/drawbridge");
  EXPECT_EQ(FirstNonEmpty("", "env", "default"), "env");
  EXPECT_EQ(FirstNonEmpty("flag", "env", "default"), "flag");
  EXPECT_EQ(FirstNonEmpty("", "", "default"), "default");
}

TEST(Settings, AppFromFlyToml) {
  EXPECT_EQ(AppFromFlyToml("app = \"mydb\"\n"), "mydb");
  EXPECT_EQ(AppFromFlyToml("# fly.toml\n\n  app='other' # comment\nprimary_region = \"x\"\n"),
            "other");
  EXPECT_EQ(AppFromFlyToml("primary_region = \"ams\"\r\napp = \"crlf\"\r\n"), "crlf");
  EXPECT_FALSE(AppFromFlyToml("[build]\napp = \"nested\"\n").has_value());
  EXPECT_FALSE(AppFromFlyToml("application = \"x\"\n").has_value());
  EXPECT_FALSE(AppFromFlyToml("app = \"\"\n").has_value());
  EXPECT_FALSE(AppFromFlyToml("").has_value());
}

TEST(Settings, TokenFile) {
  auto dir =
      std::filesystem::temp_directory_path() / ("cli-test-token-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto missing = ReadToken(dir.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("admin.token"), std::string::npos);
  EXPECT_NE(missing.message().find("--data-dir"), std::string::npos);
  std::ofstream(dir / "admin.token") << "  s3cret\n";
  auto ok = ReadToken(dir.string());
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(*ok, "s3cret");
  std::ofstream(dir / "admin.token") << "\n";
  EXPECT_FALSE(ReadToken(dir.string()).ok());
  std::filesystem::remove_all(dir);
}

TEST(Settings, ResolveConfigPathIpAndUrlEncoding) {
  EXPECT_EQ(ResolveConfigPath(""), "fly.toml");
  EXPECT_EQ(ResolveConfigPath("./fly.toml"), "fly.toml");
  EXPECT_EQ(ResolveConfigPath("conf/"), "conf/fly.toml");
  EXPECT_EQ(ResolveConfigPath("."), "fly.toml");
  EXPECT_EQ(ResolveConfigPath("x/pg.toml"), "x/pg.toml");

  EXPECT_TRUE(IsIpAddress("127.0.10.2"));
  EXPECT_TRUE(IsIpAddress("fd00:db:1::2"));
  EXPECT_FALSE(IsIpAddress("127.0.10"));
  EXPECT_FALSE(IsIpAddress("mydb.drawbridge.test"));
  EXPECT_FALSE(IsIpAddress(""));

  EXPECT_EQ(UrlEncode("postgres://u:p@h:5432/db?x=1 2"),
            "postgres%3A%2F%2Fu%3Ap%40h%3A5432%2Fdb%3Fx%3D1%202");
  EXPECT_EQ(UrlEncode("fd00:db:1::2", /*keep_colon=*/true), "fd00:db:1::2");
}

TEST(Settings, TokenThatCannotBeReadSaysWhyNotToStartTheDaemon) {
  auto dir =
      std::filesystem::temp_directory_path() / ("cli-test-token-dir-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "admin.token");  // a directory where the file goes
  auto r = ReadToken(dir.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(),
            "cannot read the admin token " + (dir / "admin.token").string() + ": it is a directory");
  std::filesystem::remove_all(dir);
}

TEST(Settings, AccessHintNamesOwnerAndModeOfTheRefusingPart) {
  auto dir =
      std::filesystem::temp_directory_path() / ("cli-test-access-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "f") << "x";
  std::filesystem::permissions(
      dir / "f", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  // This process owns what it created: no other user to name.
  EXPECT_EQ(AccessHint((dir / "f").string()),
            "the file is yours with mode 0600, which does not let you read it");
  // A path below a file: the deepest part that exists is the one described.
  EXPECT_EQ(AccessHint((dir / "f" / "g").string()),
            "the file " + (dir / "f").string() +
                " is yours with mode 0600, which does not let you read it");
  // Someone else's file (root's, unless the tests run as root).
  if (::geteuid() != 0) {
    EXPECT_NE(AccessHint("/").find("is owned by root with mode 0755; run the command as root"),
              std::string::npos)
        << AccessHint("/");
  }
  std::filesystem::remove_all(dir);
}

// The app, or the error as text (so a failure shows it).
std::string AppOf(const base::Result<std::string>& r) {
  return r.ok() ? *r : "error: " + r.message();
}

class ResolveAppTest : public ::testing::Test {
 protected:
  ResolveAppTest()
      : dir_(std::filesystem::temp_directory_path() /
             ("cli-test-app-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::filesystem::create_directories(dir_);
  }
  ~ResolveAppTest() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(ResolveAppTest, TheNamedAppWinsOverTheFile) {
  std::string fly = Write("fly.toml", "app = \"fromfile\"\n");
  EXPECT_EQ(AppOf(ResolveApp("named", fly)), "named");
  EXPECT_EQ(AppOf(ResolveApp("", fly)), "fromfile");
  // Even when the file does not parse: -a needs no file at all.
  std::string broken = Write("broken.toml", "[[services]\n");
  EXPECT_EQ(AppOf(ResolveApp("named", broken)), "named");
}

TEST_F(ResolveAppTest, NoFileOrNoAppKeyIsNoApp) {
  EXPECT_EQ(AppOf(ResolveApp("", (dir_ / "none.toml").string())), "");
  EXPECT_EQ(AppOf(ResolveApp("", Write("noapp.toml", "primary_region = \"ams\"\n"))), "");
}

TEST_F(ResolveAppTest, ASyntaxErrorWithoutAnAppLineIsReportedWithFileAndLine) {
  std::string fly =
      Write("fly.toml", "primary_region = \"ams\"\n\n[[services]\ninternal_port = 1\n");
  auto r = ResolveApp("", fly);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.message().starts_with(fly + ":3: ")) << r.message();
  EXPECT_NE(r.message().find("-a"), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find("missing an app name"), std::string::npos) << r.message();
  // A wrongly typed app is the parser's error too, with its line.
  auto typed = ResolveApp("", Write("typed.toml", "\napp = 5\n"));
  ASSERT_FALSE(typed.ok());
  EXPECT_TRUE(typed.message().starts_with((dir_ / "typed.toml").string() + ":2: app: "))
      << typed.message();
}

TEST_F(ResolveAppTest, AFileThatDoesNotParseStillNamesItsApp) {
  // The commands that do not deploy it need only the name; deploy reports the rest.
  EXPECT_EQ(AppOf(ResolveApp("", Write("fly.toml", "app = \"mydb\"\n[[services]\n"))), "mydb");
  EXPECT_EQ(
      AppOf(ResolveApp("", Write("typo.toml", "app = \"mydb\"\n[[services]]\n  handler = 1\n"))),
      "mydb");
}

TEST(Settings, DefaultCaPath) {
  EXPECT_EQ(DefaultCaPath("/home/ann"), "/home/ann/.postgresql/drawbridge-ca.pem");
  EXPECT_EQ(DefaultCaPath(""), "./drawbridge-ca.pem");
  EXPECT_EQ(DefaultCaPath(nullptr), "./drawbridge-ca.pem");
}

// ------------------------------------------------------------------------------ usage

TEST(Usage, EditDistance) {
  EXPECT_EQ(EditDistance("", ""), 0u);
  EXPECT_EQ(EditDistance("aps", "apps"), 1u);
  EXPECT_EQ(EditDistance("apps", "aps"), 1u);
  EXPECT_EQ(EditDistance("APPS", "apps"), 0u);
  EXPECT_EQ(EditDistance("deplyo", "deploy"), 2u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("", "ips"), 3u);
}

TEST(Usage, SuggestsTheNearestCommands) {
  std::vector<CommandName> top = {{"serve", "serve"},       {"apps", "apps"},
                                  {"machines", "machines"}, {"machines", "machine"},
                                  {"ips", "ips"},           {"config", "config"},
                                  {"deploy", "deploy"},     {"services", "services"},
                                  {"image", "image"},       {"pg", "pg"},
                                  {"pg", "postgres"},       {"status", "status"},
                                  {"certs", "certs"},       {"version", "version"},
                                  {"help", "help"}};
  using V = std::vector<std::string>;
  EXPECT_EQ(SuggestCommands("aps", top), V{"apps"});
  EXPECT_EQ(SuggestCommands("confg", top), V{"config"});
  EXPECT_EQ(SuggestCommands("deplyo", top), V{"deploy"});
  EXPECT_EQ(SuggestCommands("machin", top), V{"machines"});  // via the alias, named once
  EXPECT_EQ(SuggestCommands("postgre", top), V{"pg"});
  EXPECT_EQ(SuggestCommands("Apps", top), V{"apps"});
  EXPECT_EQ(SuggestCommands("ser", top), (V{"serve", "services"}));  // prefixes
  EXPECT_EQ(SuggestCommands("x", top), V{});
  EXPECT_EQ(SuggestCommands("zzzzzz", top), V{});
  std::vector<CommandName> ips = {{"list", "list"},
                                  {"list", "ls"},
                                  {"allocate-v4", "allocate-v4"},
                                  {"allocate-v6", "allocate-v6"},
                                  {"release", "release"}};
  EXPECT_EQ(SuggestCommands("allocate-v5", ips), (V{"allocate-v4", "allocate-v6"}));
  EXPECT_EQ(SuggestCommands("lst", ips), V{"list"});
  EXPECT_EQ(SuggestCommands("allocate", ips), (V{"allocate-v4", "allocate-v6"}));
}

TEST(Usage, Messages) {
  EXPECT_EQ(UnknownCommandMessage("aps", "drawbridge", {"apps"}),
            "unknown command \"aps\" for \"drawbridge\"; did you mean \"apps\"?");
  EXPECT_EQ(UnknownCommandMessage("allocate-v5", "drawbridge ips", {"allocate-v4", "allocate-v6"}),
            "unknown command \"allocate-v5\" for \"drawbridge ips\"; did you mean "
            "\"allocate-v4\" or \"allocate-v6\"?");
  EXPECT_EQ(UnknownCommandMessage("x", "drawbridge", {"a", "b", "c"}),
            "unknown command \"x\" for \"drawbridge\"; did you mean \"a\", \"b\" or \"c\"?");
  EXPECT_EQ(UnknownCommandMessage("zz", "drawbridge", {}),
            "unknown command \"zz\" for \"drawbridge\"");
  EXPECT_EQ(MissingCommandMessage("drawbridge ips", {"list", "release"}),
            "\"drawbridge ips\" needs a command: list, release");
}

// ------------------------------------------------------------------------------ client

TEST(Client, InterpretsAnswers) {
  auto ok = Client::Interpret({200, R"({"b": 1, "a": 2})"}, "");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->dump(), R"({"b":1,"a":2})");
  EXPECT_TRUE(Client::Interpret({204, ""}, "").ok());

  auto err = Client::Interpret(
      {400, R"({"error": "fly.toml:7: services[0].ports[0].handlers: x"})"}, "hint");
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.message(), "fly.toml:7: services[0].ports[0].handlers: x");

  auto unauth = Client::Interpret({401, R"({"error": "bad token"})"}, "check the token");
  EXPECT_EQ(unauth.message(), "bad token; check the token");

  auto html = Client::Interpret({502, "<html>\nbad gateway</html>"}, "");
  EXPECT_EQ(html.message(), "HTTP 502: <html> bad gateway</html>");
  EXPECT_EQ(Client::Interpret({500, ""}, "").message(), "HTTP 500");
  EXPECT_FALSE(Client::Interpret({200, "not json"}, "").ok());
}

// The CLI exits 1 on any error; the code only follows the class of the HTTP status.
TEST(Client, ErrorCodes) {
  using base::StatusCode;
  EXPECT_EQ(Client::Interpret({200, "not json"}, "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Interpret({400, R"({"error": "x"})"}, "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Interpret({404, R"({"error": "x"})"}, "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Interpret({503, R"({"error": "x"})"}, "").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Client::Interpret({500, ""}, "").code(), StatusCode::kInternal);
  EXPECT_EQ(Client::Interpret({502, "bad gateway"}, "").code(), StatusCode::kInternal);
}

TEST(Client, RefusesABodyOverTheApiLimitWithoutSending) {
  class CountingTransport : public Transport {
   public:
    base::Result<HttpResponse> Send(std::string_view, std::string_view,
                                    std::string_view body) override {
      sent.push_back(body.size());
      return HttpResponse{200, "{}"};
    }
    std::vector<size_t> sent;
  } transport;
  Client client(&transport, "");
  // The body as encoded: {"t":"..."} is 8 bytes around the string.
  Json fits{{"t", std::string(kMaxRequestBody - 8, 'x')}};
  ASSERT_EQ(Client::Encode(fits).size(), kMaxRequestBody);
  EXPECT_TRUE(client.Post("/v1/x", fits).ok());
  Json over{{"t", std::string(kMaxRequestBody - 7, 'x')}};
  auto r = client.Post("/v1/x", over);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("1 MiB"), std::string::npos) << r.message();
  EXPECT_EQ(transport.sent, std::vector<size_t>{kMaxRequestBody});
}

// ------------------------------------------------------------------------------ commands

struct Request {
  std::string method, target, body;
};

class FakeTransport : public Transport {
 public:
  void Answer(int status, std::string body) { answers_.push_back({status, std::move(body)}); }
  base::Result<HttpResponse> Send(std::string_view method, std::string_view target,
                                  std::string_view body) override {
    requests.push_back({std::string(method), std::string(target), std::string(body)});
    if (answers_.empty()) return base::Status::Unavailable("unexpected request");
    HttpResponse r = answers_.front();
    answers_.pop_front();
    return r;
  }
  std::vector<Request> requests;

 private:
  std::deque<HttpResponse> answers_;
};

class CommandTest : public ::testing::Test {
 protected:
  CommandTest() : client_(&transport_, "") {
    ctx_.client = &client_;
    ctx_.ui.out = &out_;
    ctx_.ui.err = &err_;
    ctx_.ui.interactive = false;
    ctx_.ui.confirm = [this](std::string_view q) {
      questions_.emplace_back(q);
      return answer_;
    };
    ctx_.ui.now = [] { return At("2026-11-25T21:20:00Z"); };
  }

  FakeTransport transport_;
  Client client_;
  Context ctx_;
  std::ostringstream out_, err_;
  std::vector<std::string> questions_;
  bool answer_ = true;
};

TEST_F(CommandTest, ServicesListReadsAsTheGuide) {
  transport_.Answer(200, R"([
    {"protocol": "tcp", "internal_port": 5432, "ports": [5432], "handlers": ["pg_tls"],
     "force_https": false},
    {"protocol": "tcp", "internal_port": 5433, "ports": [5433], "handlers": ["pg_tls"],
     "force_https": false}])");
  ASSERT_TRUE(ServicesList(ctx_, "mydb").ok());
  ASSERT_EQ(transport_.requests.size(), 1u);
  EXPECT_EQ(transport_.requests[0].method, "GET");
  EXPECT_EQ(transport_.requests[0].target, "/v1/apps/mydb/services");
  EXPECT_EQ(AsOnTerminal(out_.str()),
            "PROTOCOL        PORTS                   FORCE HTTPS\n"
            "TCP             5432 => 5432 [PG_TLS]   False\n"
            "TCP             5433 => 5433 [PG_TLS]   False\n"
            "\n");
}

TEST_F(CommandTest, ServiceRowsHandlersRangesAndContinuationRows) {
  Json s = Json::parse(R"([
    {"service": 0, "protocol": "tcp", "internal_port": 8080, "ports": [80],
     "handlers": ["http"], "force_https": true},
    {"service": 0, "protocol": "tcp", "internal_port": 8080, "ports": [443],
     "handlers": ["tls", "http"], "force_https": false},
    {"service": 1, "protocol": "tcp", "internal_port": 9000, "ports": [9000, 9001, 9002],
     "handlers": []}])");
  auto rows = ServiceRows(s);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"TCP", "80 => 8080 [HTTP]", "True"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"", "443 => 8080 [TLS,HTTP]", "False"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"TCP", "9000-9002 => 9000 []", "False"}));
}

TEST_F(CommandTest, IpsListColumnsTypesAndTimes) {
  transport_.Answer(200, R"([
    {"address": "127.0.10.2", "version": "v4", "type": "v4", "region": "global",
     "created_at": "2026-11-25T21:19:59Z"},
    {"address": "127.0.10.3", "version": "v4", "type": "shared_v4", "region": "global",
     "created_at": "2026-11-25T21:15:00Z"},
    {"address": "fd00:db:1::2", "version": "v6", "type": "v6", "region": "global",
     "created_at": "2026-11-25T19:00:00Z"}])");
  ASSERT_TRUE(IpsList(ctx_, "mydb").ok());
  EXPECT_EQ(out_.str(),
            "VERSION\tIP          \tTYPE              \tREGION\tCREATED AT \n"
            "v4     \t127.0.10.2  \tpublic (dedicated)\tglobal\t1s ago    \t\n"
            "v4     \t127.0.10.3  \tpublic (shared)   \tglobal\t5m0s ago  \t\n"
            "v6     \tfd00:db:1::2\tpublic (dedicated)\tglobal\t2h20m ago \t\n"
            "\n");
}

TEST_F(CommandTest, IpsListEmptyIsTheHeaderOnly) {
  transport_.Answer(200, "[]");
  ASSERT_TRUE(IpsList(ctx_, "mydb").ok());
  EXPECT_EQ(out_.str(), "VERSION\tIP\tTYPE\tREGION\tCREATED AT \n\n");
}

TEST_F(CommandTest, IpsListJson) {
  transport_.Answer(200, R"([{"address": "127.0.10.2", "type": "v4"}])");
  ctx_.json = true;
  ASSERT_TRUE(IpsList(ctx_, "mydb").ok());
  EXPECT_EQ(out_.str(),
            "[\n    {\n        \"address\": \"127.0.10.2\",\n        \"type\": \"v4\"\n    }\n]\n");
}

TEST_F(CommandTest, AllocateV4WithoutYesFailsWhenNotInteractive) {
  auto s = IpsAllocateV4(ctx_, "mydb", /*shared=*/false, /*yes=*/false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "yes flag must be specified when not running interactively (or use --shared for a "
            "shared IPv4 address)");
  EXPECT_TRUE(transport_.requests.empty());
}

TEST_F(CommandTest, AllocateV4AsksOnATerminal) {
  ctx_.ui.interactive = true;
  answer_ = false;
  auto no = IpsAllocateV4(ctx_, "mydb", false, false);
  ASSERT_FALSE(no.ok());
  EXPECT_EQ(no.message(), "user aborted");
  ASSERT_EQ(questions_.size(), 1u);
  EXPECT_EQ(questions_[0], "Are you ok with this?");
  EXPECT_NE(err_.str().find("--shared"), std::string::npos);
  EXPECT_TRUE(transport_.requests.empty());

  answer_ = true;
  transport_.Answer(201, R"({"address": "127.0.10.2", "version": "v4", "type": "v4",
                             "region": "global", "created_at": "2026-11-25T21:20:00Z"})");
  ASSERT_TRUE(IpsAllocateV4(ctx_, "mydb", false, false).ok());
  ASSERT_EQ(transport_.requests.size(), 1u);
  EXPECT_EQ(transport_.requests[0].method, "POST");
  EXPECT_EQ(transport_.requests[0].target, "/v1/apps/mydb/ips");
  EXPECT_EQ(Json::parse(transport_.requests[0].body), Json::parse(R"({"type": "v4"})"));
  EXPECT_NE(out_.str().find("v4     \t127.0.10.2\tpublic (dedicated)"), std::string::npos)
      << out_.str();
}

TEST_F(CommandTest, AllocateSharedAndV6NeedNoQuestion) {
  transport_.Answer(201, R"({"address": "127.0.10.9", "type": "shared_v4"})");
  transport_.Answer(201, R"({"address": "fd00:db:1::9", "type": "v6"})");
  ASSERT_TRUE(IpsAllocateV4(ctx_, "mydb", /*shared=*/true, /*yes=*/false).ok());
  ASSERT_TRUE(IpsAllocateV6(ctx_, "mydb").ok());
  ASSERT_EQ(transport_.requests.size(), 2u);
  EXPECT_EQ(Json::parse(transport_.requests[0].body)["type"], "shared_v4");
  EXPECT_EQ(Json::parse(transport_.requests[1].body)["type"], "v6");
  EXPECT_TRUE(questions_.empty());
}

TEST_F(CommandTest, ReleaseValidatesEveryAddressFirst) {
  auto bad = IpsRelease(ctx_, "mydb", {"127.0.10.2", "nope"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(), "Invalid IP address: 'nope'");
  EXPECT_TRUE(transport_.requests.empty());

  transport_.Answer(200, R"({"address": "127.0.10.2", "app": "mydb", "released": true})");
  transport_.Answer(200, R"({"address": "fd00:db:1::2", "app": "mydb", "released": true})");
  ASSERT_TRUE(IpsRelease(ctx_, "mydb", {"127.0.10.2", "fd00:db:1::2"}).ok());
  ASSERT_EQ(transport_.requests.size(), 2u);
  EXPECT_EQ(transport_.requests[1].method, "DELETE");
  EXPECT_EQ(transport_.requests[1].target, "/v1/apps/mydb/ips/fd00:db:1::2");
  EXPECT_EQ(out_.str(), "Released 127.0.10.2 from mydb\nReleased fd00:db:1::2 from mydb\n");
}

TEST_F(CommandTest, ApiErrorsComeBackVerbatim) {
  transport_.Answer(404, R"({"error": "no such app: ghost"})");
  auto s = IpsList(ctx_, "ghost");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "no such app: ghost");
}

TEST_F(CommandTest, MissingAppIsFlyctlsMessage) {
  auto s = IpsList(ctx_, "");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("specify with the -a flag"), std::string::npos);
  EXPECT_TRUE(transport_.requests.empty());
}

TEST_F(CommandTest, DestroyNeedsYesWhenNotInteractive) {
  auto s = AppsDestroy(ctx_, "mydb", /*yes=*/false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--yes"), std::string::npos) << s.message();
  EXPECT_TRUE(transport_.requests.empty());
  transport_.Answer(200, R"({"name": "mydb", "destroyed": true})");
  ASSERT_TRUE(AppsDestroy(ctx_, "mydb", /*yes=*/true).ok());
  EXPECT_EQ(transport_.requests[0].target, "/v1/apps/mydb");
  EXPECT_EQ(out_.str(), "Destroyed app mydb\n");
}

class FileCommandTest : public CommandTest {
 protected:
  FileCommandTest()
      : dir_(std::filesystem::temp_directory_path() /
             ("cli-test-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::filesystem::create_directories(dir_);
  }
  ~FileCommandTest() override { std::filesystem::remove_all(dir_); }
  std::string Read(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::filesystem::path dir_;
};

TEST_F(FileCommandTest, ConfigSaveRefusesToOverwriteWithoutYes) {
  std::string path = (dir_ / "fly.toml").string();
  transport_.Answer(200, R"({"release": 0, "toml": "app = \"mydb\"\n"})");
  ASSERT_TRUE(ConfigSave(ctx_, "mydb", path, false).ok());
  EXPECT_EQ(Read(path), "app = \"mydb\"\n");
  EXPECT_EQ(out_.str(), "Wrote config file " + path + "\n");
  EXPECT_EQ(transport_.requests[0].target, "/v1/apps/mydb/config");

  std::ofstream(path) << "# mine\n";
  transport_.Answer(200, R"({"release": 1, "toml": "app = \"mydb\""})");
  auto refused = ConfigSave(ctx_, "mydb", path, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("--yes"), std::string::npos) << refused.message();
  EXPECT_EQ(Read(path), "# mine\n");

  transport_.Answer(200, R"({"release": 1, "toml": "app = \"mydb\""})");
  ASSERT_TRUE(ConfigSave(ctx_, "mydb", dir_.string(), true).ok());  // a directory: <dir>/fly.toml
  EXPECT_EQ(Read(path), "app = \"mydb\"\n");
}

TEST_F(FileCommandTest, ConfigValidatePrintsWarningsThenValid) {
  std::string path = (dir_ / "fly.toml").string();
  std::ofstream(path) << "app = \"mydb\"\n";
  transport_.Answer(200, R"({"valid": true, "warnings": ["fly.toml:9: x: not acted on"]})");
  ASSERT_TRUE(ConfigValidate(ctx_, "mydb", path).ok());
  Json body = Json::parse(transport_.requests[0].body);
  EXPECT_EQ(body["toml"], "app = \"mydb\"\n");
  EXPECT_EQ(body["file"], path);
  EXPECT_EQ(out_.str(), "✓ Configuration is valid\n");
  EXPECT_EQ(err_.str(), "Warning: fly.toml:9: x: not acted on\n");

  auto missing = ConfigValidate(ctx_, "mydb", (dir_ / "nope.toml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("nope.toml"), std::string::npos);
}

TEST_F(FileCommandTest, DeploySendsConfigAndImage) {
  std::string path = (dir_ / "fly.toml").string();
  std::ofstream(path) << "app = \"mydb\"\n[[services]]\n";
  transport_.Answer(201, R"({"release": 4, "warnings": ["w1"], "image": "flyio/postgres:15"})");
  ASSERT_TRUE(Deploy(ctx_, "mydb", path, "flyio/postgres:15").ok());
  ASSERT_EQ(transport_.requests.size(), 1u);
  EXPECT_EQ(transport_.requests[0].target, "/v1/apps/mydb/deploy");
  Json body = Json::parse(transport_.requests[0].body);
  EXPECT_EQ(body["toml"], "app = \"mydb\"\n[[services]]\n");
  EXPECT_EQ(body["file"], path);
  EXPECT_EQ(body["image"], "flyio/postgres:15");
  EXPECT_EQ(out_.str(), "Release v4 created\n");
  EXPECT_EQ(err_.str(), "Warning: w1\n");

  transport_.Answer(
      400, R"({"error": "fly.toml:7: services[0].ports[0].handlers: unknown handler \"pgtls\""})");
  auto bad = Deploy(ctx_, "mydb", path, "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(), "fly.toml:7: services[0].ports[0].handlers: unknown handler \"pgtls\"");
  EXPECT_FALSE(Json::parse(transport_.requests[1].body).contains("image"));
}

TEST_F(CommandTest, ImageShowWithUnknownsAndObservedVersions) {
  transport_.Answer(200, R"j({"registry": "", "repository": "flyio/postgres", "tag": "15",
    "version": "v4", "machines": [
      {"id": "m-3f9a2c", "server_version": "15.18 (Debian 15.18-0+deb12u1)"},
      {"id": "m-77aa01", "server_version": ""}]})j");
  ASSERT_TRUE(ImageShow(ctx_, "mydb").ok());
  EXPECT_EQ(AsOnTerminal(out_.str()),
            "Image Details\n"
            "  Registry   = N/A\n"
            "  Repository = flyio/postgres\n"
            "  Tag        = 15\n"
            "  Version    = v4\n"
            "\n"
            "Machine m-3f9a2c: PostgreSQL 15.18 (Debian 15.18-0+deb12u1)\n"
            "Machine m-77aa01: PostgreSQL server version not observed yet\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandTest, ImageShowWarnsWhenTheTagIsNotTheObservedMajor) {
  transport_.Answer(200, R"({"tag": "14", "machines": [{"id": "m-1", "server_version": "15.2"}]})");
  ASSERT_TRUE(ImageShow(ctx_, "mydb").ok());
  EXPECT_NE(err_.str().find("(15)"), std::string::npos) << err_.str();
}

TEST_F(CommandTest, ConnectionStringEncodesTheInternalUrl) {
  transport_.Answer(200, R"({"url": "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=require",
                             "host": "mydb.drawbridge.test"})");
  ASSERT_TRUE(
      PgConnectionString(ctx_, "mydb", "postgres://u:p@mydb.internal:5432/db", "/ca.pem").ok());
  EXPECT_EQ(transport_.requests[0].target,
            "/v1/apps/mydb/connection-string?internal=postgres%3A%2F%2Fu%3Ap%40mydb.internal%3A5432"
            "%2Fdb");
  // A daemon that offers no verify-full form: the one line, as before.
  EXPECT_EQ(out_.str(), "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=require\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandTest, ConnectionStringAlsoInVerifyFullWithTheCaPath) {
  std::string answer = R"({"url": "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=require",
      "verify_full_url": "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=verify-full",
      "host": "mydb.drawbridge.test"})";
  transport_.Answer(200, answer);
  ASSERT_TRUE(PgConnectionString(ctx_, "mydb", "", "/home/ann/.postgresql/drawbridge ca.pem").ok());
  EXPECT_EQ(out_.str(),
            "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=require\n"
            "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=verify-full"
            "&sslrootcert=/home/ann/.postgresql/drawbridge%20ca.pem\n");
  EXPECT_EQ(err_.str(),
            "verify-full checks the edge's certificate against the built-in CA; save it first: "
            "mkdir -p /home/ann/.postgresql && drawbridge certs ca > '/home/ann/.postgresql/"
            "drawbridge ca.pem'\n");

  // --json: one document, the verify-full form completed the same way.
  out_.str("");
  err_.str("");
  ctx_.json = true;
  transport_.Answer(200, answer);
  ASSERT_TRUE(PgConnectionString(ctx_, "mydb", "", "/ca.pem").ok());
  Json printed = Json::parse(out_.str());
  EXPECT_EQ(printed["url"], "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=require");
  EXPECT_EQ(printed["verify_full_url"],
            "postgres://u:p@mydb.drawbridge.test:5432/db?sslmode=verify-full&sslrootcert=/ca.pem");
  EXPECT_EQ(printed["sslrootcert"], "/ca.pem");
  EXPECT_EQ(printed["host"], "mydb.drawbridge.test");
  EXPECT_EQ(err_.str(), "");

  // An internal string that names its own sslrootcert keeps it.
  out_.str("");
  ctx_.json = false;
  transport_.Answer(200, R"({"url": "postgres://h:1/d?sslmode=require&sslrootcert=/mine.pem",
      "verify_full_url": "postgres://h:1/d?sslmode=verify-full&sslrootcert=/mine.pem"})");
  ASSERT_TRUE(PgConnectionString(ctx_, "mydb", "", "/ca.pem").ok());
  EXPECT_EQ(out_.str(),
            "postgres://h:1/d?sslmode=require&sslrootcert=/mine.pem\n"
            "postgres://h:1/d?sslmode=verify-full&sslrootcert=/mine.pem\n");
}

TEST_F(CommandTest, MachinesAndApps) {
  transport_.Answer(201, R"({"id": "m-3f9a2c", "address": "10.0.0.5"})");
  ASSERT_TRUE(MachinesAdd(ctx_, "mydb", {"10.0.0.5", "", "primary"}).ok());
  EXPECT_EQ(Json::parse(transport_.requests[0].body),
            Json::parse(R"({"address": "10.0.0.5", "role": "primary"})"));
  EXPECT_EQ(out_.str(), "Added machine m-3f9a2c (10.0.0.5) to mydb\n");

  out_.str("");
  transport_.Answer(200, R"([{"id": "m-3f9a2c", "address": "10.0.0.5", "region": "local",
                              "role": "", "created_at": "2026-11-25T21:19:00Z"}])");
  ASSERT_TRUE(MachinesList(ctx_, "mydb").ok());
  // A daemon that sends no health fields: those columns stay empty.
  EXPECT_EQ(AsOnTerminal(out_.str()),
            "ID              ADDRESS         HEALTH  ROLE    SESSIONS        LAST CHECK      "
            "REGION  CREATED AT\n"
            "m-3f9a2c        10.0.0.5                                                        "
            "local   1m0s ago\n\n");

  out_.str("");
  transport_.Answer(200, R"([{"name": "mydb", "created_at": "2026-11-25T21:19:58Z",
                              "machines": 1, "ips": 2, "release": 3}])");
  ASSERT_TRUE(AppsList(ctx_).ok());
  EXPECT_EQ(AsOnTerminal(out_.str()),
            "NAME    MACHINES        IPS     RELEASE CREATED AT\n"
            "mydb    1               2       v3      2s ago\n\n");
}

TEST_F(CommandTest, CertsListAndCa) {
  transport_.Answer(200, R"([{"host": "mydb.drawbridge.test", "app": "mydb", "source": "ca",
                              "issuer": "/CN=x", "names": ["mydb.drawbridge.test"],
                              "not_after": 1803418651, "created_at": "2026-11-25T21:19:00Z"}])");
  ASSERT_TRUE(CertsList(ctx_).ok());
  EXPECT_EQ(transport_.requests.back().target, "/v1/certs");
  EXPECT_EQ(AsOnTerminal(out_.str()),
            "HOST NAME               APP     SOURCE  EXPIRES                 ADDED\n"
            "mydb.drawbridge.test    mydb    ca      2027-02-23T21:37:31Z    1m0s ago\n\n");
  out_.str("");
  transport_.Answer(200, R"({"pem": "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"})");
  ASSERT_TRUE(CertsCa(ctx_).ok());
  EXPECT_EQ(out_.str(), "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n");
}

TEST_F(CommandTest, CertsAddSendsThePemFilesAndReportsRefusals) {
  std::string dir = ::testing::TempDir();
  std::ofstream(dir + "/c.pem") << "CERT";
  std::ofstream(dir + "/k.pem") << "KEY";
  transport_.Answer(400, R"({"error": "certificate for db.example.com refused: the key does not match the certificate"})");
  auto s = CertsAdd(ctx_, "db.example.com", dir + "/c.pem", dir + "/k.pem");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "certificate for db.example.com refused: the key does not match the certificate");
  auto body = Json::parse(transport_.requests.back().body);
  EXPECT_EQ(body["host"], "db.example.com");
  EXPECT_EQ(body["cert_pem"], "CERT");
  EXPECT_EQ(body["key_pem"], "KEY");
  EXPECT_FALSE(CertsAdd(ctx_, "db.example.com", dir + "/missing.pem", dir + "/k.pem").ok());
}

// ------------------------------------------------------------------------------ every command

// One command against one answer: the request it sends and what it prints without --json.
struct CommandRun {
  std::string name;
  std::function<base::Status(Context&)> command;
  std::string method, target;
  std::string answer;  // the daemon's 2xx body
  std::string out;     // stdout without --json
};

class EveryCommandTest : public FileCommandTest {
 protected:
  std::vector<CommandRun> Runs() {
    std::string fly = (dir_ / "fly.toml").string();
    std::ofstream(fly) << "app = \"mydb\"\n";
    std::ofstream(dir_ / "c.pem") << "CERT";
    std::ofstream(dir_ / "k.pem") << "KEY";
    std::string cert = (dir_ / "c.pem").string(), key = (dir_ / "k.pem").string();
    std::string ip =
        R"({"address": "127.0.10.2", "type": "v4", "created_at": "2026-11-25T21:19:59Z"})";
    std::string ip_table = RenderTable("", {"Version", "IP", "Type", "Region", "Created At"},
                                       {{"v4", "127.0.10.2", "public (dedicated)", "", "1s ago"}});
    return {
        {"apps create", [](Context& c) { return AppsCreate(c, "mydb"); }, "POST", "/v1/apps",
         R"({"name": "mydb"})", "New app created: mydb\n"},
        {"apps list", [](Context& c) { return AppsList(c); }, "GET", "/v1/apps",
         R"([{"name": "mydb", "machines": 1, "ips": 0, "release": 0,
              "created_at": "2026-11-25T21:19:58Z"}])",
         RenderTable("", {"Name", "Machines", "IPs", "Release", "Created At"},
                     {{"mydb", "1", "0", "", "2s ago"}})},
        {"apps destroy", [](Context& c) { return AppsDestroy(c, "mydb", true); }, "DELETE",
         "/v1/apps/mydb", R"({"name": "mydb", "destroyed": true})", "Destroyed app mydb\n"},
        {"machines add",
         [](Context& c) {
           return MachinesAdd(c, "mydb", {"10.0.0.5", "", ""});
         },
         "POST", "/v1/apps/mydb/machines", R"({"id": "m-1", "address": "10.0.0.5"})",
         "Added machine m-1 (10.0.0.5) to mydb\n"},
        {"machines list", [](Context& c) { return MachinesList(c, "mydb"); }, "GET",
         "/v1/apps/mydb/machines", R"([{"id": "m-1", "address": "10.0.0.5"}])",
         RenderTable("", {"ID", "Address", "Health", "Role", "Sessions", "Last Check", "Region",
                          "Created At"},
                     {{"m-1", "10.0.0.5", "", "", "", "", "", ""}})},
        {"machines remove", [](Context& c) { return MachinesRemove(c, "mydb", "m 1"); }, "DELETE",
         "/v1/apps/mydb/machines/m%201", R"({"id": "m 1", "removed": true})",
         "Removed machine m 1 from mydb\n"},
        {"ips list", [](Context& c) { return IpsList(c, "mydb"); }, "GET", "/v1/apps/mydb/ips",
         "[" + ip + "]", ip_table},
        {"ips allocate-v4", [](Context& c) { return IpsAllocateV4(c, "mydb", false, true); },
         "POST", "/v1/apps/mydb/ips", ip, ip_table},
        {"ips allocate-v6", [](Context& c) { return IpsAllocateV6(c, "mydb"); }, "POST",
         "/v1/apps/mydb/ips", ip, ip_table},
        {"ips release", [](Context& c) { return IpsRelease(c, "mydb", {"127.0.10.2"}); }, "DELETE",
         "/v1/apps/mydb/ips/127.0.10.2", R"({"address": "127.0.10.2"})",
         "Released 127.0.10.2 from mydb\n"},
        {"config save", [fly](Context& c) { return ConfigSave(c, "mydb", fly, true); }, "GET",
         "/v1/apps/mydb/config", R"({"release": 1, "toml": "app = \"mydb\""})",
         "Wrote config file " + fly + "\n"},
        {"config show", [](Context& c) { return ConfigShow(c, "mydb"); }, "GET",
         "/v1/apps/mydb/config", R"({"release": 1, "toml": "app = \"mydb\""})", "app = \"mydb\"\n"},
        {"config validate", [fly](Context& c) { return ConfigValidate(c, "mydb", fly); }, "POST",
         "/v1/apps/mydb/config/validate", R"({"valid": true})", "✓ Configuration is valid\n"},
        {"deploy", [fly](Context& c) { return Deploy(c, "mydb", fly, ""); }, "POST",
         "/v1/apps/mydb/deploy", R"({"release": 4})", "Release v4 created\n"},
        {"services list", [](Context& c) { return ServicesList(c, "mydb"); }, "GET",
         "/v1/apps/mydb/services",
         R"([{"protocol": "tcp", "internal_port": 5432, "ports": [5432],
              "handlers": ["pg_tls"]}])",
         RenderTable("", {"Protocol", "Ports", "Force HTTPS"},
                     {{"TCP", "5432 => 5432 [PG_TLS]", "False"}})},
        {"image show", [](Context& c) { return ImageShow(c, "mydb"); }, "GET",
         "/v1/apps/mydb/image", R"({"repository": "flyio/postgres", "tag": "15"})",
         RenderVerticalTable("Image Details", {{"Registry", "N/A"},
                                               {"Repository", "flyio/postgres"},
                                               {"Tag", "15"},
                                               {"Version", "N/A"}})},
        {"pg connection-string",
         [](Context& c) { return PgConnectionString(c, "mydb", "", "/ca.pem"); }, "GET",
         "/v1/apps/mydb/connection-string", R"({"url": "postgres://h/db"})", "postgres://h/db\n"},
        {"status", [](Context& c) { return ShowStatus(c, ""); }, "GET", "/v1/status",
         R"({"version": "0.1.0", "store": "sqlite", "node": "n1", "domain": "drawbridge.test",
             "routes_version": 3, "ports": [5432, 5433],
             "connections": {"active": 1, "accepted": 2}})",
         RenderVerticalTable("Drawbridge", {{"Version", "0.1.0"},
                                            {"Store", "sqlite"},
                                            {"Node", "n1"},
                                            {"Domain", "drawbridge.test"},
                                            {"Routes", "v3"},
                                            {"Ports", "5432, 5433"},
                                            {"Connections", "1 active, 2 accepted"}})},
        {"certs list", [](Context& c) { return CertsList(c); }, "GET", "/v1/certs",
         R"([{"host": "h.example", "source": "operator", "not_after": 0}])",
         RenderTable("", {"Host Name", "App", "Source", "Expires", "Added"},
                     {{"h.example", "", "operator", "1970-01-01T00:00:00Z", ""}})},
        {"certs show", [](Context& c) { return CertsShow(c, "h.example"); }, "GET",
         "/v1/certs/h.example",
         R"({"host": "h.example", "source": "ca", "issuer": "/CN=x", "names": ["h.example", "x"],
             "not_after": 0})",
         RenderVerticalTable("Certificate", {{"Hostname", "h.example"},
                                             {"App", "N/A"},
                                             {"Source", "built-in CA"},
                                             {"Issuer", "/CN=x"},
                                             {"Names", "h.example, x"},
                                             {"Expires", "1970-01-01T00:00:00Z"},
                                             {"Added", ""}})},
        {"certs add", [cert, key](Context& c) { return CertsAdd(c, "h.example", cert, key); },
         "POST", "/v1/certs", R"({"host": "h.example", "not_after": 0})",
         "Certificate for h.example installed (expires 1970-01-01T00:00:00Z); new connections "
         "use it now\n"},
        {"certs ca", [](Context& c) { return CertsCa(c); }, "GET", "/v1/ca", R"({"pem": "PEM\n"})",
         "PEM\n"},
    };
  }
};

TEST_F(EveryCommandTest, SendsItsRequestAndPrintsItsTable) {
  for (const CommandRun& run : Runs()) {
    SCOPED_TRACE(run.name);
    out_.str("");
    transport_.requests.clear();
    transport_.Answer(200, run.answer);
    auto s = run.command(ctx_);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(transport_.requests.size(), 1u);
    EXPECT_EQ(transport_.requests[0].method, run.method);
    EXPECT_EQ(transport_.requests[0].target, run.target);
    EXPECT_EQ(out_.str(), run.out);
    EXPECT_EQ(err_.str(), "");
  }
}

TEST_F(EveryCommandTest, JsonPrintsTheAnswerAsSent) {
  ctx_.json = true;
  for (const CommandRun& run : Runs()) {
    SCOPED_TRACE(run.name);
    out_.str("");
    transport_.Answer(200, run.answer);
    auto s = run.command(ctx_);
    ASSERT_TRUE(s.ok()) << s.message();
    Json answer = Json::parse(run.answer);
    if (run.name == "config save") {
      EXPECT_EQ(out_.str(), run.out);  // writes the file, with or without --json
    } else if (run.name == "ips release") {
      EXPECT_EQ(out_.str(), RenderJson(Json::array({answer})));  // one answer per address
    } else {
      EXPECT_EQ(out_.str(), RenderJson(answer));
    }
    EXPECT_EQ(err_.str(), "");
  }
}

TEST_F(EveryCommandTest, ApiErrorsComeBackVerbatimAndNothingIsPrinted) {
  for (bool json : {false, true}) {
    ctx_.json = json;
    for (const CommandRun& run : Runs()) {
      SCOPED_TRACE(run.name + (json ? " --json" : ""));
      transport_.Answer(409, R"({"error": "it went wrong"})");
      auto s = run.command(ctx_);
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.message(), "it went wrong");
      EXPECT_EQ(out_.str(), "");
      EXPECT_EQ(err_.str(), "");
    }
  }
}

TEST_F(CommandTest, ListingsRefuseAnAnswerThatIsNotAList) {
  std::vector<std::pair<std::string, std::function<base::Status(Context&)>>> listings = {
      {"apps list", [](Context& c) { return AppsList(c); }},
      {"machines list", [](Context& c) { return MachinesList(c, "mydb"); }},
      {"ips list", [](Context& c) { return IpsList(c, "mydb"); }},
      {"services list", [](Context& c) { return ServicesList(c, "mydb"); }},
      {"certs list", [](Context& c) { return CertsList(c); }},
  };
  for (const auto& [name, command] : listings) {
    SCOPED_TRACE(name);
    transport_.Answer(200, R"({"not": "a list"})");
    auto s = command(ctx_);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.message(), "the daemon's answer to " + name + " is not a list");
    EXPECT_EQ(out_.str(), "");
  }
}

TEST_F(CommandTest, AppCommandsWithoutAnAppSendNothing) {
  std::vector<std::function<base::Status(Context&)>> commands = {
      [](Context& c) { return MachinesAdd(c, "", {}); },
      [](Context& c) { return MachinesList(c, ""); },
      [](Context& c) { return MachinesRemove(c, "", ""); },
      [](Context& c) { return IpsList(c, ""); },
      [](Context& c) { return IpsAllocateV4(c, "", false, false); },
      [](Context& c) { return IpsAllocateV6(c, ""); },
      [](Context& c) { return IpsRelease(c, "", {}); },
      [](Context& c) { return ConfigSave(c, "", "", true); },
      [](Context& c) { return ConfigShow(c, ""); },
      [](Context& c) { return ConfigValidate(c, "", ""); },
      [](Context& c) { return Deploy(c, "", "", ""); },
      [](Context& c) { return ServicesList(c, ""); },
      [](Context& c) { return ImageShow(c, ""); },
      [](Context& c) { return PgConnectionString(c, "", "", "/ca.pem"); },
  };
  for (size_t i = 0; i < commands.size(); ++i) {
    SCOPED_TRACE(i);
    auto s = commands[i](ctx_);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.message(),
              "the config for your app is missing an app name, add an app field to the fly.toml "
              "file or specify with the -a flag");
  }
  EXPECT_TRUE(transport_.requests.empty());
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandTest, StatusOfAnApp) {
  std::string status = R"({"version": "0.1.0", "domain": "drawbridge.test", "routes_version": 2,
                           "connections": {"active": 0, "accepted": 0}})";
  std::string apps = R"([{"name": "other"}, {"name": "mydb", "machines": 1, "ips": 2,
                          "release": 3}])";
  std::string machines = R"([{"id": "m-1", "address": "10.0.0.5", "region": "local",
                              "role": "primary", "declared_role": "", "created_at": "",
                              "health": "healthy", "sessions": 2, "last_check": "passing",
                              "last_check_at": "2026-11-25T21:19:57Z", "connect_failures": 0,
                              "services": []},
                             {"id": "m-2", "address": "10.0.0.6", "region": "local",
                              "role": "unknown", "declared_role": "", "created_at": "",
                              "health": "unhealthy", "sessions": 0,
                              "last_check": "failing: connection refused",
                              "last_check_at": "2026-11-25T21:19:59Z", "connect_failures": 1,
                              "services": []}])";
  transport_.Answer(200, status);
  transport_.Answer(200, apps);
  transport_.Answer(200, machines);
  ASSERT_TRUE(ShowStatus(ctx_, "mydb").ok());
  EXPECT_EQ(transport_.requests[1].target, "/v1/apps");
  EXPECT_EQ(transport_.requests[2].target, "/v1/apps/mydb/machines");
  EXPECT_EQ(out_.str(),
            RenderVerticalTable("Drawbridge", {{"Version", "0.1.0"},
                                               {"Store", ""},
                                               {"Node", ""},
                                               {"Domain", "drawbridge.test"},
                                               {"Routes", "v2"},
                                               {"Ports", "none"},
                                               {"Connections", "0 active, 0 accepted"}}) +
                RenderVerticalTable("App", {{"Name", "mydb"},
                                            {"Hostname", "mydb.drawbridge.test"},
                                            {"Machines", "1"},
                                            {"IPs", "2"},
                                            {"Release", "v3"}}) +
                RenderTable("Machines",
                            {"ID", "Address", "Health", "Role", "Sessions", "Last Check"},
                            {{"m-1", "10.0.0.5", "healthy", "primary", "2", "passing (3s ago)"},
                             {"m-2", "10.0.0.6", "unhealthy", "unknown", "0",
                              "failing: connection refused (1s ago)"}}));
  // On a terminal: one line per machine with its address, a health word and its role.
  std::string shown = AsOnTerminal(out_.str());
  EXPECT_NE(shown.find("Machines\nID      ADDRESS         HEALTH          ROLE    "
                       "SESSIONS        LAST CHECK\n"
                       "m-1     10.0.0.5        healthy         primary 2               "
                       "passing (3s ago)\n"
                       "m-2     10.0.0.6        unhealthy       unknown 0               "
                       "failing: connection refused (1s ago)\n\n"),
            std::string::npos)
      << shown;
  out_.str("");
  ctx_.json = true;
  transport_.Answer(200, status);
  transport_.Answer(200, apps);
  transport_.Answer(200, machines);
  ASSERT_TRUE(ShowStatus(ctx_, "mydb").ok());
  EXPECT_EQ(out_.str(), RenderJson(Json{{"daemon", Json::parse(status)},
                                        {"app", Json::parse(apps)[1]},
                                        {"machines", Json::parse(machines)}}));
  out_.str("");
  ctx_.json = false;
  transport_.Answer(200, status);
  transport_.Answer(200, apps);
  transport_.Answer(200, "[]");
  ASSERT_TRUE(ShowStatus(ctx_, "mydb").ok());
  EXPECT_NE(out_.str().find("No machines: add one with drawbridge machines add ADDRESS -a mydb\n"),
            std::string::npos)
      << out_.str();
  out_.str("");
  transport_.Answer(200, status);
  transport_.Answer(200, apps);
  auto ghost = ShowStatus(ctx_, "ghost");
  ASSERT_FALSE(ghost.ok());
  EXPECT_EQ(ghost.message(), "app \"ghost\" not found");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CommandTest, MachinesListShowsHealthRoleSessionsAndLastCheck) {
  transport_.Answer(200, R"([
    {"id": "m-1", "address": "127.0.0.1", "region": "local", "role": "primary",
     "declared_role": "", "created_at": "2026-11-25T21:19:00Z", "health": "healthy",
     "sessions": 3, "last_check": "passing", "last_check_at": "2026-11-25T21:19:58Z",
     "connect_failures": 0, "services": [{"port": 5432, "health": "healthy", "role": "primary",
     "sessions": 3, "last_check": "passing", "last_check_at": "2026-11-25T21:19:58Z"}]},
    {"id": "m-2", "address": "127.0.0.2", "region": "local", "role": "unknown",
     "declared_role": "replica", "created_at": "2026-11-25T21:19:00Z", "health": "unhealthy",
     "sessions": 0, "last_check": "failing: connection refused",
     "last_check_at": "2026-11-25T21:19:59Z", "connect_failures": 0, "services": []},
    {"id": "m-3", "address": "127.0.0.3", "region": "local", "role": "standby",
     "declared_role": "primary", "created_at": "2026-11-25T21:19:00Z", "health": "unhealthy",
     "sessions": 1, "last_check": "passing", "last_check_at": "2026-11-25T21:19:50Z",
     "connect_failures": 2, "services": []},
    {"id": "m-4", "address": "127.0.0.4", "region": "local", "role": "unknown",
     "declared_role": "", "created_at": "2026-11-25T21:19:00Z", "health": "healthy",
     "sessions": 0, "last_check": "", "last_check_at": "", "connect_failures": 0,
     "services": []}])");
  ASSERT_TRUE(MachinesList(ctx_, "mydb").ok());
  EXPECT_EQ(transport_.requests.back().target, "/v1/apps/mydb/machines");
  EXPECT_EQ(out_.str(),
            RenderTable("", {"ID", "Address", "Health", "Role", "Sessions", "Last Check", "Region",
                             "Created At"},
                        {{"m-1", "127.0.0.1", "healthy", "primary", "3", "passing (2s ago)",
                          "local", "1m0s ago"},
                         // Nothing learned: the declared role.
                         {"m-2", "127.0.0.2", "unhealthy", "replica", "0",
                          "failing: connection refused (1s ago)", "local", "1m0s ago"},
                         // Learned beats declared; a client's failed connect since the check.
                         {"m-3", "127.0.0.3", "unhealthy", "standby", "1",
                          "connect failed; last check passing (10s ago)", "local", "1m0s ago"},
                         {"m-4", "127.0.0.4", "healthy", "unknown", "0", "none yet", "local",
                          "1m0s ago"}}));
  out_.str("");
  ctx_.json = true;
  transport_.Answer(200, R"([{"id": "m-1", "health": "healthy", "role": "primary",
                              "sessions": 3, "services": [{"port": 5432}]}])");
  ASSERT_TRUE(MachinesList(ctx_, "mydb").ok());
  auto printed = Json::parse(out_.str());
  EXPECT_EQ(printed[0]["health"], "healthy");
  EXPECT_EQ(printed[0]["role"], "primary");
  EXPECT_EQ(printed[0]["sessions"], 3);
  EXPECT_EQ(printed[0]["services"][0]["port"], 5432);
}

TEST_F(FileCommandTest, AFileTooLargeForOneRequestIsRefusedBeforeSending) {
  std::string big = (dir_ / "big.toml").string();
  std::ofstream(big) << "app = \"mydb\"\n" << std::string(2 * 1024 * 1024, '#') << "\n";
  for (bool deploy : {false, true}) {
    SCOPED_TRACE(deploy ? "deploy" : "config validate");
    auto s = deploy ? Deploy(ctx_, "mydb", big, "") : ConfigValidate(ctx_, "mydb", big);
    ASSERT_FALSE(s.ok());
    EXPECT_TRUE(s.message().starts_with(big + " is 2.0 MiB (2097166 bytes), too large to send: "))
        << s.message();
    EXPECT_NE(s.message().find("at most 1 MiB (1048576 bytes)"), std::string::npos) << s.message();
  }
  EXPECT_TRUE(transport_.requests.empty());

  // Measured as encoded: 600 KiB of characters JSON escapes (`"` is `\"`) is too much...
  std::string quotes = (dir_ / "quotes.toml").string();
  std::ofstream(quotes) << "app = \"mydb\"\n#" << std::string(600 * 1024, '"') << "\n";
  auto refused = ConfigValidate(ctx_, "mydb", quotes);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("600.0 KiB"), std::string::npos) << refused.message();
  EXPECT_TRUE(transport_.requests.empty());
  // ...while 1000 KiB that needs no escaping goes.
  std::string plain = (dir_ / "plain.toml").string();
  std::ofstream(plain) << "app = \"mydb\"\n#" << std::string(1000 * 1024, 'x') << "\n";
  transport_.Answer(200, R"({"valid": true})");
  EXPECT_TRUE(ConfigValidate(ctx_, "mydb", plain).ok());
  EXPECT_EQ(transport_.requests.size(), 1u);
}

TEST_F(FileCommandTest, AnswersThatAreNotWhatTheCommandNeeds) {
  std::string path = (dir_ / "fly.toml").string();
  std::ofstream(path) << "app = \"mydb\"\n";
  transport_.Answer(200, R"({"valid": false, "error": "fly.toml:1: app: x"})");
  EXPECT_EQ(ConfigValidate(ctx_, "mydb", path).message(), "fly.toml:1: app: x");
  transport_.Answer(200, R"({"valid": false, "warnings": ["w"]})");
  EXPECT_EQ(ConfigValidate(ctx_, "mydb", path).message(), path + ": invalid configuration");
  EXPECT_EQ(err_.str(), "Warning: w\n");
  transport_.Answer(200, R"({"host": "h"})");
  EXPECT_EQ(PgConnectionString(ctx_, "mydb", "", "/ca.pem").message(),
            "the daemon's answer has no url");
  transport_.Answer(200, R"({"release": 1})");
  EXPECT_EQ(ConfigSave(ctx_, "mydb", path, true).message(),
            "the daemon's answer to config has no toml");
  EXPECT_EQ(out_.str(), "");
}

// Each request that may change state carries an Idempotency-Key of its own; reads carry none.
TEST(Client, SendsAnIdempotencyKeyPerRequestThatChangesState) {
  class KeyTransport : public Transport {
   public:
    base::Result<HttpResponse> Send(std::string_view, std::string_view,
                                    std::string_view) override {
      return HttpResponse{500, ""};  // never called: the client sends with headers
    }
    base::Result<HttpResponse> SendWith(std::string_view method, std::string_view,
                                        std::string_view,
                                        const RequestHeaders& headers) override {
      keys.push_back(std::string(method) + " " + headers.idempotency_key);
      return HttpResponse{200, "{}"};
    }
    std::vector<std::string> keys;
  } transport;
  Client client(&transport, "", "run1");
  EXPECT_TRUE(client.Get("/v1/apps").ok());
  EXPECT_TRUE(client.Post("/v1/apps", Json{{"name", "a"}}).ok());
  EXPECT_TRUE(client.Delete("/v1/apps/a").ok());
  EXPECT_EQ(transport.keys, (std::vector<std::string>{"GET ", "POST run1-1", "DELETE run1-2"}));
  // Without a prefix given, each client draws a random one.
  KeyTransport other;
  Client c1(&other, ""), c2(&other, "");
  EXPECT_TRUE(c1.Post("/v1/x", Json::object()).ok());
  EXPECT_TRUE(c2.Post("/v1/x", Json::object()).ok());
  ASSERT_EQ(other.keys.size(), 2u);
  EXPECT_NE(other.keys[0], other.keys[1]);
  EXPECT_EQ(other.keys[0].size(), std::string("POST ").size() + 32 + 2) << other.keys[0];
}

TEST_F(CommandTest, NodesListTableAndJson) {
  std::string nodes = R"([
    {"name": "edge-a", "id": 1, "last_seen": 1795641595, "applied_revision": 42,
     "store_healthy": true, "store_error": "", "listening": [5432, 5433], "port_errors": {}},
    {"name": "edge-b", "id": 2, "last_seen": 1795641500, "applied_revision": 40,
     "store_healthy": false, "store_error": "etcd://h:1: unreachable",
     "listening": [], "port_errors": {"5432": "in use"}}])";
  transport_.Answer(200, nodes);
  ASSERT_TRUE(NodesList(ctx_).ok());
  ASSERT_EQ(transport_.requests.size(), 1u);
  EXPECT_EQ(transport_.requests[0].method, "GET");
  EXPECT_EQ(transport_.requests[0].target, "/v1/nodes");
  EXPECT_EQ(out_.str(),
            RenderTable("", {"Name", "ID", "Last Seen", "Revision", "Store", "Listening",
                             "Port Errors"},
                        {{"edge-a", "1", "5s ago", "42", "ok", "5432,5433", ""},
                         {"edge-b", "2", "1m40s ago", "40", "degraded: etcd://h:1: unreachable",
                          "", "5432: in use"}}));
  out_.str("");
  ctx_.json = true;
  transport_.Answer(200, nodes);
  ASSERT_TRUE(NodesList(ctx_).ok());
  EXPECT_EQ(Json::parse(out_.str()), Json::parse(nodes));
  ctx_.json = false;
  transport_.Answer(200, R"({"name": "x"})");
  EXPECT_FALSE(NodesList(ctx_).ok());
}

TEST_F(CommandTest, StatusShowsTheStoresHealthWhenTheDaemonReportsIt) {
  transport_.Answer(200, R"({"version": "0.1.0", "store": "etcd://h:1", "node": "edge-a",
                             "health": "degraded", "store_error": "unreachable",
                             "applied_revision": 7, "domain": "d.test", "routes_version": 3,
                             "connections": {"active": 0, "accepted": 0}})");
  ASSERT_TRUE(ShowStatus(ctx_, "").ok());
  EXPECT_EQ(out_.str(), RenderVerticalTable("Drawbridge", {{"Version", "0.1.0"},
                                                           {"Store", "etcd://h:1"},
                                                           {"Node", "edge-a"},
                                                           {"Health", "degraded: unreachable"},
                                                           {"Applied Revision", "7"},
                                                           {"Domain", "d.test"},
                                                           {"Routes", "v3"},
                                                           {"Ports", "none"},
                                                           {"Connections", "0 active, 0 accepted"}}));
  EXPECT_NE(err_.str().find("Warning: the store is not reachable"), std::string::npos) << err_.str();
}

}  // namespace
}  // namespace drawbridge::cli
