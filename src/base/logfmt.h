// Values in logfmt lines (`key=value key="two words"`) that may come from a client: a user
// name, a database, a TLS server name. Such a value must not be able to start a line of its
// own or pass for another key, so control characters and malformed UTF-8 are escaped.
#pragma once

#include <string>
#include <string_view>

namespace drawbridge::base {

// "-" for an empty value; the value itself when it is plain (printable, no space, `"`, `=` or
// `\`); else the value in double quotes, with `"` and `\` backslash-escaped, \n \r \t as
// such, and any other control byte, DEL, or byte of malformed UTF-8 as \xHH.
std::string LogfmtValue(std::string_view v);

}  // namespace drawbridge::base
