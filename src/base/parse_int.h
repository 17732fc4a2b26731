// Integers from text someone else wrote (a user, a config file, a machine, a URL): the whole
// text must be the number and it must lie in [min, max]. Never throws, unlike std::stoi, whose
// std::out_of_range on "99999999999" would escape a request handler and end the process.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/status.h"

namespace drawbridge::base {

// Digits in `base` (2-36; letters either case), with an optional leading '-': no '+', no
// spaces, no "0x", nothing after the last digit. kInvalidArgument, quoting the text, when it is
// not a number or lies outside [min, max]; callers prefix what the number was for.
Result<int64_t> ParseInt(std::string_view text, int64_t min, int64_t max, int base = 10);

}  // namespace drawbridge::base
