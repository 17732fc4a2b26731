// Where the CLI finds its daemon, its token and its app: pure functions over strings, plus small
// file readers. Nothing here talks to the network.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace drawbridge::cli {

// An admin API endpoint: "unix:/path/admin.sock" or "http://127.0.0.1:4280" ("http://[::1]:4280",
// "http://localhost:4280"; a bare "127.0.0.1:4280" is read as http). No https: the API is local.
struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;         // kUnix
  std::string host;         // kTcp, without brackets
  uint16_t port = 0;        // kTcp
  std::string host_header;  // the Host header to send: "localhost" on a Unix socket
  std::string display;      // as given, for messages
};

base::Result<Endpoint> ParseEndpoint(std::string_view text);

// The daemon's default data dir: /var/lib/drawbridge for root, else $XDG_DATA_HOME/drawbridge,
// else $HOME/.local/share/drawbridge. xdg_data_home and home may be null.
std::string DefaultDataDir(bool is_root, const char* xdg_data_home, const char* home);

// First non-empty value of: flag, environment, fallback.
std::string FirstNonEmpty(std::string_view a, std::string_view b, std::string_view c = {});

// The content of <data_dir>/admin.token without surrounding whitespace; an error that names the
// file and says what to do: start the daemon when it is missing; when it may not be read, whose
// it is (AccessHint); when it is empty.
base::Result<std::string> ReadToken(const std::string& data_dir);

// Why this process may not open `path`: the owner and mode of the file, or of the first
// directory above it that it may not enter, and as whom to run instead, e.g. "the file is owned
// by root with mode 0600; run the command as root (e.g. with sudo)".
std::string AccessHint(const std::string& path);

// The app a command acts on: `named` (-a, or $DRAWBRIDGE_APP) when not empty, else the `app` of
// the fly.toml at toml_path; "" when that file does not exist or names no app (the command then
// says flyctl's "missing an app name"). A file that does not parse and has no `app` line is an
// error with the parser's file:line, so a syntax error is not reported as a missing name.
base::Result<std::string> ResolveApp(std::string_view named, const std::string& toml_path);

// Where `pg connection-string` tells clients to keep the built-in CA for sslrootcert:
// $HOME/.postgresql/drawbridge-ca.pem (./drawbridge-ca.pem without a HOME). libpq does not
// expand `~`, so the path is spelt out.
std::string DefaultCaPath(const char* home);

// `app = "name"` (or 'name') at the top level of a fly.toml text, before any [table]; nullopt
// when there is none. Comments and whitespace are ignored. The fallback for a file that does not
// parse.
std::optional<std::string> AppFromFlyToml(std::string_view toml);

// Reads a whole file; nullopt when it cannot be opened.
std::optional<std::string> ReadFile(const std::string& path);

// flyctl's ResolveConfigFileFromPath: a directory (or a path ending in '/') means
// <dir>/fly.toml; anything else is the file itself. "" means "fly.toml". The result is
// lexically normal ("./fly.toml" -> "fly.toml").
std::string ResolveConfigPath(const std::string& path);

// True for a literal IPv4 or IPv6 address (what `ips release` accepts).
bool IsIpAddress(std::string_view text);

// Percent-encodes for a URL query value or path segment (RFC 3986 unreserved kept; ':' kept
// when keep_colon, for IPv6 addresses in paths).
std::string UrlEncode(std::string_view text, bool keep_colon = false);

}  // namespace drawbridge::cli
