#include "api/handlers.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/http_status.h"
#include "api/idempotency.h"
#include "base/parse_int.h"

namespace drawbridge::api {

namespace {

using base::Status;
using json = nlohmann::json;

// A path segment or stored value that is not UTF-8 (a percent escape such as %ff) is written
// with U+FFFD in its place: JSON carries only UTF-8, and a throwing dump would end the request
// with no answer.
Response Json(int status, const json& body) {
  return {status, body.dump(-1, ' ', false, json::error_handler_t::replace)};
}
// Every failure the control plane or the request itself carries: its code picks the status.
Response Fail(const Status& s) { return Json(HttpStatusFor(s.code()), {{"error", s.message()}}); }
// HTTP's own refusals (401, 403, 405), which no operation returns.
Response Refuse(int status, const std::string& message) {
  return Json(status, {{"error", message}});
}
Response BadRequest(std::string message) {
  return Fail(Status::InvalidArgument(std::move(message)));
}
Response NoEndpoint(const std::string& what) {
  return Fail(Status::NotFound("no such endpoint: " + what));
}

json ToJson(const plane::AppInfo& a) {
  return {{"name", a.name}, {"created_at", a.created_at}, {"machines", a.machines},
          {"ips", a.ips}, {"release", a.release}};
}
json ToJson(const plane::MachineInfo& m) {
  return {{"id", m.id}, {"address", m.address}, {"region", m.region}, {"role", m.role},
          {"created_at", m.created_at}};
}

// A machine with what the edge knows of it (docs/admin-api.md, "Machines"): "role" becomes the
// role the edge learned (the operator's moves to "declared_role"), and each internal port the
// machine serves gets an entry under "services". The machine is unhealthy when any port is; its
// role is the first one learned, its sessions and connect failures the sum; its last check is
// a failing one if any fails, else the most recent.
json WithHealth(const plane::MachineInfo& m, const std::vector<health::Board::Status>& board) {
  json out = ToJson(m);
  out["declared_role"] = m.role;
  bool healthy = true;
  std::string role = health::RoleName(health::Role::kUnknown);
  int64_t sessions = 0;
  uint64_t failures = 0;
  const health::Board::Status* shown = nullptr;  // whose last check the machine shows
  json services = json::array();
  for (const auto& s : board) {
    if (s.key.address != m.address) continue;
    healthy = healthy && s.healthy;
    if (role == health::RoleName(health::Role::kUnknown)) role = health::RoleName(s.role);
    sessions += s.sessions;
    failures += s.connect_failures;
    bool failing = s.last_check.starts_with("failing");
    bool shown_failing = shown && shown->last_check.starts_with("failing");
    if (!s.last_check.empty() &&
        (!shown || (failing && !shown_failing) ||
         (failing == shown_failing && s.last_check_at > shown->last_check_at))) {
      shown = &s;
    }
    services.push_back({{"port", s.key.port},
                        {"health", s.healthy ? "healthy" : "unhealthy"},
                        {"role", health::RoleName(s.role)},
                        {"sessions", s.sessions},
                        {"last_check", s.last_check},
                        {"last_check_at", s.last_check_at},
                        {"connect_failures", s.connect_failures}});
  }
  out["role"] = role;
  out["health"] = healthy ? "healthy" : "unhealthy";
  out["sessions"] = sessions;
  out["last_check"] = shown ? shown->last_check : "";
  out["last_check_at"] = shown ? shown->last_check_at : "";
  out["connect_failures"] = failures;
  out["services"] = std::move(services);
  return out;
}
json ToJson(const plane::IpInfo& ip) {
  return {{"address", ip.address}, {"version", ip.version}, {"type", ip.type},
          {"region", ip.region}, {"created_at", ip.created_at}};
}
json ToJson(const plane::ReleaseInfo& r) {
  return {{"version", r.version}, {"image", r.image}, {"file", r.file},
          {"created_at", r.created_at}};
}

json ToJson(const plane::CertInfo& c) {
  return {{"host", c.host}, {"app", c.app}, {"source", c.source}, {"issuer", c.issuer},
          {"names", c.names}, {"not_after", c.not_after}, {"created_at", c.created_at}};
}

template <typename T>
json ToJsonList(const std::vector<T>& items) {
  json out = json::array();
  for (const auto& i : items) out.push_back(ToJson(i));
  return out;
}

// A loopback name, optionally followed by `:` and a port: nothing else may follow the name.
// Host names are case-insensitive (RFC 3986 3.2.2), so `LOCALHOST` passes too.
bool HostAllowed(const std::string& raw_host) {
  std::string host = raw_host;
  for (char& c : host) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (std::string_view name : {"localhost", "127.0.0.1", "[::1]"}) {
    if (!host.starts_with(name)) continue;
    std::string_view rest = std::string_view(host).substr(name.size());
    if (rest.empty()) return true;
    rest.remove_prefix(1);  // must be the `:`
    return host[name.size()] == ':' && !rest.empty() && rest.size() <= 5 &&
           std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; });
  }
  return false;
}

// `Authorization: <scheme> <token>` (RFC 9110 11.4): the scheme "Bearer" in any case, one or
// more spaces, then exactly the token, compared in constant time for a given length.
bool BearerTokenMatches(std::string_view authorization, const std::string& token) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = authorization[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  std::string_view rest = authorization.substr(kScheme.size());
  size_t start = rest.find_first_not_of(' ');
  if (start == 0 || start == std::string_view::npos) return false;
  rest.remove_prefix(start);
  return !token.empty() && rest.size() == token.size() &&
         CRYPTO_memcmp(rest.data(), token.data(), token.size()) == 0;
}

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

// A JSON object body and its string `fields`, in order: an absent or null field leaves its
// string empty; the first that is not a string is the error.
base::Result<json> Body(const Request& req,
                        std::initializer_list<std::pair<const char*, std::string*>> fields) {
  json j = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument("the body must be a JSON object");
  }
  for (const auto& [name, out] : fields) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) {
      return Status::InvalidArgument(std::string("\"") + name + "\" must be a string");
    }
    *out = it->get<std::string>();
  }
  return j;
}

// A percent-decoded path segment; `what` names it in the error.
base::Result<std::string> Segment(const std::string& raw, const std::string& what) {
  auto decoded = UrlDecode(raw);
  if (!decoded.ok()) return Status::InvalidArgument("bad escape in " + what);
  return decoded;
}

Response AppRoutes(const ApiContext& ctx, const Request& req, const std::string& app,
                   const std::vector<std::string>& rest, const std::string& query) {
  auto& plane = *ctx.plane;
  const std::string& m = req.method;
  std::string sub = rest.empty() ? "" : rest[0];

  if (sub.empty()) {
    if (m != "DELETE") return Refuse(405, "use DELETE to destroy an app");
    if (auto s = plane.apps().Destroy(app); !s.ok()) return Fail(s);
    return Json(200, {{"name", app}, {"destroyed", true}});
  }
  if (sub == "machines" && rest.size() == 1) {
    if (m == "GET") {
      auto r = plane.machines().List(app);
      if (!r.ok()) return Fail(r.status());
      if (!ctx.machine_health) return Json(200, ToJsonList(*r));
      auto board = ctx.machine_health(app);
      json out = json::array();
      for (const auto& machine : *r) out.push_back(WithHealth(machine, board));
      return Json(200, out);
    }
    if (m == "POST") {
      std::string address, region, role;
      auto b = Body(req, {{"address", &address}, {"region", &region}, {"role", &role}});
      if (!b.ok()) return Fail(b.status());
      if (address.empty()) return BadRequest("\"address\" is required");
      auto r = plane.machines().Add(app, address, region, role);
      return r.ok() ? Json(201, ToJson(*r)) : Fail(r.status());
    }
  }
  if (sub == "machines" && rest.size() == 2 && m == "DELETE") {
    auto s = plane.machines().Remove(app, rest[1]);
    return s.ok() ? Json(200, {{"id", rest[1]}, {"removed", true}}) : Fail(s);
  }
  if (sub == "ips" && rest.size() == 1) {
    if (m == "GET") {
      auto r = plane.ips().List(app);
      return r.ok() ? Json(200, ToJsonList(*r)) : Fail(r.status());
    }
    if (m == "POST") {
      std::string type;
      if (auto b = Body(req, {{"type", &type}}); !b.ok()) return Fail(b.status());
      auto r = plane.ips().Allocate(app, type);
      return r.ok() ? Json(201, ToJson(*r)) : Fail(r.status());
    }
  }
  if (sub == "ips" && rest.size() == 2 && m == "DELETE") {
    auto address = Segment(rest[1], "the address");
    if (!address.ok()) return Fail(address.status());
    auto r = plane.ips().Release(app, *address);
    return r.ok() ? Json(200, {{"address", r->address}, {"app", app}, {"released", true}})
                  : Fail(r.status());
  }
  if (sub == "config" && rest.size() == 1 && m == "GET") {
    auto r = plane.releases().CurrentConfig(app);
    return r.ok() ? Json(200, {{"release", r->version}, {"toml", r->toml}}) : Fail(r.status());
  }
  if ((sub == "config" && rest.size() == 2 && rest[1] == "validate" && m == "POST") ||
      (sub == "deploy" && rest.size() == 1 && m == "POST")) {
    std::string toml, file, image;
    auto b = Body(req, {{"toml", &toml}, {"file", &file}, {"image", &image}});
    if (!b.ok()) return Fail(b.status());
    if (!b->contains("toml")) return BadRequest("\"toml\" is required");
    if (file.empty()) file = "fly.toml";
    if (sub == "config") {
      auto r = plane.releases().Validate(app, toml, file);
      return r.ok() ? Json(200, {{"valid", true}, {"warnings", *r}}) : Fail(r.status());
    }
    auto r = plane.releases().Deploy(app, toml, file, image);
    if (!r.ok()) return Fail(r.status());
    json answer = {{"release", r->release}, {"warnings", r->warnings}, {"image", image}};
    // The release is kept either way; the answer says which of its public ports the edge
    // could not open (it keeps trying them). Waiting here first makes the edge's listeners
    // those of this release (the server waits again after Handle(), at no cost).
    if (ctx.port_errors) {
      if (ctx.wait_published) ctx.wait_published();
      std::vector<int> ports;
      if (auto services = plane.releases().CurrentServices(app); services.ok()) {
        for (const auto& s : services->services) {
          for (const auto& p : s.ports) {
            for (int port : p.PublicPorts()) ports.push_back(port);
          }
        }
      }
      json errors = json::array();
      for (const auto& [port, error] : ctx.port_errors(ports)) {
        errors.push_back({{"port", port}, {"error", error}});
      }
      answer["port_errors"] = errors;
    }
    return Json(201, answer);
  }
  if (sub == "releases" && rest.size() == 1 && m == "GET") {
    auto r = plane.releases().List(app);
    return r.ok() ? Json(200, ToJsonList(*r)) : Fail(r.status());
  }
  if (sub == "services" && rest.size() == 1 && m == "GET") {
    auto r = plane.releases().CurrentServices(app);
    if (!r.ok()) return Fail(r.status());
    json out = json::array();
    for (size_t i = 0; i < r->services.size(); ++i) {
      const auto& s = r->services[i];
      for (const auto& p : s.ports) {
        for (int port : p.PublicPorts()) {
          out.push_back({{"service", i},
                         {"protocol", s.protocol},
                         {"internal_port", s.internal_port},
                         {"ports", {port}},
                         {"handlers", p.handlers},
                         {"force_https", p.force_https.value_or(false)}});
        }
      }
    }
    return Json(200, out);
  }
  if (sub == "image" && rest.size() == 1 && m == "GET") {
    auto r = plane.releases().Image(app);
    if (!r.ok()) return Fail(r.status());
    json machines = json::array();
    for (const auto& m : r->machines) {
      machines.push_back({{"id", m.id}, {"address", m.address}, {"server_version", m.server_version}});
    }
    return Json(200, {{"registry", r->registry},
                      {"repository", r->repository},
                      {"tag", r->tag},
                      {"version", r->version},
                      {"machines", machines}});
  }
  if (sub == "connection-string" && rest.size() == 1 && m == "GET") {
    std::string internal;
    if (query.rfind("internal=", 0) == 0) {
      auto decoded = Segment(query.substr(9), "\"internal\"");
      if (!decoded.ok()) return Fail(decoded.status());
      internal = std::move(*decoded);
    }
    auto r = plane.releases().ConnectionString(app, internal);
    if (!r.ok()) return Fail(r.status());
    json out = {{"url", *r}, {"host", app + "." + plane.options().domain}};
    // The same string checking the certificate and its name (the plane writes sslmode=require
    // first); the client adds sslrootcert, the path of its copy of GET /v1/ca.
    if (size_t at = r->rfind("?sslmode=require"); at != std::string::npos) {
      out["verify_full_url"] = std::string(*r).replace(at, 16, "?sslmode=verify-full");
    }
    return Json(200, out);
  }
  return NoEndpoint(m + " " + req.target);
}

}  // namespace

base::Result<std::string> UrlDecode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      auto byte = base::ParseInt(in.substr(i + 1, 2), 0, 255, 16);
      // Exactly two hex digits: ParseInt alone would take "%f" at the end or a '-' sign.
      if (i + 2 >= in.size() || !byte.ok() || in[i + 1] == '-') {
        return Status::InvalidArgument("bad percent escape");
      }
      out += static_cast<char>(*byte);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

namespace {

// An authorized request to its endpoint.
Response Route(const ApiContext& ctx, const Request& req) {
  std::string path = req.target, query;
  if (auto q = path.find('?'); q != std::string::npos) {
    query = path.substr(q + 1);
    path = path.substr(0, q);
  }
  if (path == "/metrics" && req.method == "GET") {
    Response r{200, ctx.metrics_text ? ctx.metrics_text() : "", "text/plain; version=0.0.4"};
    return r;
  }
  auto parts = Split(path);
  if (parts.size() < 2 || parts[0] != "v1") return NoEndpoint(path);
  if (parts[1] == "status" && parts.size() == 2 && req.method == "GET") {
    json status = json::parse(ctx.status_json ? ctx.status_json() : "{}", nullptr, false);
    if (status.is_discarded()) status = json::object();
    return Json(200, status);
  }
  if (parts[1] == "nodes" && parts.size() == 2) {
    if (req.method != "GET") return Refuse(405, "use GET on /v1/nodes");
    json nodes = json::parse(ctx.nodes_json ? ctx.nodes_json() : "[]", nullptr, false);
    if (nodes.is_discarded()) nodes = json::array();
    return Json(200, nodes);
  }
  if (parts[1] == "ca" && parts.size() == 2 && req.method == "GET") {
    auto r = ctx.plane->certificates().CaPem();
    return r.ok() ? Json(200, {{"pem", *r}}) : Fail(r.status());
  }
  if (parts[1] == "certs") {
    if (parts.size() == 2 && req.method == "GET") {
      auto r = ctx.plane->certificates().List();
      return r.ok() ? Json(200, ToJsonList(*r)) : Fail(r.status());
    }
    if (parts.size() == 2 && req.method == "POST") {
      std::string host, cert, key;
      auto b = Body(req, {{"host", &host}, {"cert_pem", &cert}, {"key_pem", &key}});
      if (!b.ok()) return Fail(b.status());
      if (host.empty() || cert.empty() || key.empty()) {
        return BadRequest("\"host\", \"cert_pem\" and \"key_pem\" are required");
      }
      auto r = ctx.plane->certificates().Add(host, cert, key);
      return r.ok() ? Json(201, ToJson(*r)) : Fail(r.status());
    }
    if (parts.size() == 3 && req.method == "GET") {
      auto host = Segment(parts[2], "the host name");
      if (!host.ok()) return Fail(host.status());
      auto r = ctx.plane->certificates().Show(*host);
      if (!r.ok()) return Fail(r.status());
      json j = ToJson(*r);
      j["cert_pem"] = r->cert_pem;
      return Json(200, j);
    }
    if (parts.size() == 3 && req.method == "DELETE") {
      auto host = Segment(parts[2], "the host name");
      if (!host.ok()) return Fail(host.status());
      auto r = ctx.plane->certificates().Remove(*host);
      return r.ok() ? Json(200, {{"host", r->host}, {"removed", true}}) : Fail(r.status());
    }
    if (parts.size() == 3) return Refuse(405, "use GET or DELETE on /v1/certs/HOST");
    return Refuse(405, "use GET or POST on /v1/certs");
  }
  if (parts[1] != "apps") return NoEndpoint(path);
  if (parts.size() == 2) {
    if (req.method == "GET") {
      auto r = ctx.plane->apps().List();
      return r.ok() ? Json(200, ToJsonList(*r)) : Fail(r.status());
    }
    if (req.method == "POST") {
      std::string name;
      if (auto b = Body(req, {{"name", &name}}); !b.ok()) return Fail(b.status());
      if (name.empty()) return BadRequest("\"name\" is required");
      auto r = ctx.plane->apps().Create(name);
      return r.ok() ? Json(201, ToJson(*r)) : Fail(r.status());
    }
    return Refuse(405, "use GET or POST on /v1/apps");
  }
  auto app = Segment(parts[2], "the app name");
  if (!app.ok()) return Fail(app.status());
  return AppRoutes(ctx, req, *app, std::vector<std::string>(parts.begin() + 3, parts.end()), query);
}

}  // namespace

Response Handle(const ApiContext& ctx, const Request& req) {
  // DNS rebinding and cross-site requests: only local host names, never from a browser page.
  if (req.has_origin) return Refuse(403, "requests with an Origin header are refused");
  if (!req.unix_socket && !HostAllowed(req.host)) {
    return Refuse(403, "Host \"" + req.host + "\" is not allowed; use localhost");
  }
  if (!BearerTokenMatches(req.authorization, ctx.token)) {
    return Refuse(401, "missing or wrong bearer token (see admin.token in the data directory)");
  }
  // A request that may change state, sent with a key: done at most once per key.
  if (ctx.requests && !req.idempotency_key.empty() && req.method != "GET" &&
      req.method != "HEAD") {
    return ctx.requests->Once(req, [&] { return Route(ctx, req); });
  }
  return Route(ctx, req);
}

}  // namespace drawbridge::api
