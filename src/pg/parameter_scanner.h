// Follows what a PostgreSQL server sends a client during a live session (after the login) for
// the one report the edge acts on: a ParameterStatus of in_hot_standby, which PostgreSQL 14+
// sends to every session when a standby is promoted ("off"), so the edge learns the new
// primary from traffic that passes anyway, with no credentials of its own (docs/protocol.md,
// "Roles"). It also knows the message boundaries, so the edge may put a message of its own
// between two of the server's (it replaces pg::MessageCursor in the relay: one walk of the
// headers does both).
//
// Cheap by design, because it runs on every chunk the relay passes: it looks at each message's
// 5-byte header only, and copies a body only for a ParameterStatus short enough to be
// in_hot_standby's (kMaxScanned bytes); everything else is skipped by its length. Nothing is
// allocated. Pure: bytes in, a verdict out; owned by one session on its relay thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "base/bytes.h"

namespace drawbridge::pg {

class ParameterScanner {
 public:
  // The body of "in_hot_standby\0off\0" is 19 bytes; longer ParameterStatus bodies are of
  // other parameters and are skipped without being read.
  static constexpr size_t kMaxScanned = 32;

  // Follows `bytes`, the next part of the stream. True if an in_hot_standby ParameterStatus
  // ended within them (in_hot_standby() is then the last value reported). A length word below
  // 4 is malformed: from then on nothing more is known (no boundary, no report).
  bool Advance(base::ByteSpan bytes);

  // The last in_hot_standby the stream reported ("on": true), if any.
  const std::optional<bool>& in_hot_standby() const { return in_hot_standby_; }
  // Whether the bytes so far ended a whole message.
  bool at_boundary() const { return !broken_ && have_ == 0 && body_left_ == 0; }

 private:
  // The gathered body is complete: true if it was an in_hot_standby report.
  bool OnParameterStatus();

  uint8_t header_[5] = {};
  size_t have_ = 0;         // header bytes seen of the current message
  uint64_t body_left_ = 0;  // body bytes of the current message still to come
  bool broken_ = false;
  bool gathering_ = false;  // the current message is a short ParameterStatus: keep its body
  uint8_t body_[kMaxScanned] = {};
  size_t body_have_ = 0;
  std::optional<bool> in_hot_standby_;
};

}  // namespace drawbridge::pg
