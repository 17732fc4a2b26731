// Deadlines and sizes of the data plane (docs/connection.md, "Deadlines").
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

namespace drawbridge::net {

struct Limits {
  std::chrono::milliseconds handshake_timeout{10'000};  // accept -> StartupMessage routed
  std::chrono::milliseconds connect_timeout{5'000};     // per machine connect attempt
  std::chrono::milliseconds close_linger{2'000};        // draining input after a FATAL
  std::chrono::milliseconds drain_timeout{30'000};      // SIGTERM -> forced close
  // How long a new connection waits for a machine below its hard limit when every machine it
  // may use is at it ([services.concurrency] hard_limit), before FATAL 53300.
  std::chrono::milliseconds hard_limit_wait{2'000};
};

// Told what a machine reported as server_version (ParameterStatus), per app and address.
using ServerVersionObserver = std::function<void(const std::string& app,
                                                 const std::string& machine_address,
                                                 const std::string& version)>;

}  // namespace drawbridge::net
