#include "pg/startup.h"

#include <cctype>
#include <string>

namespace drawbridge::pg {

const char* RefuseReasonName(RefuseReason r) {
  switch (r) {
    case RefuseReason::kNone: return "none";
    case RefuseReason::kBadLength: return "bad_startup_length";
    case RefuseReason::kBadCancel: return "bad_cancel_request";
    case RefuseReason::kUnencryptedAfterSsl: return "unencrypted_after_ssl_request";
    case RefuseReason::kUnencryptedAfterGss: return "unencrypted_after_gss_request";
    case RefuseReason::kRepeatedNegotiation: return "repeated_negotiation";
    case RefuseReason::kTlsRequired: return "tls_required";
    case RefuseReason::kUnsupportedProtocol: return "unsupported_protocol";
    case RefuseReason::kBadLayout: return "bad_startup_layout";
    case RefuseReason::kNoUser: return "no_user";
    case RefuseReason::kCount: break;
  }
  return "unknown";
}

std::optional<std::string> TakeAppOption(StartupMessage* msg) {
  for (auto it = msg->params.begin(); it != msg->params.end(); ++it) {
    if (it->first != "options") continue;
    // Options are separated by whitespace, as PostgreSQL's pg_split_opts does; a backslash
    // escapes the next character.
    std::string kept, name;
    bool found = false;
    const std::string& opts = it->second;
    size_t i = 0;
    while (i < opts.size()) {
      while (i < opts.size() && std::isspace(static_cast<unsigned char>(opts[i]))) ++i;
      size_t start = i;
      while (i < opts.size() && !std::isspace(static_cast<unsigned char>(opts[i]))) {
        i += opts[i] == '\\' && i + 1 < opts.size() ? 2 : 1;
      }
      std::string token = opts.substr(start, i - start);
      if (token.empty()) continue;
      if (!found && token.rfind("app=", 0) == 0) {
        name = token.substr(4);
        found = true;
        continue;
      }
      kept += (kept.empty() ? "" : " ") + token;
    }
    if (!found) return std::nullopt;
    if (kept.empty()) {
      msg->params.erase(it);
    } else {
      it->second = kept;
    }
    return name;
  }
  return std::nullopt;
}

StartupAction StartupMachine::Refuse(RefuseReason reason, Bytes error) {
  state_ = State::kDone;
  StartupAction a;
  a.kind = StartupAction::Kind::kRefuse;
  a.reason = reason;
  a.bytes = std::move(error);
  return a;
}

void StartupMachine::Consume(size_t n) { buf_.erase(buf_.begin(), buf_.begin() + n); }

StartupAction StartupMachine::Feed(ByteSpan data) {
  if (state_ == State::kDone || state_ == State::kAwaitTls) return {};
  buf_.insert(buf_.end(), data.begin(), data.end());

  // PostgreSQL 17 direct TLS: a TLS handshake record can never start a startup packet, whose
  // length would then exceed 10000 bytes (backend_startup.c, ProcessSSLStartup).
  if (state_ == State::kFirstPacket && !buf_.empty() && buf_[0] == kTlsHandshakeRecord) {
    state_ = State::kAwaitTls;
    ssl_done_ = true;
    direct_tls_ = true;
    StartupAction a;
    a.kind = StartupAction::Kind::kStartTls;
    a.direct_tls = true;
    a.tls_prefix = std::move(buf_);
    buf_.clear();
    return a;
  }
  if (buf_.size() < 4) return {};
  uint32_t length = base::LoadU32(buf_.data());
  if (length < kMinStartupPacket || length > kMaxStartupPacket) {
    // No ErrorResponse: the peer may not speak PostgreSQL at all.
    return Refuse(RefuseReason::kBadLength, {});
  }
  if (buf_.size() < length) return {};
  return OnPacket(length);
}

StartupAction StartupMachine::OnPacket(uint32_t length) {
  uint32_t code = base::LoadU32(buf_.data() + 4);
  bool trailing = buf_.size() > length;

  if (code == kSslRequestCode && length == 8) {
    if (ssl_done_ || state_ == State::kInTls) {
      return Refuse(RefuseReason::kRepeatedNegotiation,
                    BuildFatal(sqlstate::kProtocolViolation,
                               "unexpected SSL request: TLS is already negotiated"));
    }
    if (trailing) {
      return Refuse(RefuseReason::kUnencryptedAfterSsl, BuildUnencryptedAfterSslError());
    }
    buf_.clear();
    ssl_done_ = true;
    state_ = State::kAwaitTls;
    StartupAction a;
    a.kind = StartupAction::Kind::kStartTls;
    a.bytes = {'S'};
    return a;
  }

  if (code == kGssEncRequestCode && length == 8) {
    if (gss_done_ || state_ == State::kInTls) {
      return Refuse(RefuseReason::kRepeatedNegotiation,
                    BuildFatal(sqlstate::kProtocolViolation, "unexpected GSSAPI encryption request"));
    }
    if (trailing) {
      return Refuse(RefuseReason::kUnencryptedAfterGss,
                    BuildFatal(sqlstate::kProtocolViolation,
                               "received unencrypted data after GSSAPI encryption request"));
    }
    buf_.clear();
    gss_done_ = true;
    state_ = State::kPlain;
    StartupAction a;
    a.kind = StartupAction::Kind::kReply;
    a.bytes = {'N'};
    return a;
  }

  if (code == kCancelRequestCode) {
    size_t key_len = length - 12;
    if (length < 12 + 1 || key_len > kMaxCancelKey) return Refuse(RefuseReason::kBadCancel, {});
    StartupAction a;
    a.kind = StartupAction::Kind::kCancel;
    a.cancel.pid = base::LoadU32(buf_.data() + 8);
    a.cancel.secret.assign(buf_.begin() + 12, buf_.begin() + length);
    state_ = State::kDone;
    return a;
  }

  uint32_t major = code >> 16, minor = code & 0xFFFF;
  if (major != 3) {
    return Refuse(RefuseReason::kUnsupportedProtocol,
                  BuildFatal(sqlstate::kFeatureNotSupported,
                             "unsupported frontend protocol " + std::to_string(major) + "." +
                                 std::to_string(minor) + ": server supports 3.0 to 3.2"));
  }
  return OnStartup(ByteSpan(buf_).first(length), code);
}

StartupAction StartupMachine::OnStartup(ByteSpan packet, uint32_t version) {
  std::string error;
  auto msg = ParseStartupBody(packet.subspan(8), version, &error);
  if (!msg) return Refuse(RefuseReason::kBadLayout, BuildFatal(sqlstate::kProtocolViolation, error));
  if (options_.tls_required && state_ != State::kInTls) {
    return Refuse(RefuseReason::kTlsRequired,
                  BuildFatal(sqlstate::kInvalidAuthorization,
                             "SSL/TLS is required on this port: connect with sslmode=require "
                             "or verify-full"));
  }
  if (msg->Find("user") == nullptr) {
    return Refuse(RefuseReason::kNoUser, BuildFatal(sqlstate::kInvalidAuthorization,
                                                    "no PostgreSQL user name specified in "
                                                    "startup packet"));
  }
  StartupAction a;
  a.kind = StartupAction::Kind::kStartup;
  a.startup = std::move(*msg);
  a.bytes.assign(packet.begin(), packet.end());
  a.rest.assign(buf_.begin() + packet.size(), buf_.end());
  buf_.clear();
  state_ = State::kDone;
  return a;
}

}  // namespace drawbridge::pg
