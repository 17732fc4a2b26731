#include "cli/client.h"

namespace drawbridge::cli {
namespace {

constexpr size_t kMaxErrorBody = 300;

std::string OneLine(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, kMaxErrorBody)) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

base::Result<Json> Client::Interpret(const HttpResponse& response, std::string_view auth_hint) {
  Json parsed = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  bool ok = response.status >= 200 && response.status < 300;
  if (ok) {
    if (response.body.find_first_not_of(" \t\r\n") == std::string::npos) return Json();
    if (parsed.is_discarded()) {
      return base::Status::Error("the daemon sent a reply that is not JSON (HTTP " +
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
  return base::Status::Error(std::move(message));
}

base::Result<Json> Client::Call(std::string_view method, std::string_view target,
                                const Json* body) {
  std::string payload =
      body ? body->dump(-1, ' ', false, Json::error_handler_t::replace) : std::string();
  auto response = transport_->Send(method, target, payload);
  if (!response.ok()) return response.status();
  return Interpret(*response, auth_hint_);
}

}  // namespace drawbridge::cli
