#include "base/logfmt.h"

#include <cstdint>

namespace drawbridge::base {
namespace {

// The length of the well-formed UTF-8 sequence at the start of `s` (1 for ASCII), or 0 if it
// is malformed: a stray continuation byte, a truncated sequence, an overlong form, a surrogate
// or a code point above U+10FFFF.
size_t Utf8Length(std::string_view s) {
  auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  uint8_t c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

bool IsPlain(std::string_view v) {
  for (size_t i = 0; i < v.size();) {
    auto c = static_cast<uint8_t>(v[i]);
    if (c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\') return false;
    size_t n = Utf8Length(v.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace

std::string LogfmtValue(std::string_view v) {
  if (v.empty()) return "-";
  if (IsPlain(v)) return std::string(v);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < v.size();) {
    auto c = static_cast<uint8_t>(v[i]);
    size_t n = Utf8Length(v.substr(i));
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F || n == 0) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      n = 1;
    } else {
      out.append(v.substr(i, n));
    }
    i += n;
  }
  return out + "\"";
}

}  // namespace drawbridge::base
