// Small helpers shared by the unit tests: hex literals, and concatenation of byte strings.
#pragma once

#include <cctype>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/bytes.h"

namespace drawbridge::testutil {

using base::Bytes;
using base::ByteSpan;

// "00 00 00 08 04d2162f" -> bytes; whitespace is ignored. Aborts the test binary on a typo,
// since a bad literal is a bug in the test itself.
inline Bytes Hex(std::string_view hex) {
  Bytes out;
  int high = -1;
  for (char c : hex) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    int v = std::isdigit(static_cast<unsigned char>(c))
                ? c - '0'
                : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
    if (v < 0 || v > 15) __builtin_trap();
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  if (high >= 0) __builtin_trap();
  return out;
}

inline Bytes Str(std::string_view s) { return Bytes(s.begin(), s.end()); }

inline Bytes Cat(std::initializer_list<ByteSpan> parts) {
  Bytes out;
  for (ByteSpan p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline std::string ToHex(ByteSpan b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i) out.push_back(' ');
    out.push_back(kDigits[b[i] >> 4]);
    out.push_back(kDigits[b[i] & 15]);
  }
  return out;
}

}  // namespace drawbridge::testutil
