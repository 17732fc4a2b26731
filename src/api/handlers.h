// The admin API's request handling (docs/admin-api.md), apart from HTTP plumbing: a parsed
// request in, a status and a JSON body out. Every error body is {"error": "..."}.
#pragma once

#include <functional>
#include <string>

#include "control/plane.h"

namespace drawbridge::api {

struct Request {
  std::string method;  // "GET", "POST", "DELETE"
  std::string target;  // path and query, e.g. "/v1/apps/mydb/ips"
  std::string body;
  std::string host;           // Host header; empty on the Unix socket
  bool has_origin = false;    // an Origin header was sent (a browser)
  std::string authorization;  // Authorization header
  bool unix_socket = false;
};

struct Response {
  int status = 200;
  std::string body;  // JSON, unless content_type says otherwise
  std::string content_type = "application/json";
};

struct ApiContext {
  control::ControlPlane* plane = nullptr;
  std::string token;
  // Extra fields for GET /v1/status (connections, routes version, ...).
  std::function<std::string()> status_json;
  // GET /metrics: Prometheus text.
  std::function<std::string()> metrics_text;
};

Response Handle(const ApiContext& ctx, const Request& req);

// Percent-decoding of one path segment or query value; false on bad escapes.
bool UrlDecode(const std::string& in, std::string* out);

}  // namespace drawbridge::api
