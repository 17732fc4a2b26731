// The bytes of a fly.toml before toml++ reads them. TOML is UTF-8, so comments and strings may
// hold any text, and a leading byte order mark is allowed; but toml++ 3.3 (Debian 12's) reaches
// undefined behaviour (TOML_UNREACHABLE in is_non_ascii_horizontal_whitespace; found by fuzzing,
// marzer/tomlplusplus#190 and #295, fixed upstream after 3.3) whenever it asks whether a
// non-ASCII code point is whitespace. It asks that where TOML allows nothing but ASCII (between
// tokens, after a bare key or a value; and in a value that starts with a digit, a sign or a '.',
// which it scans up to the next space, ',', ']', '}' or '#', quotes included) and in one place
// inside a """ string: the first character after a line-ending backslash and the blank space it
// skips. So the text is checked here first: strictly valid UTF-8, no NUL, non-ASCII code points
// only in comments and strings (as toml++ reads them);
// and a non-ASCII character right after a line-ending backslash is handed to toml++ as its
// \uXXXX escape, which TOML reads as the same character. Each refusal names the file and the
// line of the first offending byte.
//
// Pure functions; no state, any thread.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace drawbridge::config {

// The text to give toml++: `text` without a leading UTF-8 byte order mark (the mark sits on line
// 1, so line numbers are unchanged) and with the escapes above; or kInvalidArgument
// "file:line: ..." for bytes that are not UTF-8, a NUL, or a non-ASCII code point where TOML
// allows only ASCII.
base::Result<std::string> CheckTomlText(std::string_view text, std::string_view file_name);

}  // namespace drawbridge::config
