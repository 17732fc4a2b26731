// fly.toml -> control::AppConfig (docs/fly-toml.md). Errors name the file, line and key, as in
// "fly.toml:7: services[0].ports[1].handlers: unknown handler \"pgtls\"". Keys the edge does not
// act on are reported as warnings, not errors; every warning, too, names its file and line.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "control/types.h"

namespace drawbridge::config {

struct ParsedConfig {
  control::AppConfig config;
  std::vector<std::string> warnings;  // "file:line: key: text"
  std::string file;
  // The line of `app`, of each service ("services[0]") and each of its ports
  // ("services[0].ports[1]", "services[0].ports[1].handlers"): for messages about them that are
  // made outside the parser (the control plane's deploy checks).
  std::map<std::string, int> lines;

  // "file:line: key: " for such a message; line 1 for a key the file does not have.
  std::string Where(const std::string& key) const;
};

// Any UTF-8 text is accepted in comments and strings (config/toml_text.h); a TOML syntax error
// is reported before anything else, as "file:line: <toml++'s description>".
base::Result<ParsedConfig> ParseFlyToml(std::string_view text, std::string_view file_name);
base::Result<ParsedConfig> LoadFlyToml(const std::string& path);

// The `app` a fly.toml names, without validating the rest: "" when it names none; kInvalidArgument
// with the file's syntax error ("file:line: ...") when it is not TOML, or "file:line: app:
// expected a string". For callers that resolve the app from the file (the CLI), so that a file
// that does not parse is reported as such rather than as one without an app name.
base::Result<std::string> AppNameOfFlyToml(std::string_view text, std::string_view file_name);

}  // namespace drawbridge::config
