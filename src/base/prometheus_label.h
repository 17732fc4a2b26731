// Prometheus text exposition format: a label value as it goes between the double quotes, with
// backslash, double quote and newline escaped (the three the format requires). Shared by every
// module that writes /metrics lines with labels. Pure.
#pragma once

#include <string>
#include <string_view>

namespace drawbridge::base {

std::string PrometheusLabelValue(std::string_view value);

}  // namespace drawbridge::base
