#include "config/toml_text.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace drawbridge::config {

namespace {

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

// The code point at text[i] if it starts a well-formed UTF-8 sequence (RFC 3629: the shortest
// form, no surrogate, nothing above U+10FFFF): its length, 0 otherwise.
size_t DecodeUtf8(std::string_view text, size_t i, char32_t* cp) {
  auto byte = [&text](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char lead = byte(i);
  if (lead < 0x80) {
    *cp = lead;
    return 1;
  }
  // The sequence's length, the lead's bits and the smallest code point that needs the length.
  size_t len = 0;
  char32_t c = 0;
  char32_t min = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
    c = lead & 0x1Fu;
    min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
    c = lead & 0x0Fu;
    min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
    c = lead & 0x07u;
    min = 0x10000;
  } else {
    return 0;  // a continuation byte, an overlong lead (C0, C1) or F5..FF
  }
  if (text.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0u) != 0x80u) return 0;
    c = (c << 6) | (byte(i + k) & 0x3Fu);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return len;
}

std::string CodePoint(char32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
  return buf;
}

// One pass over the bytes for UTF-8 (Utf8), one over the code points for where they stand
// (NonAsciiPlaces), then the text for toml++ (Escaped).
class Checker {
 public:
  Checker(std::string_view text, std::string_view file) : text_(text), file_(file) {}

  base::Status Utf8() {
    size_t line_start = 0;
    for (size_t i = 0; i < text_.size();) {
      char32_t c = 0;
      size_t len = DecodeUtf8(text_, i, &c);
      if (len == 0) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "not UTF-8: byte 0x%02X at column %zu",
                      static_cast<unsigned>(static_cast<unsigned char>(text_[i])),
                      i - line_start + 1);
        return Refuse(std::string(buf) +
                      " (a fly.toml is UTF-8 text; was it saved in another encoding?)");
      }
      if (c == 0) return Refuse("a NUL byte: a fly.toml is text");
      if (c == '\n') {
        ++line_;
        line_start = i + 1;
      }
      i += len;
    }
    return {};
  }

  // Follows TOML's tokens far enough to know whether a code point is in a comment or a string,
  // and in a """ string whether toml++ would test it for whitespace. Where the file is not TOML
  // this may disagree with toml++, but only after toml++'s first error, where it stops reading.
  base::Status NonAsciiPlaces() {
    line_ = 1;
    for (i_ = 0; i_ < text_.size();) {
      auto b = static_cast<unsigned char>(text_[i_]);
      if (b >= 0x80) {
        char32_t c = 0;
        size_t len = DecodeUtf8(text_, i_, &c);  // valid: Utf8() ran first
        if (auto s = NonAscii(c); !s.ok()) return s;
        i_ += len;
        continue;
      }
      if (b == '\n') ++line_;
      Ascii(static_cast<char>(b));
    }
    return {};
  }

  // The text with each character of escapes_ written as \uXXXX or \UXXXXXXXX.
  std::string Escaped() const {
    std::string out;
    out.reserve(text_.size() + escapes_.size() * 10);
    size_t from = 0;
    for (const Escape& e : escapes_) {
      char32_t ignored = 0;
      out.append(text_.substr(from, e.at - from));
      char buf[16];
      if (e.c > 0xFFFF) {
        std::snprintf(buf, sizeof buf, "\\U%08X", static_cast<unsigned>(e.c));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(e.c));
      }
      out += buf;
      from = e.at + DecodeUtf8(text_, e.at, &ignored);
    }
    out.append(text_.substr(from));
    return out;
  }

 private:
  enum class In {
    kTokens,
    kBareValue,  // a value that starts with a digit, '+', '-' or '.': toml++ scans it (below)
    kComment,
    kBasic,
    kLiteral,
    kMultiBasic,
    kMultiLiteral,
  };
  // Inside a """ string: what the last characters were.
  enum class After {
    kText,
    kBackslash,            // "\": an escape follows, or blanks and the end of the line
    kBackslashBlank,       // "\" and spaces or tabs
    kLineEndingBackslash,  // "\" and the line break: blank space is skipped up to the text
  };

  // A character toml++ is given as its escape.
  struct Escape {
    size_t at;  // offset of its first byte
    char32_t c;
  };

  base::Status Refuse(const std::string& text) const {
    return base::Status::InvalidArgument(file_ + ":" + std::to_string(line_) + ": " + text);
  }

  size_t Run(char quote) const {
    size_t n = 0;
    while (i_ + n < text_.size() && text_[i_ + n] == quote) ++n;
    return n;
  }

  base::Status NonAscii(char32_t c) {
    if (in_ == In::kTokens || in_ == In::kBareValue) {
      return Refuse("unexpected character " + CodePoint(c) +
                    " outside a string or comment (TOML allows only ASCII there)");
    }
    if (in_ == In::kBasic && after_ == After::kBackslash) after_ = After::kText;  // toml++ refuses
    if (in_ != In::kMultiBasic) return {};
    switch (after_) {
      case After::kText:
        return {};
      case After::kBackslash:
      case After::kBackslashBlank:
        return Refuse("unexpected character " + CodePoint(c) +
                      " after a backslash in a string: a backslash starts an escape (\\n, "
                      "\\u00E9, ...) or ends the line");
      case After::kLineEndingBackslash:
        // Valid TOML, but here toml++ 3.3 would test the character for whitespace; as an
        // escape it is the same character and toml++ never tests it.
        escapes_.push_back({i_, c});
        after_ = After::kText;
        return {};
    }
    return {};
  }

  void Ascii(char c) {
    switch (in_) {
      case In::kTokens:
        if (c == '"' || c == '\'') {
          bool multi = Run(c) >= 3;
          in_ = c == '"' ? (multi ? In::kMultiBasic : In::kBasic)
                         : (multi ? In::kMultiLiteral : In::kLiteral);
          after_ = After::kText;
          value_next_ = false;
          i_ += multi ? 3 : 1;
          return;
        }
        Token(c);
        break;
      case In::kBareValue:
        if (IsValueTerminator(c) && !(c == ' ' && DateBeforeSpace())) {
          in_ = In::kTokens;
          Ascii(c);  // the terminator is a token
          return;
        }
        if (c != '_') run_.push_back(c);
        break;
      case In::kComment:
        if (c == '\n') {
          in_ = In::kTokens;
          Token(c);
        }
        break;
      case In::kBasic:
        if (after_ == After::kBackslash) {
          after_ = After::kText;  // the escaped character, whatever it is
        } else if (c == '\\') {
          after_ = After::kBackslash;
        } else if (c == '"' || c == '\n') {
          in_ = In::kTokens;  // at '\n' toml++ stops with an error
        }
        break;
      case In::kLiteral:
        if (c == '\'' || c == '\n') in_ = In::kTokens;
        break;
      case In::kMultiLiteral:
        if (c == '\'') {
          CloseMulti(c);
          return;
        }
        break;
      case In::kMultiBasic:
        MultiBasic(c);
        return;
    }
    ++i_;
  }

  // toml++ ends a bare value (a number, a date, a time) at whitespace, ']', '}', ',' or '#'.
  static bool IsValueTerminator(char c) {
    return c == ' ' || c == '\t' || (c >= '\n' && c <= '\r') || c == ']' || c == '}' ||
           c == ',' || c == '#';
  }

  // What toml++ looks at to keep scanning past a space: a date such as 1979-05-27 may be
  // followed by " 07:32:00" (TOML allows a space for the 'T').
  bool DateBeforeSpace() {
    bool date = !spaced_ && run_.size() == 10 && run_[0] >= '0' && run_[0] <= '9' &&
                run_[4] == '-' && run_[7] == '-' &&
                run_.find_first_not_of("0123456789-") == std::string::npos;
    if (date) spaced_ = true;
    return date;
  }

  // Between strings and comments: follows keys, '=', arrays, inline tables and table headers
  // far enough to know where a value starts. toml++ reads a string value as a string, but a
  // value that starts with a digit, a sign or a '.' it scans up to the next value terminator,
  // testing each character on the way (quotes included) for whitespace.
  void Token(char c) {
    bool in_array = !nest_.empty() && nest_.back() == '[';
    if (c == ' ' || c == '\t' || c == '\r') return;
    if (c == '\n') {
      if (nest_.empty()) value_next_ = false;  // a new line starts with a key
      return;
    }
    if (c == '#') {
      in_ = In::kComment;
      return;
    }
    if (value_next_) {
      value_next_ = false;
      if (c == '[') {
        nest_.push_back('[');
        value_next_ = true;
        return;
      }
      if (c == '{') {
        nest_.push_back('{');
        return;
      }
      if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.') {
        in_ = In::kBareValue;
        run_.assign(1, c);
        spaced_ = false;
        return;
      }
      if (c != ']' && c != '}') return;  // true, false, inf, nan (or not TOML)
      // an empty array or a trailing comma: the bracket closes below
    }
    if (c == '=') {
      value_next_ = true;
    } else if (c == '[') {
      nest_.push_back('h');  // a table header: keys
    } else if ((c == ']' && !nest_.empty() && nest_.back() != '{') ||
               (c == '}' && !nest_.empty() && nest_.back() == '{')) {
      nest_.pop_back();
    } else if (c == ',') {
      value_next_ = in_array;
    }
  }

  // A run of `quote`s in a multi-line string: three to five end it (up to two belong to the
  // text), as toml++ reads them; fewer are text.
  void CloseMulti(char quote) {
    size_t n = Run(quote);
    if (n >= 3) {
      in_ = In::kTokens;
      n = std::min<size_t>(n, 5);
    }
    i_ += n;
  }

  void MultiBasic(char c) {
    bool blank = c == ' ' || c == '\t';
    bool line_break = c == '\n' || c == '\r';
    switch (after_) {
      case After::kBackslash:
        after_ = blank ? After::kBackslashBlank
                       : line_break ? After::kLineEndingBackslash : After::kText;
        ++i_;  // the escaped character (an escaped quote ends nothing)
        return;
      case After::kBackslashBlank:
        if (blank) break;
        if (line_break) {
          after_ = After::kLineEndingBackslash;
          break;
        }
        after_ = After::kText;  // toml++ stops with an error here
        MultiBasic(c);
        return;
      case After::kLineEndingBackslash:
        if (blank || line_break) break;
        after_ = After::kText;
        MultiBasic(c);
        return;
      case After::kText:
        if (c == '\\') {
          after_ = After::kBackslash;
        } else if (c == '"') {
          CloseMulti(c);
          return;
        }
        break;
    }
    ++i_;
  }

  std::string_view text_;
  std::string file_;
  std::vector<Escape> escapes_;
  size_t i_ = 0;
  int line_ = 1;
  In in_ = In::kTokens;
  After after_ = After::kText;
  std::vector<char> nest_;   // open arrays '[', inline tables '{' and table headers 'h'
  bool value_next_ = false;  // the next token starts a value
  std::string run_;          // the bare value so far, without '_'
  bool spaced_ = false;      // it went on past a space (a date and a time)
};

}  // namespace

base::Result<std::string> CheckTomlText(std::string_view text, std::string_view file_name) {
  if (text.starts_with(kByteOrderMark)) text.remove_prefix(kByteOrderMark.size());
  Checker checker(text, file_name);
  if (auto s = checker.Utf8(); !s.ok()) return s;
  if (auto s = checker.NonAsciiPlaces(); !s.ok()) return s;
  return checker.Escaped();
}

}  // namespace drawbridge::config
