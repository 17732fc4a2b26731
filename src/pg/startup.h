// The client side of the startup phase on a pg_tls port, as a state machine: bytes in, actions
// out (docs/protocol.md, "Startup state machine"). No sockets, no OpenSSL, no clocks.
//
// Usage: the caller feeds every byte read from the client with Feed() (plaintext before TLS,
// decrypted bytes after) and carries out the returned action. After kReply it calls Feed({})
// again to go on with bytes already buffered; after kStartTls it runs the TLS handshake and
// calls TlsEstablished(). Buffering is bounded: the machine keeps at most one partial startup
// packet plus the bytes of the last Feed().
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "pg/messages.h"

namespace drawbridge::pg {

// Why a connection was refused or closed before routing; each has a counter.
enum class RefuseReason {
  kNone,
  kBadLength,           // startup length outside 8..10004: silent close, as PostgreSQL does
  kBadCancel,           // cancel key length outside 1..256: silent close
  kUnencryptedAfterSsl, // bytes pipelined after SSLRequest (CVE-2021-23214 class)
  kUnencryptedAfterGss,
  kRepeatedNegotiation, // a second SSLRequest/GSSENCRequest
  kTlsRequired,         // plaintext StartupMessage on a TLS-only port
  kUnsupportedProtocol, // major version other than 3
  kBadLayout,           // malformed parameters
  kNoUser,
  kCount,
};
const char* RefuseReasonName(RefuseReason r);

struct StartupAction {
  enum class Kind {
    kNeedMore,   // read more bytes and Feed() them
    kReply,      // write `bytes` (plaintext), then Feed({})
    kStartTls,   // write `bytes` ('S', or nothing for direct TLS), then hand `tls_prefix`
                 // (ClientHello bytes already read) to the TLS engine and handshake
    kRefuse,     // write `bytes` (an ErrorResponse, or nothing), then close
    kCancel,     // forward `cancel` to the backend that owns it; reply nothing; close
    kStartup,    // route `startup`; `bytes` is the raw packet, `rest` any bytes after it
  };
  Kind kind = Kind::kNeedMore;
  Bytes bytes;
  Bytes tls_prefix;
  Bytes rest;
  bool direct_tls = false;
  RefuseReason reason = RefuseReason::kNone;
  CancelKey cancel;
  StartupMessage startup;
};

// Clients without SNI may name the app in the `options` startup parameter as "app=NAME"
// (libpq: options=app%3DNAME). Removes that token (the server must not see it), drops
// `options` if nothing else is left, and returns NAME.
std::optional<std::string> TakeAppOption(StartupMessage* msg);

class StartupMachine {
 public:
  struct Options {
    bool tls_required = true;
  };
  StartupMachine() : StartupMachine(Options{}) {}
  explicit StartupMachine(Options options) : options_(options) {}

  StartupAction Feed(ByteSpan data);
  // Called once the TLS handshake that kStartTls asked for has completed.
  void TlsEstablished() { state_ = State::kInTls; }

  bool in_tls() const { return state_ == State::kInTls; }
  bool direct_tls() const { return direct_tls_; }

 private:
  enum class State { kFirstPacket, kPlain, kAwaitTls, kInTls, kDone };

  StartupAction OnPacket(uint32_t length);
  StartupAction OnStartup(ByteSpan packet, uint32_t version);
  StartupAction Refuse(RefuseReason reason, Bytes error);
  void Consume(size_t n);

  Options options_;
  State state_ = State::kFirstPacket;
  Bytes buf_;
  bool ssl_done_ = false;
  bool gss_done_ = false;
  bool direct_tls_ = false;
};

}  // namespace drawbridge::pg
