// What one connection's log line reports, gathered as the connection goes (docs/connection.md,
// "The log line"). Owned by whoever owns the connection at the time: its negotiation on the io
// thread, then its session on the relay thread, which receives it moved at the hand-off. Pure:
// no sockets, no Asio.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "admission/admission.h"
#include "control/route_table.h"
#include "net/proxy_protocol.h"

namespace drawbridge::tls {
class TlsEngine;
}

namespace drawbridge::net {

// An IP address and port, as accept() and getsockname() gave them; 20 bytes, no allocation.
struct Address {
  std::array<uint8_t, 16> ip{};  // the first 4 bytes for IPv4
  uint16_t port = 0;
  bool v6 = false;

  std::string Ip() const;        // "127.0.0.1", "::1"
  std::string ToString() const;  // "127.0.0.1:5432", "[::1]:5432"
};

// The PROXY protocol's view of a connection: the client's address towards the edge's.
ProxyAddresses ProxyAddressesOf(const Address& client, const Address& local);

struct ConnRecord {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  Address client, local;
  // The route decided so far (the first candidate until SNI or `options` picks one) and the
  // table that owns it.
  std::shared_ptr<const control::RouteTable> table;
  const control::Route* route = nullptr;
  std::string user, database, server_version;
  uint64_t bytes_in = 0, bytes_out = 0;
  // Why the connection ended: a static string. SetReason() keeps the first one set; the
  // negotiation overwrites it on purpose where a later step says more (cancels, the machine
  // connect, a refused route), and so does a session ended because its app no longer holds
  // its address (after a half-close had noted the client's or the machine's end).
  const char* reason = nullptr;
  // The connection's place under admission control's caps (admission/admission.h): it moves
  // with the record, so the connection counts against them until the record is gone, after
  // its line is logged.
  admission::Admission::Slot admission;

  void SetReason(const char* why) {
    if (reason == nullptr) reason = why;
  }
};

// Logs the record's one logfmt line at info level. `tls` (may be null) gives the SNI, and the
// version and cipher once `tls_ready` (its handshake finished). Values the client chose are
// escaped (base/logfmt.h).
void LogConnection(const ConnRecord& r, const tls::TlsEngine* tls, bool tls_ready);

}  // namespace drawbridge::net
