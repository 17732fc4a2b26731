#include "base/parse_int.h"

#include <charconv>
#include <string>
#include <system_error>

namespace drawbridge::base {

namespace {

// The text as a message may quote it: long or binary input is cut and escaped, so an error
// about a machine's reply or a URL never carries a megabyte or a terminal escape.
std::string Quote(std::string_view text) {
  constexpr size_t kMaxQuoted = 40;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMaxQuoted; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxQuoted) out += "...";
  return out + "\"";
}

}  // namespace

Result<int64_t> ParseInt(std::string_view text, int64_t min, int64_t max, int base) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  // from_chars takes a '-' but no '+' and no leading space, which is the syntax wanted.
  auto [ptr, ec] = text.empty() || base < 2 || base > 36
                       ? std::from_chars_result{text.data(), std::errc::invalid_argument}
                       : std::from_chars(text.data(), end, value, base);
  if (ec == std::errc::invalid_argument || ptr != end) {
    return Status::InvalidArgument(Quote(text) + " is not a number");
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    return Status::InvalidArgument(Quote(text) + " is out of range (" + std::to_string(min) +
                                   " to " + std::to_string(max) + ")");
  }
  return value;
}

}  // namespace drawbridge::base
