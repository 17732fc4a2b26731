// PostgreSQL wire-protocol constants and message codecs that the edge needs
// (https://www.postgresql.org/docs/current/protocol-message-formats.html). Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"

namespace drawbridge::pg {

using base::Bytes;
using base::ByteSpan;

constexpr uint32_t ProtocolVersion(uint32_t major, uint32_t minor) { return major << 16 | minor; }
constexpr uint32_t kSslRequestCode = ProtocolVersion(1234, 5679);     // 80877103
constexpr uint32_t kGssEncRequestCode = ProtocolVersion(1234, 5680);  // 80877104
constexpr uint32_t kCancelRequestCode = ProtocolVersion(1234, 5678);  // 80877102
constexpr uint32_t kProtocol30 = ProtocolVersion(3, 0);

// Startup packets: total length including the length word, as PostgreSQL bounds it
// (MAX_STARTUP_PACKET_LENGTH = 10000 bytes after the length word).
constexpr uint32_t kMinStartupPacket = 8;
constexpr uint32_t kMaxStartupPacket = 10004;
// Cancel keys: 4 bytes in protocol 3.0, 1..256 bytes from 3.2 on.
constexpr size_t kMaxCancelKey = 256;
constexpr uint8_t kTlsHandshakeRecord = 0x16;

// SQLSTATEs the edge sends (https://www.postgresql.org/docs/current/errcodes-appendix.html).
namespace sqlstate {
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kInvalidAuthorization = "28000";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kCannotConnectNow = "57P03";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kConnectionFailure = "08006";
}  // namespace sqlstate

struct CancelKey {
  uint32_t pid = 0;
  Bytes secret;  // 1..256 bytes
  bool operator==(const CancelKey&) const = default;
};

struct StartupMessage {
  uint32_t version = kProtocol30;
  std::vector<std::pair<std::string, std::string>> params;  // in wire order

  const std::string* Find(std::string_view name) const;
};

// Fields of an ErrorResponse or NoticeResponse.
struct ErrorFields {
  std::string severity;  // 'S' (or 'V' when 'S' is missing)
  std::string sqlstate;  // 'C'
  std::string message;   // 'M'
  std::string detail;    // 'D'
  std::string hint;      // 'H'
};

// Builders. Each returns one complete message, ready to write.
Bytes BuildErrorResponse(std::string_view severity, std::string_view sqlstate,
                         std::string_view message, std::string_view detail = {},
                         std::string_view hint = {});
inline Bytes BuildFatal(std::string_view sqlstate, std::string_view message,
                        std::string_view detail = {}, std::string_view hint = {}) {
  return BuildErrorResponse("FATAL", sqlstate, message, detail, hint);
}
// FATAL 08P01 for plaintext that arrived after an SSLRequest, before the TLS handshake
// (CVE-2021-23214); PostgreSQL's own wording.
Bytes BuildUnencryptedAfterSslError();
Bytes BuildNegotiateProtocolVersion(uint32_t newest_minor_version,
                                    const std::vector<std::string>& unrecognised_options);
Bytes BuildStartupMessage(const StartupMessage& msg);
Bytes BuildCancelRequest(const CancelKey& key);
Bytes BuildBackendKeyData(const CancelKey& key);

// Parsers of message bodies (the bytes after the type byte and length word).
std::optional<StartupMessage> ParseStartupBody(ByteSpan body_after_version, uint32_t version,
                                               std::string* error);
std::optional<ErrorFields> ParseErrorBody(ByteSpan body);
std::optional<CancelKey> ParseBackendKeyDataBody(ByteSpan body);
std::optional<std::pair<std::string, std::string>> ParseParameterStatusBody(ByteSpan body);

// Follows the message boundaries of a stream of typed messages (what a server sends after the
// startup packet) without keeping any of it: so that the edge knows where it may put a message
// of its own. A length word below 4 is malformed; from then on no boundary is known.
class MessageCursor {
 public:
  void Advance(ByteSpan bytes);
  // Whether the bytes so far ended a whole message.
  bool at_boundary() const { return !broken_ && have_ == 0 && body_left_ == 0; }

 private:
  uint8_t header_[5] = {};
  size_t have_ = 0;         // header bytes seen of the current message
  uint64_t body_left_ = 0;  // body bytes of the current message still to come
  bool broken_ = false;
};

}  // namespace drawbridge::pg
