// Boost 1.74's Asio needs <utility> before its headers (std::exchange in awaitable.hpp).
// clang-format off
#include <utility>
// clang-format on

#include "store/etcd_client.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <thread>
#include <type_traits>

namespace drawbridge::store {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

namespace {

// A full resync of a big prefix (many certificates) is one answer: generous, but bounded.
constexpr uint64_t kMaxAnswer = 256ull * 1024 * 1024;
constexpr int kGrpcUnauthenticated = 16;
constexpr int kGrpcUnavailable = 14;

struct HostPort {
  std::string host;  // without brackets
  std::string port;
};

HostPort Split(const std::string& endpoint) {
  if (!endpoint.empty() && endpoint[0] == '[') {
    auto close = endpoint.find(']');
    if (close != std::string::npos) {
      std::string port = close + 2 <= endpoint.size() ? endpoint.substr(close + 2) : "";
      return {endpoint.substr(1, close - 1), port};
    }
  }
  auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) return {endpoint, "2379"};
  return {endpoint.substr(0, colon), endpoint.substr(colon + 1)};
}

bool IsAddress(const std::string& host) {
  error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

// etcd's error answers: {"error": "...", "message": "...", "code": N}.
struct EtcdError {
  int code = 0;
  std::string message;
};

EtcdError ErrorOf(int http_status, const std::string& body) {
  EtcdError e;
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    if (j.contains("code") && j["code"].is_number_integer()) e.code = j["code"].get<int>();
    for (const char* field : {"message", "error"}) {
      if (j.contains(field) && j[field].is_string() && !j[field].get<std::string>().empty()) {
        e.message = j[field].get<std::string>();
        break;
      }
    }
  }
  if (e.message.empty()) {
    e.message = "HTTP " + std::to_string(http_status) + ": " + body.substr(0, 200);
  }
  return e;
}

std::string Describe(const error_code& ec, const char* stage) {
  std::string why = ec == beast::error::timeout ? "timed out"
                    : ec == http::error::partial_message || ec == http::error::end_of_stream ||
                            ec == asio::error::eof || ec == asio::error::connection_reset
                        ? "the connection was closed"
                        : ec.message();
  if (std::string_view(stage) == "connecting") return why;
  return std::string(stage) + ": " + why;
}

// One connection: TCP (and TLS) set up, then whatever `next` does. Lives on the stack of the
// calling thread while its io_context runs.
template <typename Stream>
struct Link {
  Stream stream;
  const char* stage = "connecting";
  error_code ec;

  template <typename... Args>
  explicit Link(Args&&... args) : stream(std::forward<Args>(args)...) {}

  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream); }

  template <typename Next>
  void Open(const asio::ip::tcp::resolver::results_type& addresses, Next next) {
    tcp().async_connect(addresses, [this, next](error_code ec, const asio::ip::tcp::endpoint&) {
      if (ec) {
        this->ec = ec;
        return;
      }
      if constexpr (std::is_same_v<Stream, TlsStream>) {
        stage = "TLS handshake";
        stream.async_handshake(asio::ssl::stream_base::client, [this, next](error_code ec) {
          if (ec) {
            this->ec = ec;
            return;
          }
          next();
        });
      } else {
        next();
      }
    });
  }
};

// An endpoint's addresses; empty with `*error` (naming the endpoint) when its host does not
// resolve.
asio::ip::tcp::resolver::results_type Resolve(asio::io_context& ioc, const std::string& endpoint,
                                              const HostPort& hp, std::string* error) {
  asio::ip::tcp::resolver resolver(ioc);
  error_code ec;
  auto addresses = resolver.resolve(hp.host, hp.port, ec);
  if (ec) *error = endpoint + ": cannot resolve: " + ec.message();
  return addresses;
}

// Calls `run` with a Link to `host`: TLS under `ctx` (SNI for a name, the server's certificate
// checked against the host), or plain TCP when `ctx` is null.
template <typename Run>
void WithLink(asio::io_context& ioc, asio::ssl::context* ctx, const std::string& host, Run&& run) {
  if (ctx != nullptr) {
    Link<TlsStream> link(ioc, *ctx);
    if (!IsAddress(host)) SSL_set_tlsext_host_name(link.stream.native_handle(), host.c_str());
    link.stream.set_verify_callback(asio::ssl::host_name_verification(host));
    run(link);
  } else {
    Link<beast::tcp_stream> link(ioc);
    run(link);
  }
}

http::request<http::string_body> MakeRequest(const std::string& endpoint, std::string_view path,
                                             const std::string& body, const std::string& token) {
  http::request<http::string_body> req;
  req.method(http::verb::post);
  req.target(beast::string_view(path.data(), path.size()));
  req.version(11);
  req.set(http::field::host, endpoint);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "application/json");
  if (!token.empty()) req.set(http::field::authorization, token);
  req.body() = body;
  req.keep_alive(false);
  req.prepare_payload();
  return req;
}

}  // namespace

struct EtcdClient::Tls {
  asio::ssl::context ctx{asio::ssl::context::tls_client};
};

struct EtcdClient::Exchange {
  bool answered = false;  // an HTTP answer came back
  bool sent = false;      // the whole request was written
  int status = 0;
  std::string body;
  std::string error;  // "host:port: why" when not answered
};

EtcdClient::EtcdClient(EtcdClientOptions options) : options_(std::move(options)) {}
EtcdClient::~EtcdClient() = default;

base::Result<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdClientOptions options) {
  if (options.endpoints.empty()) {
    return base::Status::InvalidArgument("etcd: no endpoints given");
  }
  std::unique_ptr<EtcdClient> client(new EtcdClient(std::move(options)));
  const auto& o = client->options_;
  if (!o.ca_file.empty() || !o.cert_file.empty() || !o.key_file.empty()) {
    if (o.cert_file.empty() != o.key_file.empty()) {
      return base::Status::InvalidArgument(
          "etcd TLS: a client certificate needs both the certificate and its key file");
    }
    auto tls = std::make_unique<Tls>();
    error_code ec;
    tls->ctx.set_verify_mode(asio::ssl::verify_peer, ec);
    if (!o.ca_file.empty()) {
      if (tls->ctx.load_verify_file(o.ca_file, ec); ec) {
        return base::Status::InvalidArgument(o.ca_file +
                                             ": cannot load the etcd CA: " + ec.message());
      }
    } else if (tls->ctx.set_default_verify_paths(ec); ec) {
      return base::Status::Internal("etcd TLS: the system CAs: " + ec.message());
    }
    if (!o.cert_file.empty()) {
      if (tls->ctx.use_certificate_chain_file(o.cert_file, ec); ec) {
        return base::Status::InvalidArgument(o.cert_file +
                                             ": cannot load the etcd client "
                                             "certificate: " +
                                             ec.message());
      }
      if (tls->ctx.use_private_key_file(o.key_file, asio::ssl::context::pem, ec); ec) {
        return base::Status::InvalidArgument(o.key_file +
                                             ": cannot load the etcd client key: " + ec.message());
      }
      if (SSL_CTX_check_private_key(tls->ctx.native_handle()) != 1) {
        return base::Status::InvalidArgument(o.key_file + ": does not match " + o.cert_file);
      }
    }
    client->tls_ = std::move(tls);
  }
  return client;
}

void EtcdClient::DropToken() {
  std::lock_guard lock(mu_);
  token_.clear();
}

EtcdClient::Exchange EtcdClient::Send(size_t endpoint, std::string_view path,
                                      const std::string& body, const std::string& token,
                                      Clock::time_point deadline) {
  Exchange ex;
  const std::string& name = options_.endpoints[endpoint];
  HostPort hp = Split(name);
  asio::io_context ioc;
  auto addresses = Resolve(ioc, name, hp, &ex.error);
  if (!ex.error.empty()) return ex;
  auto request = MakeRequest(name, path, body, token);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxAnswer);

  auto run = [&](auto& link) {
    link.tcp().expires_at(deadline);
    link.Open(addresses, [&] {
      link.stage = "sending the request";
      http::async_write(link.stream, request, [&](error_code ec, size_t) {
        if (ec) {
          link.ec = ec;
          return;
        }
        ex.sent = true;
        link.stage = "reading the answer";
        http::async_read(link.stream, buffer, parser, [&](error_code ec, size_t) {
          if (ec) {
            link.ec = ec;
            return;
          }
          ex.answered = true;
        });
      });
    });
    ioc.run();
    if (!ex.answered) ex.error = name + ": " + Describe(link.ec, link.stage);
  };
  WithLink(ioc, tls_ ? &tls_->ctx : nullptr, hp.host, run);
  if (ex.answered) {
    ex.status = static_cast<int>(parser.get().result_int());
    ex.body = std::move(parser.get().body());
  }
  return ex;
}

base::Result<std::string> EtcdClient::Token(size_t endpoint, Clock::time_point deadline,
                                            std::string* transport_error) {
  if (options_.user.empty()) return std::string();
  {
    std::lock_guard lock(mu_);
    if (!token_.empty()) return token_;
  }
  nlohmann::json body{{"name", options_.user}, {"password", options_.password}};
  auto ex = Send(endpoint, "/v3/auth/authenticate", body.dump(), "", deadline);
  if (!ex.answered) {
    *transport_error = ex.error;
    return base::Status::Unavailable(ex.error);
  }
  auto j = nlohmann::json::parse(ex.body, nullptr, false);
  if (ex.status != 200 || !j.is_object() || !j.contains("token") || !j["token"].is_string()) {
    auto e = ErrorOf(ex.status, ex.body);
    return base::Status::InvalidArgument(options_.name + ": authentication as user " +
                                         options_.user + " failed: " + e.message);
  }
  std::lock_guard lock(mu_);
  token_ = j["token"].get<std::string>();
  return token_;
}

base::Result<nlohmann::json> EtcdClient::Call(std::string_view path, const nlohmann::json& body,
                                              bool idempotent, bool* sent) {
  if (sent) *sent = false;
  auto deadline = Clock::now() + options_.request_timeout;
  std::string text = body.dump();
  size_t n = options_.endpoints.size();
  size_t first;
  {
    std::lock_guard lock(mu_);
    first = sticky_;
  }
  std::vector<std::string> failures;
  // Rounds over the endpoints: a second one only when some member answered that it has no
  // leader (an election in progress), never when every member refused the connection.
  for (int round = 0; round < 20 && Clock::now() < deadline; ++round) {
    bool electing = false;
    failures.clear();
    for (size_t k = 0; k < n && Clock::now() < deadline; ++k) {
      size_t i = (first + k) % n;
      bool reauthenticated = false;
      for (;;) {
        std::string transport_error;
        auto token = Token(i, deadline, &transport_error);
        if (!token.ok()) {
          if (transport_error.empty()) return token.status();
          failures.push_back(transport_error);
          break;
        }
        auto ex = Send(i, path, text, *token, deadline);
        if (!ex.answered) {
          failures.push_back(ex.error);
          if (ex.sent && !idempotent) {
            if (sent) *sent = true;
            return base::Status::Unavailable(ex.error);
          }
          break;
        }
        if (ex.status == 200) {
          auto j = nlohmann::json::parse(ex.body, nullptr, false);
          if (j.is_discarded()) {
            return base::Status::Unavailable(options_.endpoints[i] +
                                             ": an answer that is not JSON");
          }
          std::lock_guard lock(mu_);
          sticky_ = i;
          return j;
        }
        auto e = ErrorOf(ex.status, ex.body);
        if (e.code == kGrpcUnauthenticated && !options_.user.empty() && !reauthenticated) {
          DropToken();
          reauthenticated = true;
          continue;
        }
        if (e.code == kGrpcUnavailable) {
          bool no_leader = e.message.find("no leader") != std::string::npos;
          failures.push_back(options_.endpoints[i] + ": " + e.message);
          if (!no_leader && !idempotent) {
            if (sent) *sent = true;
            return base::Status::Unavailable(options_.endpoints[i] + ": " + e.message);
          }
          electing = electing || no_leader;
          break;
        }
        return base::Status::InvalidArgument(options_.endpoints[i] + ": " + e.message);
      }
    }
    if (!electing) break;
    auto pause = std::min<Clock::duration>(std::chrono::milliseconds(100), deadline - Clock::now());
    if (pause > Clock::duration::zero()) std::this_thread::sleep_for(pause);
  }
  std::string all;
  for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
  if (all.empty()) all = "timed out";
  return base::Status::Unavailable(all);
}

base::Status EtcdClient::Watch(const nlohmann::json& create_request,
                               const std::function<bool(const nlohmann::json&)>& on_message,
                               std::chrono::milliseconds idle, const std::function<bool()>& on_idle,
                               const std::atomic<bool>& stop) {
  size_t n = options_.endpoints.size();
  size_t first;
  {
    std::lock_guard lock(mu_);
    first = sticky_;
  }
  std::string text = nlohmann::json{{"create_request", create_request}}.dump();
  std::vector<std::string> failures;
  for (size_t k = 0; k < n && !stop; ++k) {
    size_t i = (first + k) % n;
    const std::string& name = options_.endpoints[i];
    auto deadline = Clock::now() + options_.request_timeout;
    std::string transport_error;
    auto token = Token(i, deadline, &transport_error);
    if (!token.ok()) {
      if (transport_error.empty()) return token.status();
      failures.push_back(transport_error);
      continue;
    }
    HostPort hp = Split(name);
    asio::io_context ioc;
    std::string unresolved;
    auto addresses = Resolve(ioc, name, hp, &unresolved);
    if (!unresolved.empty()) {
      failures.push_back(unresolved);
      continue;
    }
    auto request = MakeRequest(name, "/v3/watch", text, *token);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    std::string pending;  // the stream's bytes not yet split into messages
    auto on_chunk = [&pending](uint64_t, beast::string_view data, error_code&) {
      pending.append(data.data(), data.size());
      return data.size();
    };
    parser.on_chunk_body(on_chunk);
    bool streaming = false;  // the answer's header came, status 200
    bool ended = false;      // no more reads are pending
    bool quit = false;       // on_message asked to stop
    std::string failure;     // why the stream ended, if it failed
    auto last_message = Clock::now();

    // Splits `pending` into newline-terminated JSON messages and hands each one on.
    auto deliver = [&]() {
      size_t start = 0;
      for (size_t nl; !quit && (nl = pending.find('\n', start)) != std::string::npos;
           start = nl + 1) {
        std::string_view line(pending.data() + start, nl - start);
        if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded()) {
          failure = name + ": the watch stream sent something that is not JSON";
          quit = true;
          break;
        }
        last_message = Clock::now();
        if (!on_message(j)) quit = true;
      }
      pending.erase(0, start);
      if (pending.size() > kMaxAnswer) {
        failure = name + ": a watch message larger than " + std::to_string(kMaxAnswer) + " bytes";
        quit = true;
      }
    };

    auto run = [&](auto& link) {
      link.tcp().expires_at(deadline);
      std::function<void()> read_more = [&] {
        http::async_read_some(link.stream, buffer, parser, [&](error_code ec, size_t) {
          if (ec) {
            link.ec = ec;
            ended = true;
            return;
          }
          if (streaming) deliver();
          if (quit || parser.is_done()) {
            ended = true;
            return;
          }
          read_more();
        });
      };
      link.Open(addresses, [&] {
        link.stage = "sending the watch request";
        http::async_write(link.stream, request, [&](error_code ec, size_t) {
          if (ec) {
            link.ec = ec;
            ended = true;
            return;
          }
          link.stage = "reading the watch answer";
          http::async_read_header(link.stream, buffer, parser, [&](error_code ec, size_t) {
            if (ec) {
              link.ec = ec;
              ended = true;
              return;
            }
            if (parser.get().result_int() == 200) {
              streaming = true;
              link.stage = "watching";
              link.tcp().expires_never();
            }
            read_more();
          });
        });
      });
      // Bounded: each turn is 100 ms at most, and the stream ends on stop, on a failed probe,
      // on a read error or timeout (before the header), or when the server closes it.
      while (!ended && !stop) {
        ioc.run_for(std::chrono::milliseconds(100));
        // Out of work: a failed connect or handshake ends without a pending operation.
        if (ioc.stopped()) ended = true;
        if (ended || stop) break;
        if (streaming && Clock::now() - last_message >= idle) {
          last_message = Clock::now();
          if (!on_idle()) {
            failure = name + ": the liveness probe failed";
            break;
          }
        }
      }
      if (failure.empty() && link.ec && !stop && !quit) {
        failure = name + ": " + Describe(link.ec, link.stage);
      }
      // Closing the socket cancels what is pending; the handlers then run and return.
      error_code ignored;
      link.tcp().socket().close(ignored);
      ioc.restart();
      ioc.run_for(std::chrono::milliseconds(100));
    };
    WithLink(ioc, tls_ ? &tls_->ctx : nullptr, hp.host, run);
    if (stop || (quit && failure.empty())) return {};
    if (!streaming && parser.is_header_done()) {
      // An error answer (bad token, no permission): its body says why.
      auto e = ErrorOf(static_cast<int>(parser.get().result_int()),
                       pending.empty() ? parser.get().body() : pending);
      if (e.code == kGrpcUnauthenticated) DropToken();
      return base::Status::Unavailable(name + ": " + e.message);
    }
    if (streaming) {
      // The stream was up: it failed or the server ended it. The caller reconnects (and tries
      // this endpoint first: it worked).
      return base::Status::Unavailable(failure.empty() ? name + ": the watch stream ended"
                                                       : failure);
    }
    failures.push_back(failure.empty() ? name + ": no answer" : failure);
  }
  std::string all;
  for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
  return base::Status::Unavailable(all.empty() ? "stopped" : all);
}

std::string EtcdBase64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

base::Result<std::string> EtcdUnbase64(std::string_view text) {
  if (text.size() % 4 != 0) return base::Status::InvalidArgument("bad base64 length");
  std::string out(3 * (text.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return base::Status::InvalidArgument("bad base64");
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  for (size_t k = text.size(); k > 0 && text[k - 1] == '=' && len > 0; --k) --len;
  out.resize(len);
  return out;
}

}  // namespace drawbridge::store
