// The admin API over HTTP/1.1: a Unix socket or TCP on localhost, one connection per request,
// one deadline for the whole exchange. The only file of the CLI that includes Asio/Beast is
// http_transport.cc; this header keeps them out of everything else.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cli/client.h"
#include "cli/settings.h"

namespace drawbridge::cli {

// token is sent as "Authorization: Bearer <token>". Not thread-safe; blocks the caller.
std::unique_ptr<Transport> MakeHttpTransport(Endpoint endpoint, std::string token,
                                             std::chrono::milliseconds timeout);

}  // namespace drawbridge::cli
