// Boost 1.74's Asio needs <utility> before its headers (std::exchange in awaitable.hpp).
// clang-format off
#include <utility>
// clang-format on

#include "cli/http_transport.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace drawbridge::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::system::error_code;

constexpr size_t kMaxAnswer = 16 * 1024 * 1024;

// The state of one exchange; callbacks fill it in, the caller reads it after ioc.run().
struct Exchange {
  http::request<http::string_body> request;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  error_code ec;
  const char* stage = "connecting";
  bool done = false;
};

template <typename Stream>
void WriteThenRead(Stream& stream, Exchange& ex) {
  ex.stage = "sending the request";
  http::async_write(stream, ex.request, [&stream, &ex](error_code ec, size_t) {
    if (ec) {
      ex.ec = ec;
      return;
    }
    ex.stage = "reading the answer";
    http::async_read(stream, ex.buffer, ex.parser, [&ex](error_code ec, size_t) {
      if (ec) {
        ex.ec = ec;
        return;
      }
      ex.done = true;
    });
  });
}

class HttpTransport : public Transport {
 public:
  HttpTransport(Endpoint endpoint, std::string token, std::chrono::milliseconds timeout)
      : endpoint_(std::move(endpoint)), token_(std::move(token)), timeout_(timeout) {}

  base::Result<HttpResponse> Send(std::string_view method, std::string_view target,
                                  std::string_view body) override {
    return SendWith(method, target, body, RequestHeaders{});
  }

  base::Result<HttpResponse> SendWith(std::string_view method, std::string_view target,
                                      std::string_view body,
                                      const RequestHeaders& headers) override {
    Exchange ex;
    ex.parser.body_limit(kMaxAnswer);
    http::verb verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
    if (verb == http::verb::unknown) {
      return base::Status::InvalidArgument("unknown HTTP method " + std::string(method));
    }
    ex.request.method(verb);
    ex.request.target(beast::string_view(target.data(), target.size()));
    ex.request.version(11);
    ex.request.set(http::field::host, endpoint_.host_header);
    ex.request.set(http::field::authorization, "Bearer " + token_);
    ex.request.set(http::field::user_agent, "drawbridge-cli/" DRAWBRIDGE_VERSION);
    ex.request.set(http::field::accept, "application/json");
    if (!headers.idempotency_key.empty()) {
      ex.request.set("Idempotency-Key", headers.idempotency_key);
    }
    if (!body.empty() || verb == http::verb::post) {
      ex.request.set(http::field::content_type, "application/json");
    }
    ex.request.body() = std::string(body);
    ex.request.keep_alive(false);
    ex.request.prepare_payload();

    asio::io_context ioc;
    if (endpoint_.kind == Endpoint::Kind::kUnix) {
      beast::basic_stream<asio::local::stream_protocol> stream(ioc);
      stream.expires_after(timeout_);
      stream.async_connect(asio::local::stream_protocol::endpoint(endpoint_.path),
                           [&](error_code ec) {
                             if (ec) {
                               ex.ec = ec;
                               return;
                             }
                             WriteThenRead(stream, ex);
                           });
      ioc.run();
    } else {
      asio::ip::tcp::resolver resolver(ioc);
      error_code ec;
      auto results = resolver.resolve(endpoint_.host, std::to_string(endpoint_.port), ec);
      if (ec) {
        return base::Status::Unavailable("cannot resolve " + endpoint_.host +
                                         " for the admin API (" + endpoint_.display +
                                         "): " + ec.message());
      }
      beast::tcp_stream stream(ioc);
      stream.expires_after(timeout_);
      stream.async_connect(results, [&](error_code ec, const asio::ip::tcp::endpoint&) {
        if (ec) {
          ex.ec = ec;
          return;
        }
        WriteThenRead(stream, ex);
      });
      ioc.run();
    }
    if (!ex.done) {
      std::string why = ex.ec == beast::error::timeout
                            ? "timed out after " + std::to_string(timeout_.count() / 1000) + "s"
                            : ex.ec.message();
      bool connecting = std::string_view(ex.stage) == "connecting";
      std::string msg = "cannot reach the drawbridge daemon at " + endpoint_.display + ": " +
                        (connecting ? "" : std::string(ex.stage) + ": ") + why;
      if (connecting) msg += " (is `drawbridge serve` running? give --data-dir or --api)";
      return base::Status::Unavailable(std::move(msg));
    }
    HttpResponse out;
    out.status = static_cast<int>(ex.parser.get().result_int());
    out.body = std::move(ex.parser.get().body());
    return out;
  }

 private:
  Endpoint endpoint_;
  std::string token_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<Transport> MakeHttpTransport(Endpoint endpoint, std::string token,
                                             std::chrono::milliseconds timeout) {
  return std::make_unique<HttpTransport>(std::move(endpoint), std::move(token), timeout);
}

}  // namespace drawbridge::cli
