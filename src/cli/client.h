// The admin API client as the commands see it: JSON in, JSON out, errors as values. The HTTP
// exchange itself is behind Transport, so commands and this file never include Asio or Beast
// (http_transport.cc does, alone) and tests drive the commands with a fake transport.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cli/table.h"

namespace drawbridge::cli {

// The admin API's limit on a request body (docs/admin-api.md: 1 MiB, else 413). The client
// refuses a bigger one itself: the daemon stops reading at the limit, and a client still
// writing would end in "Broken pipe" instead of an answer.
inline constexpr size_t kMaxRequestBody = size_t{1} << 20;

struct HttpResponse {
  int status = 0;
  std::string body;
};

// Headers a request may carry besides the transport's own (Host, Authorization, ...).
struct RequestHeaders {
  std::string idempotency_key;  // Idempotency-Key; empty: none (docs/admin-api.md)
};

// One HTTP/1.1 exchange with the daemon. Not thread-safe; one per command.
class Transport {
 public:
  virtual ~Transport() = default;
  // method "GET", "POST" or "DELETE"; target "/v1/apps?x=y"; body empty or JSON. An error means
  // no answer at all (cannot connect, timeout, garbled reply); any HTTP status is an answer.
  virtual base::Result<HttpResponse> Send(std::string_view method, std::string_view target,
                                          std::string_view body) = 0;
  // The same with `headers`; a transport that has no use for them (a test's) sends without.
  virtual base::Result<HttpResponse> SendWith(std::string_view method, std::string_view target,
                                              std::string_view body,
                                              const RequestHeaders& headers) {
    (void)headers;
    return Send(method, target, body);
  }
};

// Every request that may change state (POST, DELETE) carries an Idempotency-Key of its own:
// "<prefix>-<n>", the prefix random per client (per command run), n counting its requests, so
// that a request sent again (by a retry of the transport or a node's) is done once.
class Client {
 public:
  // transport is borrowed and must outlive the client. auth_hint is appended to 401 errors
  // after "; " (e.g. which token file was used). key_prefix: the Idempotency-Keys' prefix;
  // empty: 128 random bits in hex.
  Client(Transport* transport, std::string auth_hint, std::string key_prefix = "");

  base::Result<Json> Get(std::string_view target) { return Call("GET", target, nullptr); }
  base::Result<Json> Post(std::string_view target, const Json& body) {
    return Call("POST", target, &body);
  }
  base::Result<Json> Delete(std::string_view target) { return Call("DELETE", target, nullptr); }
  // Any of the three: method "GET", "POST" or "DELETE"; body null for none. A body that encodes
  // to more than kMaxRequestBody is refused here, before anything is sent.
  base::Result<Json> Call(std::string_view method, std::string_view target, const Json* body);

  // A request body as sent: compact JSON, invalid UTF-8 replaced (so its size is the size sent).
  static std::string Encode(const Json& body);

  // Maps one answer to a value or an error: 2xx with a JSON body (or none) is a value;
  // otherwise the API's {"error": "..."} message, or "HTTP <status>: <body>" when there is none.
  // Codes: a 2xx body that is not JSON and a 4xx are kInvalidArgument, a 503 kUnavailable, any
  // other status kInternal (by HTTP's classes: the CLI does not act on the code).
  static base::Result<Json> Interpret(const HttpResponse& response, std::string_view auth_hint);

 private:
  Transport* transport_;
  std::string auth_hint_;
  std::string key_prefix_;
  int requests_ = 0;  // requests that changed state so far: the keys' counter
};

}  // namespace drawbridge::cli
