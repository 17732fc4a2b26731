// One client connection, from accept to close (ARCHITECTURE.md, "Life of one connection"):
// a coroutine negotiates (a pg_tls client that keeps it waiting for its startup packets parks
// it without one) and connects the machine, then the thread's relay loop (net/relay_loop.h)
// relays both ways until either side closes. The connection owns both sockets; it reads the
// route table snapshot and the certificate set once, when it starts.
#pragma once

#include "control/route_table.h"
#include "net/asio.h"
#include "net/limits.h"
#include "tls/cert_store.h"

namespace drawbridge::net {

struct ConnectionContext {
  const control::RouteTableHolder* routes = nullptr;
  const tls::CertStore* certs = nullptr;
  Limits limits;
  ServerVersionObserver on_server_version;  // may be empty
};

// Spawns the connection's coroutine on the socket's executor. `peer` is the client's address as
// accept() gave it (the socket may be reset before it could be asked again). Never throws.
void StartConnection(Socket socket, const tcp::endpoint& peer, const ConnectionContext& ctx);

}  // namespace drawbridge::net
