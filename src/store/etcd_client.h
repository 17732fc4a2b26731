// A client for etcd's v3 JSON gateway (etcd 3.4 paths: /v3/kv/range, /v3/kv/txn, /v3/watch,
// /v3/auth/authenticate) over HTTP/1.1 with Boost.Beast, plain or TLS with a client certificate.
// Why the gateway and not gRPC: no protobuf code generation and no etcd .proto files (which pull
// in gogoproto and google.api annotations) in the build, and the same Beast the admin API uses.
// The gateway speaks proto3 JSON: keys and values are base64, int64 fields are strings, fields at
// their zero value are left out (a failed transaction has no "succeeded" at all).
//
// Endpoints are tried in order; the one that answered last is tried first next time (sticky), so
// a dead member costs one refused connection, not one per call. Each call opens its own
// connection: calls come from a few threads (API handlers, the publisher, the store's watch
// thread) and are rare next to reads, which the store serves from its mirror; a fresh connection
// also never meets a kept-alive socket the server closed meanwhile, where a transaction could not
// be resent without risking it twice. With a user set, the client authenticates first and sends
// the token in the Authorization header; a token etcd no longer knows (expired, another member
// restarted) is replaced once per call.
//
// Threads: Call() may be used from any thread at once (the sticky endpoint and the token are
// under a mutex); Watch() blocks the calling thread (the store's watch thread) until the stream
// ends or `stop` is set.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace drawbridge::store {

struct EtcdClientOptions {
  std::vector<std::string> endpoints;        // "host:port" or "[v6]:port"
  std::string ca_file, cert_file, key_file;  // TLS when any is set
  std::string user, password;
  std::chrono::milliseconds request_timeout{5000};
  std::string name;  // "etcd://h:p,h:p", for messages
};

class EtcdClient {
 public:
  // Loads the TLS files (an unreadable or mismatched file is kInvalidArgument naming it).
  static base::Result<std::unique_ptr<EtcdClient>> Create(EtcdClientOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // POSTs `body` to `path` and returns the answer's JSON. Errors:
  //  - kUnavailable: no endpoint answered (the message lists each endpoint's failure), or etcd
  //    answered that it cannot serve (no leader, timed out). `*sent` is set when a request
  //    reached a server without an answer coming back: its outcome is unknown. A request that
  //    is not `idempotent` is then not sent to another endpoint.
  //  - kInvalidArgument: etcd refused the request or the credentials (its message).
  base::Result<nlohmann::json> Call(std::string_view path, const nlohmann::json& body,
                                    bool idempotent, bool* sent = nullptr);

  // Opens a /v3/watch stream with `create_request` and hands each JSON message to `on_message`
  // until it returns false, the stream ends, or `stop` is set (checked every 100 ms). Every
  // `idle` without a message, `on_idle` runs (a liveness probe); if it returns false the stream
  // is given up. Returns why the stream ended (OK when on_message or stop ended it).
  base::Status Watch(const nlohmann::json& create_request,
                     const std::function<bool(const nlohmann::json&)>& on_message,
                     std::chrono::milliseconds idle, const std::function<bool()>& on_idle,
                     const std::atomic<bool>& stop);

  // Forgets the auth token (etcd said it is invalid); the next call authenticates again.
  void DropToken();

  const std::string& name() const { return options_.name; }

 private:
  struct Tls;
  struct Exchange;
  explicit EtcdClient(EtcdClientOptions options);

  Exchange Send(size_t endpoint, std::string_view path, const std::string& body,
                const std::string& token, std::chrono::steady_clock::time_point deadline);
  base::Result<std::string> Token(size_t endpoint, std::chrono::steady_clock::time_point deadline,
                                  std::string* transport_error);

  EtcdClientOptions options_;
  std::unique_ptr<Tls> tls_;
  std::mutex mu_;      // guards sticky_ and token_
  size_t sticky_ = 0;  // the endpoint to try first
  std::string token_;  // etcd's auth token; empty: none yet (or no auth)
};

// Base64 as etcd's JSON carries keys and values.
std::string EtcdBase64(std::string_view bytes);
base::Result<std::string> EtcdUnbase64(std::string_view text);

}  // namespace drawbridge::store
