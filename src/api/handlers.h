// The admin API's request handling (docs/admin-api.md), apart from HTTP plumbing: a parsed
// request in, a status and a JSON body out. Every error body is {"error": "..."}.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "health/board.h"
#include "plane/plane.h"

namespace drawbridge::api {

struct Request {
  std::string method;  // "GET", "POST", "DELETE"
  std::string target;  // path and query, e.g. "/v1/apps/mydb/ips"
  std::string body;
  std::string host;           // Host header; empty on the Unix socket
  bool has_origin = false;    // an Origin header was sent (a browser)
  std::string authorization;  // Authorization header
  bool unix_socket = false;
  // Idempotency-Key header (idempotency.h); empty when none was sent.
  std::string idempotency_key;
};

struct Response {
  int status = 200;
  std::string body;  // JSON, unless content_type says otherwise
  std::string content_type = "application/json";
};

class RequestRecords;  // idempotency.h

struct ApiContext {
  drawbridge::plane::ControlPlane* plane = nullptr;
  std::string token;
  // Extra fields for GET /v1/status (connections, routes version, ...).
  std::function<std::string()> status_json;
  // GET /metrics: Prometheus text.
  std::function<std::string()> metrics_text;
  // Called by the server after each request that may have changed state (any method but GET
  // and HEAD), before answering: returns once the change is served (bounded by the callee).
  std::function<void()> wait_published;
  // Of the given public ports, those the edge is not listening on, with the reason (port
  // number -> error); a deploy's answer carries them. Unset: none reported.
  std::function<std::map<int, std::string>(const std::vector<int>& ports)> port_errors;
  // GET /v1/nodes: every node of the fleet as a JSON array (a lone daemon: itself). Unset: [].
  std::function<std::string()> nodes_json;
  // Where requests that change state and carry an Idempotency-Key are recorded; unset: the
  // header is ignored.
  std::shared_ptr<RequestRecords> requests;
  // The edge's view of an app's machines on this node (health, learned role, open sessions,
  // last check), one entry per (address, internal port); GET /v1/apps/{app}/machines adds it
  // to each machine. Unset: those fields are absent.
  std::function<std::vector<health::Board::Status>(const std::string& app)> machine_health;
};

Response Handle(const ApiContext& ctx, const Request& req);

// Percent-decoding of one path segment or query value ('+' is a space); kInvalidArgument on an
// escape that is not '%' and two hex digits.
base::Result<std::string> UrlDecode(std::string_view in);

}  // namespace drawbridge::api
