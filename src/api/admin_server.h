// The admin API's HTTP/1.1 plumbing (Beast): listeners on a loopback TCP port and a Unix
// socket, request size and time limits, one coroutine per connection, on a thread of its own.
// Requests are answered by api::Handle.
#pragma once

#include <memory>
#include <string>

#include "api/handlers.h"
#include "base/status.h"

namespace drawbridge::api {

class AdminServer {
 public:
  explicit AdminServer(ApiContext ctx);
  ~AdminServer();

  // Binds 127.0.0.1:`tcp_port` (0: none) and the Unix socket at `unix_path` (empty: none;
  // created with mode 0600, replacing a stale one; kUnavailable if another process serves
  // it), then serves on a new thread. Stop() removes the socket file only if it is still the
  // one this server created.
  base::Status Start(int tcp_port, const std::string& unix_path);
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::api
