// The admin API's handlers over an in-memory control plane: every failure is one JSON error
// whose HTTP status comes from its code (api/http_status.h), and input the plane cannot read
// is a 400, never a throw out of Handle().
#include "api/handlers.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/http_status.h"
#include "api/idempotency.h"
#include "store/store.h"
#include "tls/ca.h"
#include "tls/ca_issuer.h"

namespace drawbridge::api {
namespace {

using json = nlohmann::json;

constexpr const char* kToken = "secret";
constexpr const char* kPgTls = R"(app = "mydb"

[[services]]
  internal_port = 5432
  protocol = "tcp"

  [[services.ports]]
    handlers = ["pg_tls"]
    port = 5432
)";

TEST(HttpStatusTest, OneStatusPerCode) {
  using base::StatusCode;
  EXPECT_EQ(HttpStatusFor(StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(StatusCode::kConflict), 409);
  EXPECT_EQ(HttpStatusFor(StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusFor(static_cast<StatusCode>(99)), 500);
}

TEST(UrlDecodeTest, EscapesAndPlus) {
  EXPECT_EQ(*UrlDecode("mydb"), "mydb");
  EXPECT_EQ(*UrlDecode("fd00%3Adb%3a1%3A%3A1"), "fd00:db:1::1");
  EXPECT_EQ(*UrlDecode("a+b%2Bc"), "a b+c");
  EXPECT_EQ(*UrlDecode("%00%ff"), std::string("\0\xff", 2));
  EXPECT_EQ(*UrlDecode(""), "");
  for (const char* bad : {"%", "%4", "x%4", "%zz", "%4g", "%-1", "%+1", "% 1", "%0x"}) {
    auto r = UrlDecode(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.code(), base::StatusCode::kInvalidArgument);
  }
}

class HandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::NewMemoryStore();
    plane::PlaneOptions o;
    o.domain = "example.test";
    o.v4_pool = "127.0.10.0/29";
    o.v6_pool = "fd00:db:1::/64";
    auto p = plane::ControlPlane::Create(store_.get(), o, &issuer_);
    ASSERT_TRUE(p.ok()) << p.message();
    plane_ = std::move(*p);
    ctx_.plane = plane_.get();
    ctx_.token = kToken;
  }

  Response Call(const std::string& method, const std::string& target, const json& body = {}) {
    Request req;
    req.method = method;
    req.target = target;
    req.body = body.is_null() ? "" : body.dump();
    req.unix_socket = true;
    req.authorization = std::string("Bearer ") + kToken;
    return Handle(ctx_, req);
  }

  // The status, and that the body is {"error": "<non-empty>"}; returns the message.
  std::string ExpectError(const Response& r, int status) {
    EXPECT_EQ(r.status, status) << r.body;
    json j = json::parse(r.body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].is_string()) << r.body;
    std::string message = j.is_object() ? j.value("error", "") : "";
    EXPECT_FALSE(message.empty()) << r.body;
    return message;
  }

  tls::CaCertIssuer issuer_{std::nullopt};  // no CA: issues nothing, as before
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<plane::ControlPlane> plane_;
  ApiContext ctx_;
};

TEST_F(HandlersTest, AnImageTagBeyondIntIsA400) {
  ASSERT_EQ(Call("POST", "/v1/apps", {{"name", "mydb"}}).status, 201);
  Response r = Call("POST", "/v1/apps/mydb/deploy",
                    {{"toml", kPgTls}, {"image", "flyio/postgres:99999999999"}});
  std::string message = ExpectError(r, 400);
  EXPECT_NE(message.find("flyio/postgres:99999999999"), std::string::npos) << message;
  EXPECT_NE(message.find("out of range"), std::string::npos) << message;
  EXPECT_EQ(Call("GET", "/v1/apps/mydb/releases").body, "[]") << "nothing was deployed";
  EXPECT_EQ(Call("POST", "/v1/apps/mydb/deploy", {{"toml", kPgTls}, {"image", "flyio/postgres:15"}})
                .status,
            201);
}

TEST_F(HandlersTest, CodesPickTheStatus) {
  ASSERT_EQ(Call("POST", "/v1/apps", {{"name", "mydb"}}).status, 201);
  ExpectError(Call("POST", "/v1/apps", {{"name", "mydb"}}), 409);
  ExpectError(Call("POST", "/v1/apps", {{"name", "Bad_Name"}}), 400);
  ExpectError(Call("GET", "/v1/apps/ghost/machines"), 404);
  ExpectError(Call("DELETE", "/v1/apps/mydb/ips/not-an-ip"), 400);
  ExpectError(Call("GET", "/v1/nothing"), 404);
  ExpectError(Call("PUT", "/v1/apps"), 405);
  ExpectError(Call("POST", "/v1/apps", json::array()), 400);
  ExpectError(Call("POST", "/v1/apps", {{"name", 5}}), 400);
  EXPECT_EQ(ExpectError(Call("GET", "/v1/apps/my%zzdb/machines"), 400),
            "bad escape in the app name");
  EXPECT_EQ(ExpectError(Call("GET", "/v1/certs/nope.example.com"), 404),
            "certificate for \"nope.example.com\" not found");
  ASSERT_EQ(Call("POST", "/v1/apps/mydb/deploy", {{"toml", kPgTls}}).status, 201);
  std::string port = ExpectError(
      Call("GET", "/v1/apps/mydb/connection-string?internal=postgres%3A%2F%2Fu%40h%3A99999999999"),
      400);
  EXPECT_NE(port.find("out of range"), std::string::npos) << port;
  Request foreign;
  foreign.method = "GET";
  foreign.target = "/v1/apps";
  foreign.has_origin = true;
  ExpectError(Handle(ctx_, foreign), 403);
  foreign.has_origin = false;
  foreign.unix_socket = true;
  ExpectError(Handle(ctx_, foreign), 401);
}

// GET /v1/apps/{app}/machines with the edge's view: each machine gets its health, learned role,
// sessions and last check, per port under "services" and summed up for the machine; the
// operator's role moves to "declared_role". Without the callback the answer is as before.
TEST_F(HandlersTest, MachinesCarryTheEdgesHealthView) {
  ASSERT_EQ(Call("POST", "/v1/apps", {{"name", "mydb"}}).status, 201);
  ASSERT_EQ(Call("POST", "/v1/apps/mydb/machines", {{"address", "127.0.0.1"}, {"role", "main"}})
                .status,
            201);
  ASSERT_EQ(Call("POST", "/v1/apps/mydb/machines", {{"address", "127.0.0.2"}}).status, 201);
  ASSERT_EQ(Call("POST", "/v1/apps/mydb/machines", {{"address", "127.0.0.3"}}).status, 201);

  json plain = json::parse(Call("GET", "/v1/apps/mydb/machines").body);
  ASSERT_EQ(plain.size(), 3u);
  for (const auto& m : plain) {
    EXPECT_EQ(m["role"], m["address"] == "127.0.0.1" ? "main" : "");
    EXPECT_FALSE(m.contains("health"));
    EXPECT_FALSE(m.contains("declared_role"));
  }

  std::vector<std::string> asked;
  ctx_.machine_health = [&asked](const std::string& app) {
    asked.push_back(app);
    using health::Board;
    using health::Role;
    std::vector<Board::Status> out;
    // 127.0.0.1: 5432 primary and passing, 5433 not learned, failing.
    out.push_back({{"mydb", "127.0.0.1", 5432}, true, Role::kPrimary, 2, "passing",
                   "2026-11-25T21:19:58Z", 0});
    out.push_back({{"mydb", "127.0.0.1", 5433}, false, Role::kUnknown, 1,
                   "failing: connection refused", "2026-11-25T21:19:50Z", 3});
    // 127.0.0.2: a standby found down by a client's connect after a passing check.
    out.push_back({{"mydb", "127.0.0.2", 5432}, false, Role::kStandby, 0, "passing",
                   "2026-11-25T21:19:59Z", 1});
    // 127.0.0.3: not known to the board (no release yet): healthy, nothing checked.
    return out;
  };
  Response r = Call("GET", "/v1/apps/mydb/machines");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(asked, std::vector<std::string>{"mydb"});
  json list = json::parse(r.body);
  ASSERT_EQ(list.size(), 3u) << r.body;
  std::map<std::string, json> got;  // by address: the list is in machine id order
  for (const auto& m : list) got[m["address"].get<std::string>()] = m;
  const json& a = got["127.0.0.1"];
  EXPECT_EQ(a["address"], "127.0.0.1");
  EXPECT_EQ(a["health"], "unhealthy");  // one port failing
  EXPECT_EQ(a["role"], "primary");
  EXPECT_EQ(a["declared_role"], "main");
  EXPECT_EQ(a["sessions"], 3);
  EXPECT_EQ(a["last_check"], "failing: connection refused");  // a failing check is shown first
  EXPECT_EQ(a["last_check_at"], "2026-11-25T21:19:50Z");
  EXPECT_EQ(a["connect_failures"], 3);
  ASSERT_EQ(a["services"].size(), 2u);
  EXPECT_EQ(a["services"][0], json::parse(R"({"port": 5432, "health": "healthy",
      "role": "primary", "sessions": 2, "last_check": "passing",
      "last_check_at": "2026-11-25T21:19:58Z", "connect_failures": 0})"));
  EXPECT_EQ(a["services"][1]["health"], "unhealthy");
  EXPECT_EQ(a["services"][1]["role"], "unknown");
  const json& b = got["127.0.0.2"];
  EXPECT_EQ(b["health"], "unhealthy");
  EXPECT_EQ(b["role"], "standby");
  EXPECT_EQ(b["declared_role"], "");
  EXPECT_EQ(b["last_check"], "passing");
  EXPECT_EQ(b["connect_failures"], 1);
  const json& c = got["127.0.0.3"];
  EXPECT_EQ(c["health"], "healthy");
  EXPECT_EQ(c["role"], "unknown");
  EXPECT_EQ(c["sessions"], 0);
  EXPECT_EQ(c["last_check"], "");
  EXPECT_EQ(c["last_check_at"], "");
  EXPECT_EQ(c["services"], json::array());
  // The board is not asked for an app that does not exist.
  ExpectError(Call("GET", "/v1/apps/ghost/machines"), 404);
  EXPECT_EQ(asked.size(), 1u);
}

// DELETE /v1/certs/{host}: 200 with what went, a JSON 404 when there is none, a JSON 400 (not
// an exception out of Handle) for a name that cannot be one.
TEST_F(HandlersTest, DeleteACertificate) {
  auto dir = std::filesystem::temp_directory_path() /
             ("drawbridge-handlers-certs-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto ca = tls::EnsureCa(dir.string(), "Test CA");
  ASSERT_TRUE(ca.ok()) << ca.message();
  auto leaf = tls::IssueLeaf(*ca, {"db.example.com"}, 30);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(leaf.ok());
  ASSERT_EQ(Call("POST", "/v1/certs",
                 {{"host", "db.example.com"}, {"cert_pem", leaf->cert_pem}, {"key_pem", leaf->key_pem}})
                .status,
            201);
  Response removed = Call("DELETE", "/v1/certs/DB.example.com");
  EXPECT_EQ(removed.status, 200) << removed.body;
  EXPECT_EQ(json::parse(removed.body), (json{{"host", "db.example.com"}, {"removed", true}}));
  EXPECT_EQ(Call("GET", "/v1/certs").body, "[]");
  EXPECT_EQ(ExpectError(Call("DELETE", "/v1/certs/db.example.com"), 404),
            "certificate for \"db.example.com\" not found");
  EXPECT_EQ(ExpectError(Call("DELETE", "/v1/certs/db%ffexample.com"), 400),
            "invalid host name \"db\\xffexample.com\"");
  EXPECT_EQ(ExpectError(Call("GET", "/v1/certs/db%ffexample.com"), 400),
            "invalid host name \"db\\xffexample.com\"");
  EXPECT_EQ(ExpectError(Call("DELETE", "/v1/certs/db%zz"), 400), "bad escape in the host name");
  ExpectError(Call("PUT", "/v1/certs/db.example.com"), 405);
  ExpectError(Call("DELETE", "/v1/certs"), 405);
}

// HTTP makes the auth scheme and host names case-insensitive (RFC 9110 11.1, 4.2.3); the
// token itself is compared exactly.
TEST_F(HandlersTest, AuthSchemeAndHostNameIgnoreCaseTheTokenDoesNot) {
  auto call = [&](const std::string& host, const std::string& authorization) {
    Request req;
    req.method = "GET";
    req.target = "/v1/apps";
    req.host = host;
    req.authorization = authorization;
    return Handle(ctx_, req);
  };
  const std::string good = std::string("Bearer ") + kToken;
  for (const char* host : {"localhost", "LOCALHOST", "LocalHost:4280", "127.0.0.1:1", "[::1]",
                           "[::1]:65535"}) {
    EXPECT_EQ(call(host, good).status, 200) << host;
  }
  for (const char* host : {"LOCALHOST.evil.example", "EVIL.EXAMPLE", "LOCALHOST:", "LOCALHOST:x",
                           "Localhost:123456", "LOCALHOSTEVIL.example"}) {
    ExpectError(call(host, good), 403);
  }
  for (std::string scheme : {"Bearer", "bearer", "BEARER", "bEaReR"}) {
    EXPECT_EQ(call("localhost", scheme + " " + kToken).status, 200) << scheme;
    EXPECT_EQ(call("localhost", scheme + "   " + kToken).status, 200) << scheme;  // 1*SP
  }
  for (std::string bad : {"Bearer SECRET", "Bearer Secret", "Bearer secre", "Bearer secrets",
                          "Bearer secret ", "Bearersecret", "Bearer", "Bearer ", "bearer",
                          "Bearer\tsecret", "Basic secret", "xBearer secret", " Bearer secret",
                          "Bear secret", "", "secret"}) {
    EXPECT_EQ(ExpectError(call("localhost", bad), 401),
              "missing or wrong bearer token (see admin.token in the data directory)")
        << bad;
  }
}

// ------------------------------------------------------------------------------ Idempotency-Key

class IdempotencyTest : public HandlersTest {
 protected:
  void SetUp() override {
    HandlersTest::SetUp();
    records_ = std::make_shared<RequestRecords>(store_.get(), [this] { return now_; });
    ctx_.requests = records_;
    ASSERT_EQ(Call("POST", "/v1/apps", {{"name", "mydb"}}).status, 201);
  }

  Response Keyed(const std::string& key, const std::string& method, const std::string& target,
                 const json& body = {}) {
    Request req;
    req.method = method;
    req.target = target;
    req.body = body.is_null() ? "" : body.dump();
    req.unix_socket = true;
    req.authorization = std::string("Bearer ") + kToken;
    req.idempotency_key = key;
    return Handle(ctx_, req);
  }

  size_t Ips() { return json::parse(Call("GET", "/v1/apps/mydb/ips").body).size(); }
  size_t Records() { return store_->List(kRequestsPrefix)->size(); }

  int64_t now_ = 1'800'000'000;
  std::shared_ptr<RequestRecords> records_;
};

TEST_F(IdempotencyTest, ARetryWithTheSameKeyIsAnsweredAndNotDoneAgain) {
  Response first = Keyed("k-1", "POST", "/v1/apps/mydb/ips", {{"type", "v4"}});
  ASSERT_EQ(first.status, 201) << first.body;
  Response again = Keyed("k-1", "POST", "/v1/apps/mydb/ips", {{"type", "v4"}});
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(Ips(), 1u);
  // Another key, or none: done again.
  ASSERT_EQ(Keyed("k-2", "POST", "/v1/apps/mydb/ips", {{"type", "v4"}}).status, 201);
  ASSERT_EQ(Call("POST", "/v1/apps/mydb/ips", {{"type", "v4"}}).status, 201);
  EXPECT_EQ(Ips(), 3u);
  // A 4xx answer is an answer: kept and replayed.
  Response taken = Keyed("k-3", "POST", "/v1/apps", {{"name", "mydb"}});
  ExpectError(taken, 409);
  ASSERT_TRUE(plane_->apps().Destroy("mydb").ok());
  EXPECT_EQ(Keyed("k-3", "POST", "/v1/apps", {{"name", "mydb"}}).body, taken.body);
  EXPECT_EQ(Call("GET", "/v1/apps").body, "[]") << "the replay created nothing";
  // GETs are not recorded.
  EXPECT_EQ(Keyed("k-4", "GET", "/v1/apps").status, 200);
  EXPECT_EQ(Records(), 3u);
}

TEST_F(IdempotencyTest, TheSameKeyOnAnotherRequestIsRefused) {
  ASSERT_EQ(Keyed("k", "POST", "/v1/apps/mydb/ips", {{"type", "v4"}}).status, 201);
  std::string message =
      ExpectError(Keyed("k", "POST", "/v1/apps/mydb/ips", {{"type", "v6"}}), 422);
  EXPECT_NE(message.find("POST /v1/apps/mydb/ips"), std::string::npos) << message;
  ExpectError(Keyed("k", "DELETE", "/v1/apps/mydb"), 422);
  EXPECT_EQ(Ips(), 1u);
  ExpectError(Keyed("two words", "POST", "/v1/apps", {{"name", "x"}}), 400);
  ExpectError(Keyed(std::string(256, 'k'), "POST", "/v1/apps", {{"name", "x"}}), 400);
}

TEST_F(IdempotencyTest, PendingIsAConflictUntilItIsStale) {
  Request req;
  req.method = "POST";
  req.target = "/v1/apps/mydb/ips";
  req.body = R"({"type":"v4"})";
  req.idempotency_key = "k";
  Response inner;
  Response outer = records_->Once(req, [&] {
    inner = records_->Once(req, [] { return Response{201, "{}"}; });
    return Response{201, R"({"done":1})"};
  });
  EXPECT_EQ(outer.status, 201);
  ExpectError(inner, 409);
  EXPECT_EQ(records_->Once(req, [] { return Response{201, "{}"}; }).body, R"({"done":1})");

  // A pending record left by a daemon that died mid-request is taken over once stale.
  req.idempotency_key = "stale";
  bool ran = false;
  records_->Once(req, [&] {
    now_ += kPendingTakeover.count() + 1;
    Response taken = records_->Once(req, [&] {
      ran = true;
      return Response{201, R"({"second":1})"};
    });
    EXPECT_EQ(taken.status, 201);
    return Response{201, R"({"first":1})"};
  });
  EXPECT_TRUE(ran);
  EXPECT_EQ(records_->Once(req, [] { return Response{201, "{}"}; }).body, R"({"second":1})")
      << "the first one's late answer does not overwrite the one that took over";
}

TEST_F(IdempotencyTest, FailuresAreNotKeptAndRecordsExpire) {
  Request req;
  req.method = "POST";
  req.target = "/v1/x";
  req.idempotency_key = "k";
  int runs = 0;
  auto unavailable = [&] {
    ++runs;
    return Response{503, R"({"error":"store down"})"};
  };
  EXPECT_EQ(records_->Once(req, unavailable).status, 503);
  EXPECT_EQ(records_->Once(req, unavailable).status, 503);
  EXPECT_EQ(runs, 2) << "a 5xx answer is not replayed: the retry does the work";
  EXPECT_EQ(Records(), 0u);
  auto ok = [&] {
    ++runs;
    return Response{200, "{}"};
  };
  EXPECT_EQ(records_->Once(req, ok).status, 200);
  EXPECT_EQ(records_->Once(req, ok).status, 200);
  EXPECT_EQ(runs, 3);
  now_ += std::chrono::seconds(kRecordLifetime).count();
  EXPECT_EQ(records_->Once(req, ok).status, 200);
  EXPECT_EQ(runs, 4) << "an expired record is not replayed";
  // Expired records of other keys are swept on a later request.
  req.idempotency_key = "other";
  EXPECT_EQ(records_->Once(req, ok).status, 200);
  EXPECT_EQ(Records(), 2u);
  now_ += std::chrono::seconds(kRecordLifetime).count() + 1;
  req.idempotency_key = "late";
  EXPECT_EQ(records_->Once(req, ok).status, 200);
  EXPECT_EQ(Records(), 1u) << "only the newest record is left";
}

}  // namespace
}  // namespace drawbridge::api
