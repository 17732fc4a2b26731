// fly.toml -> control::AppConfig (docs/fly-toml.md). Errors name the file, line and key, as in
// "fly.toml:7: services[0].ports[1].handlers: unknown handler \"pgtls\"". Keys the edge does not
// act on are reported as warnings, not errors.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "control/types.h"

namespace drawbridge::config {

struct ParsedConfig {
  control::AppConfig config;
  std::vector<std::string> warnings;  // "file:line: key: text"
};

base::Result<ParsedConfig> ParseFlyToml(std::string_view text, std::string_view file_name);
base::Result<ParsedConfig> LoadFlyToml(const std::string& path);

}  // namespace drawbridge::config
