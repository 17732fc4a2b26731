#include "api/handlers.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace drawbridge::api {

namespace {

using json = nlohmann::json;
using control::ErrorCode;

Response Json(int status, const json& body) { return {status, body.dump()}; }
Response Fail(int status, const std::string& message) {
  return Json(status, {{"error", message}});
}

int StatusOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalid: return 400;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kConflict: return 409;
    default: return 500;
  }
}

template <typename T>
Response FromError(const control::Outcome<T>& o) {
  return Fail(StatusOf(o.error.code), o.error.message);
}

json ToJson(const control::AppInfo& a) {
  return {{"name", a.name}, {"created_at", a.created_at}, {"machines", a.machines},
          {"ips", a.ips}, {"release", a.release}};
}
json ToJson(const control::MachineInfo& m) {
  return {{"id", m.id}, {"address", m.address}, {"region", m.region}, {"role", m.role},
          {"created_at", m.created_at}};
}
json ToJson(const control::IpInfo& ip) {
  return {{"address", ip.address}, {"version", ip.version}, {"type", ip.type},
          {"region", ip.region}, {"created_at", ip.created_at}};
}
json ToJson(const control::ReleaseInfo& r) {
  return {{"version", r.version}, {"image", r.image}, {"file", r.file},
          {"created_at", r.created_at}};
}

json ToJson(const control::CertInfo& c) {
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
bool HostAllowed(const std::string& host) {
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

// Reads a JSON object body; `error` set on failure.
json Body(const Request& req, Response* error) {
  json j = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) *error = Fail(400, "the body must be a JSON object");
  return j;
}

// A string field, or "" when absent; a non-string is an error.
bool Field(const json& j, const char* name, std::string* out, Response* error) {
  if (!j.contains(name) || j[name].is_null()) return true;
  if (!j[name].is_string()) {
    *error = Fail(400, std::string("\"") + name + "\" must be a string");
    return false;
  }
  *out = j[name].get<std::string>();
  return true;
}

Response AppRoutes(const ApiContext& ctx, const Request& req, const std::string& app,
                   const std::vector<std::string>& rest, const std::string& query) {
  auto& plane = *ctx.plane;
  const std::string& m = req.method;
  std::string sub = rest.empty() ? "" : rest[0];
  Response err{0, ""};

  if (sub.empty()) {
    if (m != "DELETE") return Fail(405, "use DELETE to destroy an app");
    auto r = plane.DestroyApp(app);
    if (!r.ok()) return FromError(r);
    return Json(200, {{"name", app}, {"destroyed", true}});
  }
  if (sub == "machines" && rest.size() == 1) {
    if (m == "GET") {
      auto r = plane.ListMachines(app);
      return r.ok() ? Json(200, ToJsonList(*r.value)) : FromError(r);
    }
    if (m == "POST") {
      json b = Body(req, &err);
      std::string address, region, role;
      if (err.status || !Field(b, "address", &address, &err) || !Field(b, "region", &region, &err) ||
          !Field(b, "role", &role, &err)) {
        return err.status ? err : Fail(400, "bad body");
      }
      if (address.empty()) return Fail(400, "\"address\" is required");
      auto r = plane.AddMachine(app, address, region, role);
      return r.ok() ? Json(201, ToJson(*r.value)) : FromError(r);
    }
  }
  if (sub == "machines" && rest.size() == 2 && m == "DELETE") {
    auto r = plane.RemoveMachine(app, rest[1]);
    return r.ok() ? Json(200, {{"id", rest[1]}, {"removed", true}}) : FromError(r);
  }
  if (sub == "ips" && rest.size() == 1) {
    if (m == "GET") {
      auto r = plane.ListIps(app);
      return r.ok() ? Json(200, ToJsonList(*r.value)) : FromError(r);
    }
    if (m == "POST") {
      json b = Body(req, &err);
      std::string type;
      if (err.status || !Field(b, "type", &type, &err)) return err;
      auto r = plane.AllocateIp(app, type);
      return r.ok() ? Json(201, ToJson(*r.value)) : FromError(r);
    }
  }
  if (sub == "ips" && rest.size() == 2 && m == "DELETE") {
    std::string address;
    if (!UrlDecode(rest[1], &address)) return Fail(400, "bad escape in the address");
    auto r = plane.ReleaseIp(app, address);
    return r.ok() ? Json(200, {{"address", r.value->address}, {"app", app}, {"released", true}})
                  : FromError(r);
  }
  if (sub == "config" && rest.size() == 1 && m == "GET") {
    auto r = plane.CurrentConfig(app);
    return r.ok() ? Json(200, {{"release", r.value->version}, {"toml", r.value->toml}})
                  : FromError(r);
  }
  if ((sub == "config" && rest.size() == 2 && rest[1] == "validate" && m == "POST") ||
      (sub == "deploy" && rest.size() == 1 && m == "POST")) {
    json b = Body(req, &err);
    std::string toml, file, image;
    if (err.status || !Field(b, "toml", &toml, &err) || !Field(b, "file", &file, &err) ||
        !Field(b, "image", &image, &err)) {
      return err;
    }
    if (!b.contains("toml")) return Fail(400, "\"toml\" is required");
    if (file.empty()) file = "fly.toml";
    if (sub == "config") {
      auto r = plane.Validate(app, toml, file);
      return r.ok() ? Json(200, {{"valid", true}, {"warnings", *r.value}}) : FromError(r);
    }
    auto r = plane.Deploy(app, toml, file, image);
    return r.ok() ? Json(201, {{"release", r.value->release},
                               {"warnings", r.value->warnings},
                               {"image", image}})
                  : FromError(r);
  }
  if (sub == "releases" && rest.size() == 1 && m == "GET") {
    auto r = plane.ListReleases(app);
    return r.ok() ? Json(200, ToJsonList(*r.value)) : FromError(r);
  }
  if (sub == "services" && rest.size() == 1 && m == "GET") {
    auto r = plane.CurrentServices(app);
    if (!r.ok()) return FromError(r);
    json out = json::array();
    for (size_t i = 0; i < r.value->services.size(); ++i) {
      const auto& s = r.value->services[i];
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
    auto r = plane.Image(app);
    if (!r.ok()) return FromError(r);
    json machines = json::array();
    for (const auto& m : r.value->machines) {
      machines.push_back({{"id", m.id}, {"address", m.address}, {"server_version", m.server_version}});
    }
    return Json(200, {{"registry", r.value->registry},
                      {"repository", r.value->repository},
                      {"tag", r.value->tag},
                      {"version", r.value->version},
                      {"machines", machines}});
  }
  if (sub == "connection-string" && rest.size() == 1 && m == "GET") {
    std::string internal;
    if (query.rfind("internal=", 0) == 0 && !UrlDecode(query.substr(9), &internal)) {
      return Fail(400, "bad escape in \"internal\"");
    }
    auto r = plane.ConnectionString(app, internal);
    return r.ok() ? Json(200, {{"url", *r.value}, {"host", app + "." + plane.options().domain}})
                  : FromError(r);
  }
  return Fail(404, "no such endpoint: " + m + " " + req.target);
}

}  // namespace

bool UrlDecode(const std::string& in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      *out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size() || !isxdigit(static_cast<unsigned char>(in[i + 1])) ||
          !isxdigit(static_cast<unsigned char>(in[i + 2]))) {
        return false;
      }
      *out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      *out += in[i];
    }
  }
  return true;
}

Response Handle(const ApiContext& ctx, const Request& req) {
  // DNS rebinding and cross-site requests: only local host names, never from a browser page.
  if (req.has_origin) return Fail(403, "requests with an Origin header are refused");
  if (!req.unix_socket && !HostAllowed(req.host)) {
    return Fail(403, "Host \"" + req.host + "\" is not allowed; use localhost");
  }
  const std::string expected = "Bearer " + ctx.token;
  if (req.authorization.size() != expected.size() ||
      CRYPTO_memcmp(req.authorization.data(), expected.data(), expected.size()) != 0) {
    return Fail(401, "missing or wrong bearer token (see admin.token in the data directory)");
  }
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
  if (parts.size() < 2 || parts[0] != "v1") return Fail(404, "no such endpoint: " + path);
  if (parts[1] == "status" && parts.size() == 2 && req.method == "GET") {
    json status = json::parse(ctx.status_json ? ctx.status_json() : "{}", nullptr, false);
    if (status.is_discarded()) status = json::object();
    return Json(200, status);
  }
  if (parts[1] == "ca" && parts.size() == 2 && req.method == "GET") {
    auto r = ctx.plane->CaPem();
    return r.ok() ? Json(200, {{"pem", *r.value}}) : FromError(r);
  }
  if (parts[1] == "certs") {
    if (parts.size() == 2 && req.method == "GET") {
      auto r = ctx.plane->ListCerts();
      return r.ok() ? Json(200, ToJsonList(*r.value)) : FromError(r);
    }
    if (parts.size() == 2 && req.method == "POST") {
      Response err{0, ""};
      json b = Body(req, &err);
      std::string host, cert, key;
      if (err.status || !Field(b, "host", &host, &err) || !Field(b, "cert_pem", &cert, &err) ||
          !Field(b, "key_pem", &key, &err)) {
        return err;
      }
      if (host.empty() || cert.empty() || key.empty()) {
        return Fail(400, "\"host\", \"cert_pem\" and \"key_pem\" are required");
      }
      auto r = ctx.plane->AddCert(host, cert, key);
      return r.ok() ? Json(201, ToJson(*r.value)) : FromError(r);
    }
    if (parts.size() == 3 && req.method == "GET") {
      std::string host;
      if (!UrlDecode(parts[2], &host)) return Fail(400, "bad escape in the host name");
      auto r = ctx.plane->ShowCert(host);
      if (!r.ok()) return FromError(r);
      json j = ToJson(*r.value);
      j["cert_pem"] = r.value->cert_pem;
      return Json(200, j);
    }
    return Fail(405, "use GET or POST on /v1/certs");
  }
  if (parts[1] != "apps") return Fail(404, "no such endpoint: " + path);
  if (parts.size() == 2) {
    if (req.method == "GET") {
      auto r = ctx.plane->ListApps();
      return r.ok() ? Json(200, ToJsonList(*r.value)) : FromError(r);
    }
    if (req.method == "POST") {
      Response err{0, ""};
      json b = Body(req, &err);
      std::string name;
      if (err.status || !Field(b, "name", &name, &err)) return err;
      if (name.empty()) return Fail(400, "\"name\" is required");
      auto r = ctx.plane->CreateApp(name);
      return r.ok() ? Json(201, ToJson(*r.value)) : FromError(r);
    }
    return Fail(405, "use GET or POST on /v1/apps");
  }
  std::string app;
  if (!UrlDecode(parts[2], &app)) return Fail(400, "bad escape in the app name");
  return AppRoutes(ctx, req, app, std::vector<std::string>(parts.begin() + 3, parts.end()), query);
}

}  // namespace drawbridge::api
