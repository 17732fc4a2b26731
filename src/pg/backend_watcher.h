// Watches what a PostgreSQL server sends during the startup phase, up to the first
// ReadyForQuery, so the edge can replace BackendKeyData with a key of its own (cancel routing:
// docs/protocol.md, "CancelRequest and BackendKeyData"), learn the server's version, and learn
// whether the server is a standby from the in_hot_standby ParameterStatus PostgreSQL 14+ sends
// at login (docs/protocol.md, "Roles"). Pure: bytes in, bytes out.
//
// Feed() appends to `out` what may be forwarded to the client at once; it holds back only an
// incomplete message header or an incomplete message of a type it reads ('K', 'S', 'E', 'Z').
// Messages of other types, or larger than kMaxWatched, pass through without being buffered, so
// memory stays bounded whatever the server sends. After ReadyForQuery (done()) every byte is
// forwarded unchanged.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "pg/messages.h"

namespace drawbridge::pg {

class BackendWatcher {
 public:
  static constexpr size_t kMaxWatched = 8192;
  // Given the server's key, returns the key the client should see.
  using KeyRewriter = std::function<CancelKey(const CancelKey&)>;

  explicit BackendWatcher(KeyRewriter rewriter) : rewriter_(std::move(rewriter)) {}

  // Fails with kInvalidArgument (SQLSTATE 08P01 through pg/sqlstate.h) when the server breaks
  // the protocol: a length below 4, a malformed BackendKeyData.
  base::Status Feed(ByteSpan in, Bytes* out);

  bool done() const { return state_ == State::kDone; }
  const std::string& server_version() const { return server_version_; }
  // The first ErrorResponse the server sent before ReadyForQuery (e.g. a failed login).
  const std::optional<ErrorFields>& error() const { return error_; }
  bool saw_key() const { return saw_key_; }
  // The in_hot_standby the server reported at login ("on": a standby in recovery), if it did
  // (PostgreSQL 14 and later do; older servers never report it).
  const std::optional<bool>& in_hot_standby() const { return in_hot_standby_; }
  // If the last Feed() call saw in_hot_standby: how many bytes it had appended to `out` when
  // that ParameterStatus was complete. So the caller can forward the login up to there and no
  // further (the edge ends a login on a machine of the wrong role before the client sees
  // ReadyForQuery). Reset by each Feed().
  const std::optional<size_t>& in_hot_standby_end() const { return in_hot_standby_end_; }

 private:
  enum class State { kHeader, kBody, kPassThrough, kDone };
  base::Status OnMessage(Bytes* out, size_t out_start);

  KeyRewriter rewriter_;
  State state_ = State::kHeader;
  Bytes pending_;          // header, or header + body of a watched message
  size_t pass_remaining_ = 0;
  std::string server_version_;
  std::optional<ErrorFields> error_;
  bool saw_key_ = false;
  std::optional<bool> in_hot_standby_;
  std::optional<size_t> in_hot_standby_end_;
};

}  // namespace drawbridge::pg
