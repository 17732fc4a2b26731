// The admin API's handlers over an in-memory control plane: every failure is one JSON error
// whose HTTP status comes from its code (api/http_status.h), and input the plane cannot read
// is a 400, never a throw out of Handle().
#include "api/handlers.h"

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "api/http_status.h"
#include "store/store.h"
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
            "no certificate for nope.example.com");
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

}  // namespace
}  // namespace drawbridge::api
