#include "api/admin_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <thread>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "io/accept_loop.h"

namespace drawbridge::api {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
constexpr auto kAwait = asio::use_awaitable;

constexpr size_t kMaxBody = 1 << 20;
constexpr auto kRequestTimeout = std::chrono::seconds(10);
constexpr int kMaxRequestsPerConnection = 1000;

// A request whose body length two headers could disagree about (RFC 9112 6.3): two
// Content-Lengths (even equal ones), Content-Length with Transfer-Encoding, or a
// Transfer-Encoding that does not end in chunked. A proxy in front may frame it differently,
// so it is answered 400 and the connection closed. Null when the framing is unambiguous.
const char* FramingError(const http::request<http::string_body>& msg) {
  size_t lengths = msg.count(http::field::content_length);
  size_t encodings = msg.count(http::field::transfer_encoding);
  if (lengths > 1) return R"({"error":"more than one Content-Length header"})";
  if (encodings > 0 && lengths > 0) {
    return R"({"error":"both Content-Length and Transfer-Encoding"})";
  }
  if (encodings > 1 || (encodings == 1 && !msg.chunked())) {
    return R"({"error":"Transfer-Encoding other than one chunked coding at the end"})";
  }
  return nullptr;
}

template <typename Socket>
asio::awaitable<void> Session(Socket socket, const ApiContext* ctx, bool unix) {
  boost::beast::flat_buffer buffer;
  asio::steady_timer deadline(socket.get_executor());
  // The deadline's handler may run after this frame is gone (one that had expired when
  // cancel() ran still runs, with success): it touches the socket only while `generation`,
  // which it shares, still says its arming is the current one, and never after the end.
  auto generation = std::make_shared<uint64_t>(0);
  for (int i = 0; i < kMaxRequestsPerConnection; ++i) {
    deadline.expires_after(kRequestTimeout);
    deadline.async_wait([&socket, generation, armed = ++*generation](error_code ec) {
      if (!ec && *generation == armed) socket.close(ec);
    });
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxBody);
    parser.header_limit(16 * 1024);
    error_code ec;
    co_await http::async_read(socket, buffer, parser, asio::redirect_error(kAwait, ec));
    Response res;
    bool keep_alive = false;
    if (ec == http::error::body_limit) {
      res = {413, R"({"error":"request body larger than 1 MiB"})"};
    } else if (ec == http::error::header_limit) {
      res = {431, R"({"error":"request headers too large"})"};
    } else if (ec == http::error::bad_content_length ||
               ec == http::error::bad_transfer_encoding) {
      // Beast stops at the second, conflicting framing header (FramingError, below).
      res = {400, R"({"error":"conflicting or malformed Content-Length or Transfer-Encoding"})"};
    } else if (ec && ec.category() == http::make_error_code(http::error::bad_method).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      // Bytes that are not an HTTP/1 request: say so before closing.
      res = {400, nlohmann::json{{"error", "malformed HTTP request: " + ec.message()}}.dump()};
    } else if (ec) {
      break;  // the peer closed (or went quiet past the deadline): nobody to answer
    } else if (const char* framing = FramingError(parser.get())) {
      res = {400, framing};
    } else if (parser.get().count(http::field::host) > 1 ||
               parser.get().count(http::field::authorization) > 1) {
      // Which one would count is a guess a proxy in front may make differently (RFC 9112 3.2).
      res = {400, R"({"error":"more than one Host or Authorization header"})"};
    } else if (parser.get().count("Idempotency-Key") > 1) {
      res = {400, R"({"error":"more than one Idempotency-Key header"})"};
    } else {
      auto& msg = parser.get();
      Request req;
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      req.body = std::move(msg.body());
      req.host = std::string(msg[http::field::host]);
      req.has_origin = msg.find(http::field::origin) != msg.end();
      req.authorization = std::string(msg[http::field::authorization]);
      req.unix_socket = unix;
      req.idempotency_key = std::string(msg["Idempotency-Key"]);
      res = Handle(*ctx, req);
      // Blocks this thread for the few milliseconds publishing takes: the client that changed
      // state hears back only once the edge and DNS serve it.
      if (ctx->wait_published && req.method != "GET" && req.method != "HEAD") {
        ctx->wait_published();
      }
      keep_alive = msg.keep_alive();
    }
    http::response<http::string_body> out{static_cast<http::status>(res.status), 11};
    out.set(http::field::content_type, res.content_type);
    out.set(http::field::cache_control, "no-store");
    out.keep_alive(keep_alive);
    out.body() = std::move(res.body);
    out.prepare_payload();
    co_await http::async_write(socket, out, asio::redirect_error(kAwait, ec));
    if (ec || !keep_alive) break;
  }
  ++*generation;
  deadline.cancel();
  error_code ignored;
  socket.shutdown(Socket::shutdown_both, ignored);
  socket.close(ignored);
}

template <typename Acceptor>
asio::awaitable<void> Accept(Acceptor& acceptor, std::string what, const ApiContext* ctx,
                             bool unix) {
  co_await io::AcceptLoop(
      acceptor, std::move(what),
      [ctx, unix](auto socket, const auto&) {
        asio::co_spawn(socket.get_executor(), Session(std::move(socket), ctx, unix),
                       [](std::exception_ptr e) {
                         if (e) spdlog::error("admin API session ended with an exception");
                       });
      },
      [] {});
}

void LogIfThrew(std::exception_ptr e) {
  if (e) spdlog::error("admin API accept loop ended with an exception");
}

// Makes way for a new socket at `path`: removes a stale socket (one nobody accepts on, left by a
// daemon that died), but never a live one (another process serves it) nor a file that is not a
// socket.
base::Status RemoveStaleSocket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? base::Status()
                           : base::Status::Internal("admin API: " + path + ": " +
                                                    std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return base::Status::Unavailable("admin API: " + path +
                                     " exists and is not a socket; not replacing it");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() < sizeof addr.sun_path) {
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
      int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      int err = errno;
      ::close(fd);
      if (rc == 0 || err == EAGAIN) {  // EAGAIN: accepting, with a full backlog
        return base::Status::Unavailable("admin API: " + path +
                                         " is served by another process; not replacing it");
      }
    }
  }
  ::unlink(path.c_str());
  return {};
}

}  // namespace

struct AdminServer::Impl {
  ApiContext ctx;
  asio::io_context io{1};
  tcp::acceptor tcp_acceptor{io};
  unix_socket::acceptor unix_acceptor{io};
  std::string unix_path;
  // The socket file this server created: Stop() removes the path only while it is still that
  // file, never one another process put there since.
  dev_t unix_dev = 0;
  ino_t unix_ino = 0;
  std::thread thread;
};

AdminServer::AdminServer(ApiContext ctx) : impl_(std::make_unique<Impl>()) {
  impl_->ctx = std::move(ctx);
}

AdminServer::~AdminServer() { Stop(); }

base::Status AdminServer::Start(int tcp_port, const std::string& unix_path) {
  error_code ec;
  if (tcp_port > 0) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(tcp_port));
    auto& a = impl_->tcp_acceptor;
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(64, ec);
    if (ec) {
      return base::Status::Unavailable("admin API: cannot listen on 127.0.0.1:" +
                                       std::to_string(tcp_port) + ": " + ec.message());
    }
    asio::co_spawn(impl_->io,
                   Accept(a, "admin API port " + std::to_string(tcp_port), &impl_->ctx, false),
                   LogIfThrew);
  }
  if (!unix_path.empty()) {
    if (auto s = RemoveStaleSocket(unix_path); !s.ok()) return s;
    auto& a = impl_->unix_acceptor;
    mode_t old = ::umask(0077);  // the socket file is created 0600
    a.open(unix_socket(), ec);
    if (!ec) a.bind(unix_socket::endpoint(unix_path), ec);
    ::umask(old);
    if (!ec) a.listen(64, ec);
    if (ec) {
      return base::Status::Unavailable("admin API: cannot listen on " + unix_path + ": " +
                                       ec.message());
    }
    struct stat st {};
    if (::lstat(unix_path.c_str(), &st) == 0) {
      impl_->unix_path = unix_path;
      impl_->unix_dev = st.st_dev;
      impl_->unix_ino = st.st_ino;
    }
    asio::co_spawn(impl_->io, Accept(a, "admin API socket " + unix_path, &impl_->ctx, true),
                   LogIfThrew);
  }
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return {};
}

void AdminServer::Stop() {
  if (!impl_->thread.joinable()) return;
  // Closing the acceptors on their own thread ends the accept loops; requests still in flight
  // end with the io_context.
  std::promise<void> closed;
  asio::post(impl_->io, [&] {
    error_code ignored;
    impl_->tcp_acceptor.close(ignored);
    impl_->unix_acceptor.close(ignored);
    closed.set_value();
  });
  closed.get_future().wait();
  impl_->io.stop();
  impl_->thread.join();
  struct stat st {};
  if (!impl_->unix_path.empty() && ::lstat(impl_->unix_path.c_str(), &st) == 0 &&
      st.st_dev == impl_->unix_dev && st.st_ino == impl_->unix_ino) {
    ::unlink(impl_->unix_path.c_str());
  }
}

}  // namespace drawbridge::api
