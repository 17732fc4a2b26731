// The authoritative DNS server: UDP and TCP (RFC 1035 §4.2, RFC 7766) on one address and port,
// one thread with its own io_context. Every query reads the zone through the provider, so a
// new snapshot is visible from the next query on; the codec (zone.h) does the rest.
//
// TCP: 2-byte length framing, any number of queries per connection, answered in order. Each
// query (length, body, and the write of its answer) must complete within the idle timeout, or
// the connection is closed; connections beyond the cap are accepted and closed at once. Buffers
// are bounded: one 64 KiB datagram buffer, and per TCP connection one query and one answer of at
// most 64 KiB each.
//
// UDP answers leave from the address the query was sent to (datagram.h), so a server bound to
// a wildcard answers correctly on every address of the host, IPv4 and IPv6 alike. Names in
// `internal` are answered only to sources in `internal_from` (internal_access.h), over UDP
// and TCP alike; any other source gets REFUSED for them.
//
// Thread safety: Start() and Stop() are called from one thread (not the server's). The provider
// is called on the server's thread and must be thread-safe with respect to whoever swaps the
// zone. No Asio in this header.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "dns/internal_access.h"
#include "dns/zone.h"

namespace drawbridge::dns {

struct ServerOptions {
  size_t max_udp = kDefaultUdpSize;  // our UDP payload limit, advertised in OPT
  int max_tcp_connections = 256;
  std::chrono::milliseconds tcp_idle_timeout{10'000};
  // The sources that may read `internal` (docs/dns.md): loopback unless told otherwise.
  std::vector<base::Cidr> internal_from = LoopbackNetworks();
};

class Server {
 public:
  // Returns the current snapshot; may return null before there is one (queries then get
  // SERVFAIL).
  using ZoneProvider = std::function<std::shared_ptr<const Zone>()>;

  explicit Server(ZoneProvider provider, ServerOptions options = {});
  ~Server();  // Stop()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds UDP and TCP on `address` (an IPv4 or IPv6 literal) and `port` (0: a free port, the
  // same for both), then starts the server's thread. Once only.
  base::Status Start(const std::string& address, int port);
  // Stops the thread and closes every socket. Idempotent.
  void Stop();

  int udp_port() const;  // the bound port, 0 before Start()
  int tcp_port() const;  // equal to udp_port()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::dns
