#include "cli/settings.h"

#include <arpa/inet.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/fly_toml.h"

namespace drawbridge::cli {
namespace {

std::string_view Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

base::Result<Endpoint> ParseEndpoint(std::string_view text) {
  Endpoint ep;
  ep.display = std::string(text);
  auto bad = [&](std::string_view why) {
    return base::Status::InvalidArgument("invalid --api endpoint '" + std::string(text) +
                                         "': " + std::string(why) +
                                         " (use unix:/path/admin.sock or http://127.0.0.1:4280)");
  };
  if (text.starts_with("unix:")) {
    std::string_view path = text.substr(5);
    if (path.starts_with("//")) path.remove_prefix(2);  // unix:///path
    if (path.empty()) return bad("empty socket path");
    ep.kind = Endpoint::Kind::kUnix;
    ep.path = std::string(path);
    ep.host_header = "localhost";
    return ep;
  }
  std::string_view rest = text;
  if (rest.starts_with("https://")) return bad("the admin API speaks plain HTTP on localhost");
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return bad("no path is allowed");
  std::string_view host, port;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("expected ':' after ']'");
      port = after.substr(1);
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos && rest.find(':') != colon) {
      return bad("write an IPv6 address in brackets");
    }
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (host.empty()) return bad("no host");
  ep.kind = Endpoint::Kind::kTcp;
  ep.host = std::string(host);
  ep.port = 4280;
  if (!port.empty() && !ParsePort(port, &ep.port)) return bad("bad port");
  std::string host_part =
      host.find(':') != std::string_view::npos ? "[" + std::string(host) + "]" : std::string(host);
  ep.host_header = host_part + ":" + std::to_string(ep.port);
  return ep;
}

std::string DefaultDataDir(bool is_root, const char* xdg_data_home, const char* home) {
  if (is_root) return "/var/lib/drawbridge";
  if (xdg_data_home != nullptr && *xdg_data_home != '\0') {
    return std::string(xdg_data_home) + "/drawbridge";
  }
  return std::string(home != nullptr ? home : ".") + "/.local/share/drawbridge";
}

std::string FirstNonEmpty(std::string_view a, std::string_view b, std::string_view c) {
  if (!a.empty()) return std::string(a);
  if (!b.empty()) return std::string(b);
  return std::string(c);
}

base::Result<std::string> ReadToken(const std::string& data_dir) {
  std::string path = data_dir + "/admin.token";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = "cannot read the admin token " + path + ": " + std::strerror(err);
    // No token yet: the daemon never ran with this data dir.
    if (err == ENOENT) {
      return base::Status::NotFound(msg + " (start `drawbridge serve` first, or give --data-dir)");
    }
    // The daemon's files are its user's (0600 token, 0700 directory): say whose.
    if (err == EACCES || err == EPERM) msg += ": " + AccessHint(path);
    return base::Status::Internal(std::move(msg));
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {  // opens, but reads nothing
    return base::Status::InvalidArgument("cannot read the admin token " + path +
                                         ": it is a directory");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token(Trim(ss.str()));
  if (token.empty()) return base::Status::InvalidArgument("the admin token " + path + " is empty");
  if (token.find_first_of("\r\n") != std::string::npos) {
    return base::Status::InvalidArgument("the admin token " + path + " has more than one line");
  }
  return token;
}

std::string AccessHint(const std::string& path) {
  // The deepest component this process can stat is the one that refuses it: the file itself,
  // or the first directory above it that it may not enter. One step per path component.
  std::string at = path;
  struct stat st {};
  while (::stat(at.c_str(), &st) != 0) {
    size_t slash = at.find_last_of('/');
    if (slash == std::string::npos || at == "/") return "run it as the daemon's user or with sudo";
    at = slash == 0 ? "/" : at.substr(0, slash);
  }
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  std::string what =
      at == path ? "the file" : (S_ISDIR(st.st_mode) ? "the directory " : "the file ") + at;
  if (st.st_uid == ::geteuid()) {
    return what + " is yours with mode " + mode + ", which does not let you read it";
  }
  std::string owner;
  if (const struct passwd* pw = ::getpwuid(st.st_uid); pw != nullptr) {
    owner = pw->pw_name;
  } else {
    owner = "uid " + std::to_string(st.st_uid);
  }
  return what + " is owned by " + owner + " with mode " + mode + "; run the command as " + owner +
         " (e.g. with sudo)";
}

std::optional<std::string> AppFromFlyToml(std::string_view toml) {
  size_t pos = 0;
  while (pos <= toml.size()) {
    size_t eol = toml.find('\n', pos);
    std::string_view line =
        Trim(toml.substr(pos, eol == std::string_view::npos ? toml.npos : eol - pos));
    pos = eol == std::string_view::npos ? toml.size() + 1 : eol + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') return std::nullopt;  // tables start: no top-level app key
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = Trim(line.substr(0, eq));
    if (key.size() >= 2 && (key[0] == '"' || key[0] == '\'') && key.back() == key[0]) {
      key = key.substr(1, key.size() - 2);
    }
    if (key != "app") continue;
    std::string_view value = Trim(line.substr(eq + 1));
    if (value.empty() || (value[0] != '"' && value[0] != '\'')) return std::nullopt;
    char quote = value[0];
    size_t end = value.find(quote, 1);
    if (end == std::string_view::npos) return std::nullopt;
    std::string name(value.substr(1, end - 1));
    if (name.empty()) return std::nullopt;
    return name;
  }
  return std::nullopt;
}

base::Result<std::string> ResolveApp(std::string_view named, const std::string& toml_path) {
  if (!named.empty()) return std::string(named);
  auto text = ReadFile(toml_path);
  if (!text) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) return std::string();  // no fly.toml: no app
    return base::Status::Internal("cannot read " + toml_path +
                                  " for the app name: " + std::strerror(err) + " (or give -a)");
  }
  // The parser's own reading of `app`, so a file that does not parse (or is not UTF-8) and has
  // no `app` line says where, with file:line, and the app is the one deploy would see. Only the
  // syntax is checked: a file whose services have a typo names its app. A broken file that still
  // has an `app = "..."` line names it too, for the commands that do not deploy it (status,
  // ips list); deploy and validate read the file themselves and report its error.
  auto app = config::AppNameOfFlyToml(*text, toml_path);
  if (app.ok()) return *app;
  if (auto named = AppFromFlyToml(*text)) return *named;
  return base::Status::InvalidArgument(app.message() + " (the app name is read from " +
                                       toml_path +
                                       " when neither -a nor $DRAWBRIDGE_APP is given)");
}

std::string DefaultCaPath(const char* home) {
  std::string dir = home != nullptr && *home != '\0' ? std::string(home) + "/.postgresql" : ".";
  return dir + "/drawbridge-ca.pem";
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return ss.str();
}

std::string ResolveConfigPath(const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return "fly.toml";
  fs::path p(path);
  std::error_code ec;
  if (path.back() == '/' || fs::is_directory(p, ec)) p /= "fly.toml";
  std::string out = p.lexically_normal().string();
  return out.empty() ? "fly.toml" : out;
}

bool IsIpAddress(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  std::string s(text);
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string UrlEncode(std::string_view text, bool keep_colon) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_colon && c == ':')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace drawbridge::cli
