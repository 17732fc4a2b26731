#include "cli/commands.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>

#include "base/utc_time.h"
#include "cli/settings.h"
#include "config/toml_text.h"

namespace drawbridge::cli {
namespace {

using base::Status;

// A field of a JSON object as text: "" when missing or null; numbers and booleans as JSON.
std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

int64_t Int(const Json& j, const char* key, int64_t fallback = 0) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  return it->get<int64_t>();
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

Status RequireApp(const std::string& app) {
  if (!app.empty()) return Status();
  return Status::InvalidArgument(
      "the config for your app is missing an app name, add an app field to the fly.toml file "
      "or specify with the -a flag");
}

std::string AppPath(const std::string& app) { return "/v1/apps/" + UrlEncode(app); }

Status ExpectArray(const Json& j, std::string_view what) {
  if (j.is_array()) return Status();
  return Status::InvalidArgument("the daemon's answer to " + std::string(what) + " is not a list");
}

Status PrintJson(Context& ctx, const Json& j) {
  *ctx.ui.out << RenderJson(j);
  return Status();
}

Status PrintLine(Context& ctx, const std::string& line) {
  *ctx.ui.out << line << "\n";
  return Status();
}

// Prints the API's warnings, one per line, on stderr.
void PrintWarnings(Context& ctx, const Json& answer) {
  if (!answer.is_object() || !answer.contains("warnings") || !answer["warnings"].is_array()) {
    return;
  }
  for (const auto& w : answer["warnings"]) {
    *ctx.ui.err << "Warning: " << (w.is_string() ? w.get<std::string>() : w.dump()) << "\n";
  }
}

// Asks a question; an error that names the flag when nobody can answer.
base::Result<bool> Confirm(Context& ctx, std::string_view question, std::string_view hint) {
  if (!ctx.ui.interactive || !ctx.ui.confirm) return NonInteractiveError(hint);
  return ctx.ui.confirm(question);
}

base::Result<std::string> ReadConfig(const std::string& path) {
  auto text = ReadFile(path);
  if (!text) {
    int err = errno;
    std::string msg = "cannot read " + path + ": " + std::strerror(err);
    return err == ENOENT ? Status::NotFound(std::move(msg)) : Status::Internal(std::move(msg));
  }
  // The request is JSON, which carries only UTF-8: a file that is not (Latin-1, say) is refused
  // here with its file:line, rather than sent with its bad bytes replaced and accepted.
  if (auto checked = config::CheckTomlText(*text, path); !checked.ok()) return checked.status();
  return *text;
}

std::string SizeText(size_t bytes) {
  char buf[32];
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  double kib = static_cast<double>(bytes) / 1024;
  if (kib < 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", kib);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", kib / 1024);
  }
  return std::string(buf) + " (" + std::to_string(bytes) + " bytes)";
}

// A request that carries `file` (its text JSON-escaped inside `body`) must fit the admin API's
// limit; measured on the body as the client encodes it, since escaping makes it larger than the
// file. Refused before anything is sent, naming the file.
Status FitsOneRequest(const Json& body, const std::string& file, size_t file_size) {
  size_t encoded = Client::Encode(body).size();
  if (encoded <= kMaxRequestBody) return Status();
  std::string limit = "1 MiB (" + std::to_string(kMaxRequestBody) + " bytes)";
  return Status::InvalidArgument(file + " is " + SizeText(file_size) +
                                 ", too large to send: the admin API takes requests of at most " +
                                 limit + ", and this one would be " + std::to_string(encoded) +
                                 " bytes");
}

// Writes a file through a temporary next to it, so a failed write leaves the old one.
Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status::Internal("cannot write " + tmp + ": " + std::strerror(errno));
    out << content;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return Status::Internal("cannot write " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return Status::Internal("cannot write " + path + ": " + std::strerror(err));
  }
  return Status();
}

std::string PortsText(const Json& ports) {
  if (ports.is_number()) return ports.dump();
  if (!ports.is_array() || ports.empty()) return "";
  std::vector<int64_t> v;
  for (const auto& p : ports) {
    if (!p.is_number()) return ports.dump();
    v.push_back(p.get<int64_t>());
  }
  if (v.size() == 1) return std::to_string(v[0]);
  bool range = true;
  for (size_t i = 1; i < v.size(); ++i) range = range && v[i] == v[i - 1] + 1;
  if (range) return std::to_string(v.front()) + "-" + std::to_string(v.back());
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

Status PrintIps(Context& ctx, const Json& ips) {
  *ctx.ui.out << RenderTable("", {"Version", "IP", "Type", "Region", "Created At"},
                             IpRows(ips, ctx.ui.now()));
  return Status();
}

// The major version of a Postgres version string or image tag: "15.18 (Debian ...)" -> "15",
// "9.6.24" -> "9.6", "latest" -> "".
std::string PgMajor(std::string_view v) {
  size_t i = 0;
  while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i;
  if (i == 0) return "";
  std::string major(v.substr(0, i));
  if (major == "9" && i + 1 < v.size() && v[i] == '.' &&
      std::isdigit(static_cast<unsigned char>(v[i + 1]))) {
    major += std::string(".") + v[i + 1];
  }
  return major;
}

// ------------------------------------------------------------------------------ the common run
//
// A command is one run: send a request (on an app: found by the caller, required here with
// flyctl's message), then print the answer as JSON with --json, or else as the command's printer
// says (a flyctl table, a line), which may also refuse the answer. An error at any step comes back
// as the command's Status; Main prints it and exits 1. Three commands use the parts themselves:
// ips release and status send more than one request, and config save writes the answer to a file.

// One admin API request.
struct Request {
  std::string_view method;   // "GET", "POST" or "DELETE"
  std::string target;        // "/v1/...", or with RunOnApp the part after /v1/apps/<app>
  std::optional<Json> body;  // POST only
};

Request Get(std::string target) { return {"GET", std::move(target), std::nullopt}; }
Request Post(std::string target, Json body) { return {"POST", std::move(target), std::move(body)}; }
Request Delete(std::string target) { return {"DELETE", std::move(target), std::nullopt}; }

base::Result<Json> Send(Context& ctx, const Request& request) {
  return ctx.client->Call(request.method, request.target, request.body ? &*request.body : nullptr);
}

// What a command prints of an answer without --json.
using Printer = std::function<Status(const Json& answer)>;

Status Show(Context& ctx, const Json& answer, const Printer& print) {
  return ctx.json ? PrintJson(ctx, answer) : print(answer);
}

Status Run(Context& ctx, const Request& request, const Printer& print) {
  auto answer = Send(ctx, request);
  if (!answer.ok()) return answer.status();
  return Show(ctx, *answer, print);
}

Status RunOnApp(Context& ctx, const std::string& app, Request request, const Printer& print) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  request.target = AppPath(app) + request.target;
  return Run(ctx, request, print);
}

using Row = std::vector<std::string>;

// The printer of a listing: the answer must be a list; a table of one row per element (`row`
// gets the element and the time the answer came).
Printer Table(Context& ctx, std::string what, std::vector<std::string> headers,
              std::function<Row(const Json& element, TimePoint now)> row) {
  return [&ctx, what = std::move(what), headers = std::move(headers),
          row = std::move(row)](const Json& list) {
    if (auto s = ExpectArray(list, what); !s.ok()) return s;
    TimePoint now = ctx.ui.now();
    std::vector<Row> rows;
    for (const auto& element : list) rows.push_back(row(element, now));
    *ctx.ui.out << RenderTable("", headers, rows);
    return Status();
  };
}

}  // namespace

Status NonInteractiveError(std::string_view hint) {
  std::string msg = "yes flag must be specified when not running interactively";
  if (!hint.empty()) msg += " (" + std::string(hint) + ")";
  return Status::InvalidArgument(std::move(msg));
}

std::string IpTypeLabel(std::string_view type) {
  if (type == "v4" || type == "v6") return "public (dedicated)";
  if (type == "shared_v4") return "public (shared)";
  if (type == "private_v6") return "private";
  return std::string(type);
}

std::vector<std::vector<std::string>> IpRows(const Json& ips, TimePoint now) {
  std::vector<std::vector<std::string>> rows;
  if (!ips.is_array()) return rows;
  for (const auto& ip : ips) {
    std::string type = Str(ip, "type");
    std::string version = Str(ip, "version");
    if (version.empty()) version = type == "v6" || type == "private_v6" ? "v6" : "v4";
    rows.push_back({version, Str(ip, "address"), IpTypeLabel(type), Str(ip, "region"),
                    RelativeTimeOf(Str(ip, "created_at"), now)});
  }
  return rows;
}

std::vector<std::vector<std::string>> ServiceRows(const Json& services) {
  std::vector<std::vector<std::string>> rows;
  if (!services.is_array()) return rows;
  const Json* previous = nullptr;
  for (const auto& s : services) {
    // flyctl leaves PROTOCOL blank on the second and later ports of one service; the daemon
    // says which entries share a service only if it sends a "service" index.
    std::string protocol = Upper(Str(s, "protocol"));
    if (previous != nullptr && s.contains("service") && previous->contains("service") &&
        (*previous)["service"] == s["service"]) {
      protocol.clear();
    }
    std::string handlers;
    if (s.contains("handlers") && s["handlers"].is_array()) {
      for (const auto& h : s["handlers"]) {
        if (!handlers.empty()) handlers += ",";
        handlers += Upper(h.is_string() ? h.get<std::string>() : h.dump());
      }
    }
    std::string ports = PortsText(s.contains("ports") ? s["ports"] : Json());
    if (ports.empty()) ports = Str(s, "port");
    std::string force =
        s.contains("force_https") && s["force_https"].is_boolean() && s["force_https"].get<bool>()
            ? "True"
            : "False";
    rows.push_back(
        {protocol, ports + " => " + Str(s, "internal_port") + " [" + handlers + "]", force});
    previous = &s;
  }
  return rows;
}

std::vector<std::vector<std::string>> NodeRows(const Json& nodes, TimePoint now) {
  std::vector<std::vector<std::string>> rows;
  if (!nodes.is_array()) return rows;
  for (const auto& n : nodes) {
    std::string last_seen;
    if (int64_t t = Int(n, "last_seen"); t > 0) {
      last_seen = RelativeTime(std::chrono::system_clock::from_time_t(static_cast<time_t>(t)), now);
    }
    bool healthy = !n.is_object() || !n.contains("store_healthy") || n["store_healthy"] != false;
    std::string store = healthy ? "ok" : "degraded";
    if (!healthy && !Str(n, "store_error").empty()) store += ": " + Str(n, "store_error");
    std::string errors;
    if (n.is_object() && n.contains("port_errors")) {
      const Json& pe = n["port_errors"];
      auto add = [&](const std::string& port, const std::string& why) {
        errors += (errors.empty() ? "" : "; ") + port + ": " + why;
      };
      if (pe.is_object()) {
        for (auto it = pe.begin(); it != pe.end(); ++it) {
          add(it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
        }
      } else if (pe.is_array()) {
        for (const auto& e : pe) add(Str(e, "port"), Str(e, "error"));
      }
    }
    std::string listening;
    if (n.is_object() && n.contains("listening") && n["listening"].is_array()) {
      for (const auto& p : n["listening"]) listening += (listening.empty() ? "" : ",") + p.dump();
    }
    rows.push_back({Str(n, "name"), Str(n, "id"), last_seen, Str(n, "applied_revision"), store,
                    listening, errors});
  }
  return rows;
}

namespace {

// The ROLE column: the role the edge learned; while it has learned none ("unknown"), the one
// the operator declared with `machines add --role`, if any. A daemon without health fields
// sends only the declared one, as "role".
std::string RoleText(const Json& m) {
  std::string role = Str(m, "role");
  if (!m.is_object() || !m.contains("health")) return role;
  if (!role.empty() && role != "unknown") return role;
  std::string declared = Str(m, "declared_role");
  return declared.empty() ? "unknown" : declared;
}

// The LAST CHECK column: "passing (3s ago)", "failing: connection refused (1s ago)", "none yet";
// a machine a client's connect found down since its last passing check says so first.
std::string LastCheckText(const Json& m, TimePoint now) {
  if (!m.is_object() || !m.contains("health")) return "";
  std::string check = Str(m, "last_check");
  std::string at = RelativeTimeOf(Str(m, "last_check_at"), now);
  std::string text = check.empty() ? "none yet" : at.empty() ? check : check + " (" + at + ")";
  if (Str(m, "health") == "unhealthy" && !check.starts_with("failing")) {
    text = "connect failed; last check " + text;
  }
  return text;
}

}  // namespace

std::vector<std::vector<std::string>> MachineRows(const Json& machines, TimePoint now) {
  std::vector<std::vector<std::string>> rows;
  if (!machines.is_array()) return rows;
  for (const auto& m : machines) {
    rows.push_back({Str(m, "id"), Str(m, "address"), Str(m, "health"), RoleText(m),
                    Str(m, "sessions"), LastCheckText(m, now), Str(m, "region"),
                    RelativeTimeOf(Str(m, "created_at"), now)});
  }
  return rows;
}

// ------------------------------------------------------------------------------ apps

Status AppsCreate(Context& ctx, const std::string& name) {
  if (name.empty()) return Status::InvalidArgument("an app name is required: apps create NAME");
  return Run(ctx, Post("/v1/apps", Json{{"name", name}}), [&](const Json& created) {
    std::string shown = Str(created, "name");
    return PrintLine(ctx, "New app created: " + (shown.empty() ? name : shown));
  });
}

Status AppsList(Context& ctx) {
  return Run(ctx, Get("/v1/apps"),
             Table(ctx, "apps list", {"Name", "Machines", "IPs", "Release", "Created At"},
                   [](const Json& a, TimePoint now) -> Row {
                     int64_t release = Int(a, "release");
                     return {Str(a, "name"), Str(a, "machines"), Str(a, "ips"),
                             release > 0 ? "v" + std::to_string(release) : "",
                             RelativeTimeOf(Str(a, "created_at"), now)};
                   }));
}

Status AppsDestroy(Context& ctx, const std::string& name, bool yes) {
  if (name.empty()) return Status::InvalidArgument("an app name is required: apps destroy NAME");
  if (!yes) {
    *ctx.ui.err << "Destroying an app is not reversible.\n";
    auto ok = Confirm(ctx, "Destroy app " + name + "?", "use --yes to destroy " + name);
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status();
  }
  return Run(ctx, Delete(AppPath(name)),
             [&](const Json&) { return PrintLine(ctx, "Destroyed app " + name); });
}

// ------------------------------------------------------------------------------ machines

Status MachinesAdd(Context& ctx, const std::string& app, const MachineSpec& machine) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (machine.address.empty()) {
    return Status::InvalidArgument("an address is required: machines add ADDR");
  }
  Json body{{"address", machine.address}};
  if (!machine.region.empty()) body["region"] = machine.region;
  if (!machine.role.empty()) body["role"] = machine.role;
  return RunOnApp(ctx, app, Post("/machines", std::move(body)), [&](const Json& added) {
    return PrintLine(ctx,
                     "Added machine " + Str(added, "id") + " (" + machine.address + ") to " + app);
  });
}

Status MachinesList(Context& ctx, const std::string& app) {
  return RunOnApp(ctx, app, Get("/machines"), [&](const Json& machines) {
    if (auto s = ExpectArray(machines, "machines list"); !s.ok()) return s;
    *ctx.ui.out << RenderTable("", {"ID", "Address", "Health", "Role", "Sessions", "Last Check",
                                    "Region", "Created At"},
                               MachineRows(machines, ctx.ui.now()));
    return Status();
  });
}

Status MachinesRemove(Context& ctx, const std::string& app, const std::string& id) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (id.empty()) return Status::InvalidArgument("a machine id is required: machines remove ID");
  return RunOnApp(ctx, app, Delete("/machines/" + UrlEncode(id)), [&](const Json&) {
    return PrintLine(ctx, "Removed machine " + id + " from " + app);
  });
}

// ------------------------------------------------------------------------------ ips

Status IpsList(Context& ctx, const std::string& app) {
  return RunOnApp(ctx, app, Get("/ips"), [&](const Json& ips) {
    if (auto s = ExpectArray(ips, "ips list"); !s.ok()) return s;
    return PrintIps(ctx, ips);
  });
}

namespace {

Status Allocate(Context& ctx, const std::string& app, const char* type) {
  return RunOnApp(ctx, app, Post("/ips", Json{{"type", type}}),
                  [&](const Json& ip) { return PrintIps(ctx, Json::array({ip})); });
}

}  // namespace

Status IpsAllocateV4(Context& ctx, const std::string& app, bool shared, bool yes) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (!shared && !yes) {
    if (ctx.ui.interactive) {
      *ctx.ui.err << "You are allocating a dedicated IPv4 address: it is taken from the "
                     "operator's IPv4 pool for this app alone.\n"
                     "Alternatively, you could allocate a shared IPv4 address with the "
                     "--shared flag.\n";
    }
    auto ok = Confirm(ctx, "Are you ok with this?", "or use --shared for a shared IPv4 address");
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status::InvalidArgument("user aborted");
  }
  return Allocate(ctx, app, shared ? "shared_v4" : "v4");
}

Status IpsAllocateV6(Context& ctx, const std::string& app) { return Allocate(ctx, app, "v6"); }

// One request per address; each is printed as it is released, and with --json all the answers
// as one list at the end.
Status IpsRelease(Context& ctx, const std::string& app, const std::vector<std::string>& addresses) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (addresses.empty()) {
    return Status::InvalidArgument("at least one address is required: ips release IP");
  }
  for (const auto& a : addresses) {
    if (!IsIpAddress(a)) return Status::InvalidArgument("Invalid IP address: '" + a + "'");
  }
  Json answers = Json::array();
  for (const auto& a : addresses) {
    auto r = Send(ctx, Delete(AppPath(app) + "/ips/" + UrlEncode(a, /*keep_colon=*/true)));
    if (!r.ok()) return r.status();
    if (ctx.json) {
      answers.push_back(*r);
      continue;
    }
    std::string address = Str(*r, "address");
    std::string owner = Str(*r, "app");
    *ctx.ui.out << "Released " << (address.empty() ? a : address) << " from "
                << (owner.empty() ? app : owner) << "\n";
  }
  return ctx.json ? PrintJson(ctx, answers) : Status();
}

// ------------------------------------------------------------------------------ config, deploy

// Writes the file with or without --json: the answer is the file, not something to show.
Status ConfigSave(Context& ctx, const std::string& app, const std::string& path, bool yes) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  std::string file = ResolveConfigPath(path);
  auto r = Send(ctx, Get(AppPath(app) + "/config"));
  if (!r.ok()) return r.status();
  if (!r->is_object() || !(*r)["toml"].is_string()) {
    return Status::InvalidArgument("the daemon's answer to config has no toml");
  }
  std::error_code ec;
  if (std::filesystem::exists(file, ec) && !yes) {
    auto ok = Confirm(
        ctx, "An existing configuration file has been found\nOverwrite file '" + file + "'",
        "an existing configuration file has been found: use --yes to overwrite '" + file + "'");
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status();
  }
  std::string toml = (*r)["toml"].get<std::string>();
  if (!toml.empty() && toml.back() != '\n') toml.push_back('\n');
  if (auto s = WriteFileAtomically(file, toml); !s.ok()) return s;
  return PrintLine(ctx, "Wrote config file " + file);
}

Status ConfigShow(Context& ctx, const std::string& app) {
  return RunOnApp(ctx, app, Get("/config"), [&](const Json& config) {
    std::string toml = Str(config, "toml");
    *ctx.ui.out << toml;
    if (!toml.empty() && toml.back() != '\n') *ctx.ui.out << "\n";
    return Status();
  });
}

Status ConfigValidate(Context& ctx, const std::string& app, const std::string& path) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  std::string file = ResolveConfigPath(path);
  auto text = ReadConfig(file);
  if (!text.ok()) return text.status();
  Json body{{"toml", *text}, {"file", file}};
  if (auto s = FitsOneRequest(body, file, text->size()); !s.ok()) return s;
  return RunOnApp(ctx, app, Post("/config/validate", std::move(body)), [&](const Json& verdict) {
    PrintWarnings(ctx, verdict);
    if (verdict.is_object() && verdict.contains("valid") && verdict["valid"] == false) {
      std::string errors = Str(verdict, "error");
      if (errors.empty()) errors = file + ": invalid configuration";
      return Status::InvalidArgument(errors);
    }
    return PrintLine(ctx, "✓ Configuration is valid");
  });
}

Status Deploy(Context& ctx, const std::string& app, const std::string& config_path,
              const std::string& image) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto text = ReadConfig(config_path);
  if (!text.ok()) return text.status();
  Json body{{"toml", *text}, {"file", config_path}};
  if (!image.empty()) body["image"] = image;
  if (auto s = FitsOneRequest(body, config_path, text->size()); !s.ok()) return s;
  auto release = Send(ctx, Post(AppPath(app) + "/deploy", std::move(body)));
  if (!release.ok()) return release.status();
  std::string version = "v" + std::to_string(Int(*release, "release"));
  auto shown = Show(ctx, *release, [&](const Json& r) {
    PrintWarnings(ctx, r);
    return PrintLine(ctx, "Release " + version + " created");
  });
  if (!shown.ok()) return shown;
  // A public port the edge could not open (taken by another process, or this daemon's own API
  // port): the release is kept and the edge keeps trying, but the deploy did not do all it was
  // asked, so it fails (also with --json, whose answer lists them under "port_errors").
  const Json* errors = release->is_object() && release->contains("port_errors")
                           ? &(*release)["port_errors"]
                           : nullptr;
  if (!errors || !errors->is_array() || errors->empty()) return Status();
  for (const auto& e : *errors) {
    *ctx.ui.err << "Error: port " << Str(e, "port") << " is not listening: " << Str(e, "error")
                << "\n";
  }
  return Status::Unavailable("release " + version +
                             " is kept and served on its other ports; the edge tries the "
                             "failed ones again every few seconds (see drawbridge status)");
}

// ------------------------------------------------------------------------------ services, image

Status ServicesList(Context& ctx, const std::string& app) {
  return RunOnApp(ctx, app, Get("/services"), [&](const Json& services) {
    if (auto s = ExpectArray(services, "services list"); !s.ok()) return s;
    // No "Services" title, so the output reads exactly as the guide's.
    *ctx.ui.out << RenderTable("", {"Protocol", "Ports", "Force HTTPS"}, ServiceRows(services));
    return Status();
  });
}

namespace {

Status PrintImage(Context& ctx, const Json& image) {
  auto or_na = [&](const char* key) {
    std::string v = Str(image, key);
    return v.empty() ? std::string("N/A") : v;
  };
  *ctx.ui.out << RenderVerticalTable("Image Details", {{"Registry", or_na("registry")},
                                                       {"Repository", or_na("repository")},
                                                       {"Tag", or_na("tag")},
                                                       {"Version", or_na("version")}});
  std::map<std::string, std::string> majors;  // major -> one machine that runs it
  if (image.contains("machines") && image["machines"].is_array()) {
    for (const auto& m : image["machines"]) {
      std::string version = Str(m, "server_version");
      std::string id = Str(m, "id");
      if (version.empty()) {
        *ctx.ui.out << "Machine " << id << ": PostgreSQL server version not observed yet\n";
      } else {
        *ctx.ui.out << "Machine " << id << ": PostgreSQL " << version << "\n";
        if (std::string major = PgMajor(version); !major.empty()) majors[major] = id;
      }
    }
  }
  if (majors.size() > 1) {
    *ctx.ui.err << "Warning: major version mismatch detected between machines\n";
  }
  std::string tag_major = PgMajor(Str(image, "tag"));
  if (majors.size() == 1 && !tag_major.empty() && majors.begin()->first != tag_major) {
    *ctx.ui.err << "Warning: the image tag " << Str(image, "tag")
                << " is not the major version the machines run (" << majors.begin()->first << ")\n";
  }
  return Status();
}

}  // namespace

Status ImageShow(Context& ctx, const std::string& app) {
  return RunOnApp(ctx, app, Get("/image"),
                  [&](const Json& image) { return PrintImage(ctx, image); });
}

namespace {

// A path as a URI query value: percent-encoded, but with its '/' kept so it reads as a path.
std::string PathInQuery(std::string_view path) {
  std::string out;
  for (char c : path) out += c == '/' ? std::string("/") : UrlEncode(std::string_view(&c, 1));
  return out;
}

// A path as one shell word: as is when it holds nothing the shell reads, else single-quoted.
std::string ShellWord(const std::string& path) {
  constexpr std::string_view kPlain =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,:@%";
  if (!path.empty() && path.find_first_not_of(kPlain) == std::string::npos) return path;
  std::string out = "'";
  for (char c : path) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

Status PgConnectionString(Context& ctx, const std::string& app, const std::string& internal_url,
                          const std::string& ca_path) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  std::string target = AppPath(app) + "/connection-string";
  if (!internal_url.empty()) target += "?internal=" + UrlEncode(internal_url);
  auto answer = Send(ctx, Get(std::move(target)));
  if (!answer.ok()) return answer.status();
  std::string url = Str(*answer, "url");
  if (url.empty()) return Status::InvalidArgument("the daemon's answer has no url");
  // The daemon's verify-full form names no CA file (the path is this client's): add ours, so
  // the string works as printed once the CA is saved there.
  std::string verify_full = Str(*answer, "verify_full_url");
  if (!verify_full.empty() && verify_full.find("sslrootcert=") == std::string::npos) {
    verify_full += (verify_full.find('?') == std::string::npos ? "?" : "&") +
                   std::string("sslrootcert=") + PathInQuery(ca_path);
  }
  if (ctx.json) {
    Json out = *answer;
    if (!verify_full.empty()) {
      out["verify_full_url"] = verify_full;
      out["sslrootcert"] = ca_path;
    }
    return PrintJson(ctx, out);
  }
  *ctx.ui.out << url << "\n";
  if (verify_full.empty()) return Status();  // a daemon that does not offer it
  *ctx.ui.out << verify_full << "\n";
  std::string dir = std::filesystem::path(ca_path).parent_path().string();
  *ctx.ui.err << "verify-full checks the edge's certificate against the built-in CA; save it "
                 "first: "
              << (dir.empty() || dir == "." ? "" : "mkdir -p " + ShellWord(dir) + " && ")
              << "drawbridge certs ca > " << ShellWord(ca_path) << "\n";
  return Status();
}

// ------------------------------------------------------------------------------ status

namespace {

void PrintDaemonStatus(Context& ctx, const Json& daemon) {
  Json conns = daemon.contains("connections") ? daemon["connections"] : Json();
  std::string ports;
  if (daemon.contains("ports") && daemon["ports"].is_array()) {
    for (const auto& p : daemon["ports"]) ports += (ports.empty() ? "" : ", ") + p.dump();
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Version", Str(daemon, "version")},
      {"Store", Str(daemon, "store")},
      {"Node", Str(daemon, "node")}};
  // A daemon that reports its store's health (every one since fleet mode) gets two rows more.
  if (daemon.is_object() && daemon.contains("health")) {
    std::string health = Str(daemon, "health");
    if (!Str(daemon, "store_error").empty()) health += ": " + Str(daemon, "store_error");
    rows.push_back({"Health", health});
    rows.push_back({"Applied Revision", Str(daemon, "applied_revision")});
    if (Str(daemon, "health") != "ok") {
      *ctx.ui.err << "Warning: the store is not reachable; this node serves its last applied "
                     "state and refuses writes\n";
    }
  }
  rows.push_back({"Domain", Str(daemon, "domain")});
  rows.push_back({"Routes", "v" + Str(daemon, "routes_version")});
  rows.push_back({"Ports", ports.empty() ? "none" : ports});
  // A port of the route table that the edge could not open gets a row of its own, and the
  // command says so on stderr.
  if (daemon.contains("listeners") && daemon["listeners"].is_array()) {
    for (const auto& l : daemon["listeners"]) {
      if (Str(l, "state") != "failed") continue;
      rows.push_back({"Port " + Str(l, "port"),
                      "not listening since " + Str(l, "since") + ": " + Str(l, "error")});
      *ctx.ui.err << "Warning: port " << Str(l, "port") << " is not listening: "
                  << Str(l, "error") << "\n";
    }
  }
  rows.push_back(
      {"Connections", Str(conns, "active") + " active, " + Str(conns, "accepted") + " accepted"});
  *ctx.ui.out << RenderVerticalTable("Drawbridge", rows);
}

void PrintAppStatus(Context& ctx, const std::string& app, const std::string& domain,
                    const Json& entry) {
  int64_t release = Int(entry, "release");
  *ctx.ui.out << RenderVerticalTable(
      "App", {{"Name", app},
              {"Hostname", domain.empty() ? "N/A" : app + "." + domain},
              {"Machines", Str(entry, "machines")},
              {"IPs", Str(entry, "ips")},
              {"Release", release > 0 ? "v" + std::to_string(release) : "N/A"}});
}

// One row per machine, as machines list has them without REGION and CREATED AT.
void PrintMachinesStatus(Context& ctx, const std::string& app, const Json& machines) {
  if (machines.empty()) {
    *ctx.ui.out << "No machines: add one with drawbridge machines add ADDRESS -a " << app
                << "\n\n";
    return;
  }
  std::vector<Row> rows = MachineRows(machines, ctx.ui.now());
  for (auto& r : rows) r.resize(6);
  *ctx.ui.out << RenderTable("Machines",
                             {"ID", "Address", "Health", "Role", "Sessions", "Last Check"}, rows);
}

}  // namespace

// The daemon's status; with an app, that app's entry of the apps list beside it and its machines
// as the edge sees them (with --json, all three as {"daemon": ..., "app": ..., "machines": ...}).
Status ShowStatus(Context& ctx, const std::string& app) {
  auto daemon = Send(ctx, Get("/v1/status"));
  if (!daemon.ok()) return daemon.status();
  if (app.empty()) {
    return Show(ctx, *daemon, [&](const Json& d) {
      PrintDaemonStatus(ctx, d);
      return Status();
    });
  }
  auto apps = Send(ctx, Get("/v1/apps"));
  if (!apps.ok()) return apps.status();
  Json entry;
  if (apps->is_array()) {
    for (const auto& a : *apps) {
      if (Str(a, "name") == app) entry = a;
    }
  }
  // Worded as the daemon words every "not found" (plane/common.h, NotFoundError).
  if (entry.is_null()) return Status::NotFound("app \"" + app + "\" not found");
  auto machines = Send(ctx, Get(AppPath(app) + "/machines"));
  if (!machines.ok()) return machines.status();
  if (auto s = ExpectArray(*machines, "status"); !s.ok()) return s;
  return Show(ctx, Json{{"daemon", *daemon}, {"app", entry}, {"machines", *machines}},
              [&](const Json& all) {
                PrintDaemonStatus(ctx, all.at("daemon"));
                PrintAppStatus(ctx, app, Str(all.at("daemon"), "domain"), all.at("app"));
                PrintMachinesStatus(ctx, app, all.at("machines"));
                return Status();
              });
}

// ------------------------------------------------------------------------------ nodes

Status NodesList(Context& ctx) {
  return Run(ctx, Get("/v1/nodes"), [&](const Json& nodes) {
    if (auto s = ExpectArray(nodes, "nodes list"); !s.ok()) return s;
    *ctx.ui.out << RenderTable("", {"Name", "ID", "Last Seen", "Revision", "Store", "Listening",
                                    "Port Errors"},
                               NodeRows(nodes, ctx.ui.now()));
    return Status();
  });
}

// ------------------------------------------------------------------------------ certs

namespace {

std::string UnixDate(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer()) return "";
  return base::UtcText(j[key].get<int64_t>());
}

std::string Names(const Json& j) {
  std::string out;
  if (j.contains("names") && j["names"].is_array()) {
    for (const auto& n : j["names"]) out += (out.empty() ? "" : ", ") + n.get<std::string>();
  }
  return out;
}

}  // namespace

Status CertsList(Context& ctx) {
  return Run(ctx, Get("/v1/certs"),
             Table(ctx, "certs list", {"Host Name", "App", "Source", "Expires", "Added"},
                   [](const Json& c, TimePoint now) -> Row {
                     return {Str(c, "host"), Str(c, "app"), Str(c, "source"),
                             UnixDate(c, "not_after"), RelativeTimeOf(Str(c, "created_at"), now)};
                   }));
}

Status CertsShow(Context& ctx, const std::string& host) {
  return Run(ctx, Get("/v1/certs/" + UrlEncode(host)), [&](const Json& cert) {
    *ctx.ui.out << RenderVerticalTable(
        "Certificate", {{"Hostname", Str(cert, "host")},
                        {"App", Str(cert, "app").empty() ? "N/A" : Str(cert, "app")},
                        {"Source", Str(cert, "source") == "ca" ? "built-in CA" : "operator"},
                        {"Issuer", Str(cert, "issuer")},
                        {"Names", Names(cert)},
                        {"Expires", UnixDate(cert, "not_after")},
                        {"Added", RelativeTimeOf(Str(cert, "created_at"), ctx.ui.now())}});
    return Status();
  });
}

Status CertsAdd(Context& ctx, const std::string& host, const std::string& cert_path,
                const std::string& key_path) {
  auto cert = ReadConfig(cert_path);
  if (!cert.ok()) return cert.status();
  auto key = ReadConfig(key_path);
  if (!key.ok()) return key.status();
  return Run(ctx, Post("/v1/certs", Json{{"host", host}, {"cert_pem", *cert}, {"key_pem", *key}}),
             [&](const Json& added) {
               return PrintLine(ctx, "Certificate for " + Str(added, "host") +
                                         " installed (expires " + UnixDate(added, "not_after") +
                                         "); new connections use it now");
             });
}

Status CertsCa(Context& ctx) {
  return Run(ctx, Get("/v1/ca"), [&](const Json& ca) {
    *ctx.ui.out << Str(ca, "pem");
    return Status();
  });
}

Status CertsRemove(Context& ctx, const std::string& host, bool yes) {
  if (host.empty()) return Status::InvalidArgument("a host name is required: certs remove HOST");
  if (!yes) {
    auto ok = Confirm(ctx, "Remove certificate " + host + "?", "use --yes to remove " + host);
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status();
  }
  return Run(ctx, Delete("/v1/certs/" + UrlEncode(host)), [&](const Json& removed) {
    return PrintLine(ctx, "Certificate " + Str(removed, "host") + " deleted");
  });
}

}  // namespace drawbridge::cli
