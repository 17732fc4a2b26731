#include "pg/messages.h"

#include <algorithm>

namespace drawbridge::pg {

using base::ByteReader;
using base::ByteWriter;

const std::string* StartupMessage::Find(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return &v;
  }
  return nullptr;
}

namespace {

// Starts a typed backend message; returns the offset of its length word.
size_t BeginMessage(ByteWriter& w, char type) {
  w.U8(static_cast<uint8_t>(type));
  size_t at = w.size();
  w.U32(0);
  return at;
}

void EndMessage(ByteWriter& w, size_t length_at) {
  w.PatchU32(length_at, static_cast<uint32_t>(w.size() - length_at));
}

}  // namespace

Bytes BuildErrorResponse(std::string_view severity, std::string_view sqlstate,
                         std::string_view message, std::string_view detail,
                         std::string_view hint) {
  Bytes out;
  ByteWriter w(&out);
  size_t at = BeginMessage(w, 'E');
  w.U8('S');
  w.CString(severity);
  w.U8('V');
  w.CString(severity);
  w.U8('C');
  w.CString(sqlstate);
  w.U8('M');
  w.CString(message);
  if (!detail.empty()) {
    w.U8('D');
    w.CString(detail);
  }
  if (!hint.empty()) {
    w.U8('H');
    w.CString(hint);
  }
  w.U8(0);
  EndMessage(w, at);
  return out;
}

Bytes BuildUnencryptedAfterSslError() {
  return BuildFatal(sqlstate::kProtocolViolation, "received unencrypted data after SSL request",
                    "This could be either a client-software bug or evidence of an attempted "
                    "man-in-the-middle attack.");
}

Bytes BuildNegotiateProtocolVersion(uint32_t newest_minor_version,
                                    const std::vector<std::string>& unrecognised_options) {
  Bytes out;
  ByteWriter w(&out);
  size_t at = BeginMessage(w, 'v');
  w.U32(ProtocolVersion(3, newest_minor_version));
  w.U32(static_cast<uint32_t>(unrecognised_options.size()));
  for (const auto& o : unrecognised_options) w.CString(o);
  EndMessage(w, at);
  return out;
}

Bytes BuildStartupMessage(const StartupMessage& msg) {
  Bytes out;
  ByteWriter w(&out);
  w.U32(0);
  w.U32(msg.version);
  for (const auto& [k, v] : msg.params) {
    w.CString(k);
    w.CString(v);
  }
  w.U8(0);
  w.PatchU32(0, static_cast<uint32_t>(out.size()));
  return out;
}

Bytes BuildCancelRequest(const CancelKey& key) {
  Bytes out;
  ByteWriter w(&out);
  w.U32(static_cast<uint32_t>(12 + key.secret.size()));
  w.U32(kCancelRequestCode);
  w.U32(key.pid);
  w.Append(key.secret);
  return out;
}

Bytes BuildBackendKeyData(const CancelKey& key) {
  Bytes out;
  ByteWriter w(&out);
  size_t at = BeginMessage(w, 'K');
  w.U32(key.pid);
  w.Append(key.secret);
  EndMessage(w, at);
  return out;
}

std::optional<StartupMessage> ParseStartupBody(ByteSpan body, uint32_t version,
                                               std::string* error) {
  // protocol.sgml, StartupMessage: name/value pairs, then a zero byte as the last byte.
  if (body.empty() || body.back() != 0) {
    *error = "invalid startup packet layout: expected terminator as last byte";
    return std::nullopt;
  }
  StartupMessage msg;
  msg.version = version;
  ByteReader r(body.first(body.size() - 1));
  while (r.remaining() > 0) {
    std::string_view name, value;
    if (!r.ReadCString(&name) || !r.ReadCString(&value)) {
      *error = "invalid startup packet layout: expected terminator as last byte";
      return std::nullopt;
    }
    if (name.empty()) {
      *error = "invalid startup packet layout: empty parameter name";
      return std::nullopt;
    }
    msg.params.emplace_back(name, value);
  }
  return msg;
}

std::optional<ErrorFields> ParseErrorBody(ByteSpan body) {
  ErrorFields f;
  ByteReader r(body);
  std::string localized_severity;
  while (true) {
    uint8_t code;
    if (!r.ReadU8(&code)) return std::nullopt;
    if (code == 0) break;
    std::string_view value;
    if (!r.ReadCString(&value)) return std::nullopt;
    switch (code) {
      case 'S': localized_severity = value; break;
      case 'V': f.severity = value; break;
      case 'C': f.sqlstate = value; break;
      case 'M': f.message = value; break;
      case 'D': f.detail = value; break;
      case 'H': f.hint = value; break;
      default: break;  // "Frontends should silently ignore fields of unrecognized type."
    }
  }
  if (f.severity.empty()) f.severity = localized_severity;
  return f;
}

std::optional<CancelKey> ParseBackendKeyDataBody(ByteSpan body) {
  if (body.size() < 5 || body.size() > 4 + kMaxCancelKey) return std::nullopt;
  CancelKey key;
  key.pid = base::LoadU32(body.data());
  key.secret.assign(body.begin() + 4, body.end());
  return key;
}

std::optional<std::pair<std::string, std::string>> ParseParameterStatusBody(ByteSpan body) {
  ByteReader r(body);
  std::string_view name, value;
  if (!r.ReadCString(&name) || !r.ReadCString(&value) || r.remaining() != 0) return std::nullopt;
  return std::make_pair(std::string(name), std::string(value));
}

void MessageCursor::Advance(ByteSpan bytes) {
  size_t i = 0;
  while (i < bytes.size() && !broken_) {
    if (body_left_ > 0) {
      size_t skip = static_cast<size_t>(std::min<uint64_t>(body_left_, bytes.size() - i));
      body_left_ -= skip;
      i += skip;
      continue;
    }
    uint32_t len = 0;
    if (have_ == 0 && bytes.size() - i >= sizeof header_) {  // a whole header: the usual case
      ByteReader(bytes.subspan(i + 1, 4)).ReadU32(&len);
      i += sizeof header_;
    } else {  // a header cut between two reads: gathered a byte at a time
      header_[have_++] = bytes[i++];
      if (have_ < sizeof header_) continue;
      ByteReader(ByteSpan(header_).subspan(1)).ReadU32(&len);
      have_ = 0;
    }
    if (len < 4) {
      broken_ = true;
    } else {
      body_left_ = len - 4;
    }
  }
}

}  // namespace drawbridge::pg
