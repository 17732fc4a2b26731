// One client connection from accept to the hand-off (docs/connection.md): on the io thread
// that accepted it, a coroutine answers the handler's negotiation (the TLS handshake, the
// Postgres startup up to a routed StartupMessage, a cancel request), chooses the route
// (net/route_choice.h) and connects a machine; then everything the relay needs is moved into
// a Session (net/session.h) and given to that thread's relay loop. A pg_tls client that keeps
// the edge waiting for its startup packets parks the negotiation without a coroutine.
//
// The negotiation is owned by its pending operations (shared_from_this) and touched only on
// its io thread. Once the session is handed over, nothing here refers to the connection's
// sockets, TLS session or log record any more; a deadline that had already fired is stale by
// its generation and does nothing.
#pragma once

#include <string>
#include <vector>

#include "net/asio.h"
#include "net/server_context.h"

namespace drawbridge::net {

// Starts the negotiation of an accepted connection on the socket's executor. `peer` is the
// client's address as accept() gave it (the socket may be reset before it could be asked
// again). The connection counts as live in `ctx.server` from here until it is logged. Never
// throws.
void StartConnection(Socket socket, const tcp::endpoint& peer, WorkerContext ctx);

// Fleet mode: a cancel that another node received for a key this node issued
// (fleet/peer_channel.h), run on `io`'s thread as a local one would be: sent to the machine
// only if a session here holds exactly that key and its app is among `apps`, the apps the
// other node reached where the cancel came in. Logs one line (`cancel from_node=.. app=..
// reason=cancel_from_peer_...`) and counts it. Never throws.
void StartPeerCancel(asio::io_context& io, ServerContext* ctx, int from_node, pg::CancelKey key,
                     std::vector<std::string> apps);

}  // namespace drawbridge::net
