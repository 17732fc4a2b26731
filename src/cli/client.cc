#include "cli/client.h"

#include <cstdio>
#include <random>

namespace drawbridge::cli {
namespace {

constexpr size_t kMaxErrorBody = 300;

std::string OneLine(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, kMaxErrorBody)) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The code of an API error answer, by HTTP's own classes: the CLI prints only the message and
// exits 1 whatever the code, so it does not restate the API's table (api/http_status.cc).
base::Status ErrorFor(int http_status, std::string message) {
  if (http_status == 503) return base::Status::Unavailable(std::move(message));
  if (http_status >= 400 && http_status < 500) {
    return base::Status::InvalidArgument(std::move(message));  // refused as sent
  }
  return base::Status::Internal(std::move(message));
}

// 128 bits from the system's entropy source, as 32 hex digits.
std::string RandomHex() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i) {
    char word[9];
    std::snprintf(word, sizeof word, "%08x", static_cast<unsigned>(rd()));
    out += word;
  }
  return out;
}

}  // namespace

Client::Client(Transport* transport, std::string auth_hint, std::string key_prefix)
    : transport_(transport),
      auth_hint_(std::move(auth_hint)),
      key_prefix_(key_prefix.empty() ? RandomHex() : std::move(key_prefix)) {}

base::Result<Json> Client::Interpret(const HttpResponse& response, std::string_view auth_hint) {
  Json parsed = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  bool ok = response.status >= 200 && response.status < 300;
  if (ok) {
    if (response.body.find_first_not_of(" \t\r\n") == std::string::npos) return Json();
    if (parsed.is_discarded()) {
      return base::Status::InvalidArgument("the daemon sent a reply that is not JSON (HTTP " +
                                           std::to_string(response.status) + ")");
    }
    return parsed;
  }
  std::string message;
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error") &&
      parsed["error"].is_string()) {
    message = parsed["error"].get<std::string>();
  } else if (response.body.empty()) {
    message = "HTTP " + std::to_string(response.status);
  } else {
    message = "HTTP " + std::to_string(response.status) + ": " + OneLine(response.body);
  }
  if (response.status == 401 && !auth_hint.empty()) {
    message += "; " + std::string(auth_hint);
  }
  return ErrorFor(response.status, std::move(message));
}

std::string Client::Encode(const Json& body) {
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

base::Result<Json> Client::Call(std::string_view method, std::string_view target,
                                const Json* body) {
  std::string payload = body ? Encode(*body) : std::string();
  if (payload.size() > kMaxRequestBody) {
    return base::Status::InvalidArgument("the request is " + std::to_string(payload.size()) +
                                         " bytes, more than the admin API takes (1 MiB, " +
                                         std::to_string(kMaxRequestBody) +
                                         " bytes); nothing was sent");
  }
  RequestHeaders headers;
  if (method != "GET" && method != "HEAD") {
    headers.idempotency_key = key_prefix_ + "-" + std::to_string(++requests_);
  }
  auto response = transport_->SendWith(method, target, payload, headers);
  if (!response.ok()) return response.status();
  return Interpret(*response, auth_hint_);
}

}  // namespace drawbridge::cli
