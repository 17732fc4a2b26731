#include "cli/commands.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/settings.h"

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
  return Status::Error(
      "the config for your app is missing an app name, add an app field to the fly.toml file "
      "or specify with the -a flag");
}

std::string AppPath(const std::string& app) { return "/v1/apps/" + UrlEncode(app); }

Status ExpectArray(const Json& j, std::string_view what) {
  if (j.is_array()) return Status();
  return Status::Error("the daemon's answer to " + std::string(what) + " is not a list");
}

void PrintJson(Context& ctx, const Json& j) { *ctx.ui.out << RenderJson(j); }

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
    return Status::Error("cannot read " + path + ": " + std::strerror(err));
  }
  return *text;
}

// Writes a file through a temporary next to it, so a failed write leaves the old one.
Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status::Error("cannot write " + tmp + ": " + std::strerror(errno));
    out << content;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return Status::Error("cannot write " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return Status::Error("cannot write " + path + ": " + std::strerror(err));
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

void PrintIps(Context& ctx, const Json& ips) {
  *ctx.ui.out << RenderTable("", {"Version", "IP", "Type", "Region", "Created At"},
                             IpRows(ips, ctx.ui.now()));
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

}  // namespace

Status NonInteractiveError(std::string_view hint) {
  std::string msg = "yes flag must be specified when not running interactively";
  if (!hint.empty()) msg += " (" + std::string(hint) + ")";
  return Status::Error(std::move(msg));
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

// ------------------------------------------------------------------------------ apps

Status AppsCreate(Context& ctx, const std::string& name) {
  if (name.empty()) return Status::Error("an app name is required: apps create NAME");
  auto r = ctx.client->Post("/v1/apps", Json{{"name", name}});
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
  } else {
    std::string created = Str(*r, "name");
    *ctx.ui.out << "New app created: " << (created.empty() ? name : created) << "\n";
  }
  return Status();
}

Status AppsList(Context& ctx) {
  auto r = ctx.client->Get("/v1/apps");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  if (auto s = ExpectArray(*r, "apps list"); !s.ok()) return s;
  std::vector<std::vector<std::string>> rows;
  TimePoint now = ctx.ui.now();
  for (const auto& a : *r) {
    int64_t release = Int(a, "release");
    rows.push_back({Str(a, "name"), Str(a, "machines"), Str(a, "ips"),
                    release > 0 ? "v" + std::to_string(release) : "",
                    RelativeTimeOf(Str(a, "created_at"), now)});
  }
  *ctx.ui.out << RenderTable("", {"Name", "Machines", "IPs", "Release", "Created At"}, rows);
  return Status();
}

Status AppsDestroy(Context& ctx, const std::string& name, bool yes) {
  if (name.empty()) return Status::Error("an app name is required: apps destroy NAME");
  if (!yes) {
    *ctx.ui.err << "Destroying an app is not reversible.\n";
    auto ok = Confirm(ctx, "Destroy app " + name + "?", "use --yes to destroy " + name);
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status();
  }
  auto r = ctx.client->Delete(AppPath(name));
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
  } else {
    *ctx.ui.out << "Destroyed app " << name << "\n";
  }
  return Status();
}

// ------------------------------------------------------------------------------ machines

Status MachinesAdd(Context& ctx, const std::string& app, const MachineSpec& machine) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (machine.address.empty()) return Status::Error("an address is required: machines add ADDR");
  Json body{{"address", machine.address}};
  if (!machine.region.empty()) body["region"] = machine.region;
  if (!machine.role.empty()) body["role"] = machine.role;
  auto r = ctx.client->Post(AppPath(app) + "/machines", body);
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
  } else {
    *ctx.ui.out << "Added machine " << Str(*r, "id") << " (" << machine.address << ") to " << app
                << "\n";
  }
  return Status();
}

Status MachinesList(Context& ctx, const std::string& app) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto r = ctx.client->Get(AppPath(app) + "/machines");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  if (auto s = ExpectArray(*r, "machines list"); !s.ok()) return s;
  std::vector<std::vector<std::string>> rows;
  TimePoint now = ctx.ui.now();
  for (const auto& m : *r) {
    rows.push_back({Str(m, "id"), Str(m, "address"), Str(m, "region"), Str(m, "role"),
                    RelativeTimeOf(Str(m, "created_at"), now)});
  }
  *ctx.ui.out << RenderTable("", {"ID", "Address", "Region", "Role", "Created At"}, rows);
  return Status();
}

Status MachinesRemove(Context& ctx, const std::string& app, const std::string& id) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (id.empty()) return Status::Error("a machine id is required: machines remove ID");
  auto r = ctx.client->Delete(AppPath(app) + "/machines/" + UrlEncode(id));
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
  } else {
    *ctx.ui.out << "Removed machine " << id << " from " << app << "\n";
  }
  return Status();
}

// ------------------------------------------------------------------------------ ips

Status IpsList(Context& ctx, const std::string& app) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto r = ctx.client->Get(AppPath(app) + "/ips");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  if (auto s = ExpectArray(*r, "ips list"); !s.ok()) return s;
  PrintIps(ctx, *r);
  return Status();
}

namespace {

Status Allocate(Context& ctx, const std::string& app, const char* type) {
  auto r = ctx.client->Post(AppPath(app) + "/ips", Json{{"type", type}});
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
  } else {
    PrintIps(ctx, Json::array({*r}));
  }
  return Status();
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
    if (!*ok) return Status::Error("user aborted");
  }
  return Allocate(ctx, app, shared ? "shared_v4" : "v4");
}

Status IpsAllocateV6(Context& ctx, const std::string& app) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  return Allocate(ctx, app, "v6");
}

Status IpsRelease(Context& ctx, const std::string& app, const std::vector<std::string>& addresses) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  if (addresses.empty()) return Status::Error("at least one address is required: ips release IP");
  for (const auto& a : addresses) {
    if (!IsIpAddress(a)) return Status::Error("Invalid IP address: '" + a + "'");
  }
  Json answers = Json::array();
  for (const auto& a : addresses) {
    auto r = ctx.client->Delete(AppPath(app) + "/ips/" + UrlEncode(a, /*keep_colon=*/true));
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
  if (ctx.json) PrintJson(ctx, answers);
  return Status();
}

// ------------------------------------------------------------------------------ config, deploy

Status ConfigSave(Context& ctx, const std::string& app, const std::string& path, bool yes) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  std::string file = ResolveConfigPath(path);
  auto r = ctx.client->Get(AppPath(app) + "/config");
  if (!r.ok()) return r.status();
  if (!r->is_object() || !(*r)["toml"].is_string()) {
    return Status::Error("the daemon's answer to config has no toml");
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
  *ctx.ui.out << "Wrote config file " << file << "\n";
  return Status();
}

Status ConfigShow(Context& ctx, const std::string& app) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto r = ctx.client->Get(AppPath(app) + "/config");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  std::string toml = Str(*r, "toml");
  *ctx.ui.out << toml;
  if (!toml.empty() && toml.back() != '\n') *ctx.ui.out << "\n";
  return Status();
}

Status ConfigValidate(Context& ctx, const std::string& app, const std::string& path) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  std::string file = ResolveConfigPath(path);
  auto text = ReadConfig(file);
  if (!text.ok()) return text.status();
  auto r =
      ctx.client->Post(AppPath(app) + "/config/validate", Json{{"toml", *text}, {"file", file}});
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  PrintWarnings(ctx, *r);
  if (r->is_object() && r->contains("valid") && (*r)["valid"] == false) {
    std::string errors = Str(*r, "error");
    if (errors.empty()) errors = file + ": invalid configuration";
    return Status::Error(errors);
  }
  *ctx.ui.out << "✓ Configuration is valid\n";
  return Status();
}

Status Deploy(Context& ctx, const std::string& app, const std::string& config_path,
              const std::string& image) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto text = ReadConfig(config_path);
  if (!text.ok()) return text.status();
  Json body{{"toml", *text}, {"file", config_path}};
  if (!image.empty()) body["image"] = image;
  auto r = ctx.client->Post(AppPath(app) + "/deploy", body);
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  PrintWarnings(ctx, *r);
  *ctx.ui.out << "Release v" << Int(*r, "release") << " created\n";
  return Status();
}

// ------------------------------------------------------------------------------ services, image

Status ServicesList(Context& ctx, const std::string& app) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto r = ctx.client->Get(AppPath(app) + "/services");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  if (auto s = ExpectArray(*r, "services list"); !s.ok()) return s;
  // No "Services" title, so the output reads exactly as the guide's.
  *ctx.ui.out << RenderTable("", {"Protocol", "Ports", "Force HTTPS"}, ServiceRows(*r));
  return Status();
}

Status ImageShow(Context& ctx, const std::string& app) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  auto r = ctx.client->Get(AppPath(app) + "/image");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  auto or_na = [&](const char* key) {
    std::string v = Str(*r, key);
    return v.empty() ? std::string("N/A") : v;
  };
  *ctx.ui.out << RenderVerticalTable("Image Details", {{"Registry", or_na("registry")},
                                                       {"Repository", or_na("repository")},
                                                       {"Tag", or_na("tag")},
                                                       {"Version", or_na("version")}});
  std::map<std::string, std::string> majors;  // major -> one machine that runs it
  if (r->contains("machines") && (*r)["machines"].is_array()) {
    for (const auto& m : (*r)["machines"]) {
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
  std::string tag_major = PgMajor(Str(*r, "tag"));
  if (majors.size() == 1 && !tag_major.empty() && majors.begin()->first != tag_major) {
    *ctx.ui.err << "Warning: the image tag " << Str(*r, "tag")
                << " is not the major version the machines run (" << majors.begin()->first << ")\n";
  }
  return Status();
}

Status PgConnectionString(Context& ctx, const std::string& app, const std::string& internal_url) {
  if (auto s = RequireApp(app); !s.ok()) return s;
  std::string target = AppPath(app) + "/connection-string";
  if (!internal_url.empty()) target += "?internal=" + UrlEncode(internal_url);
  auto r = ctx.client->Get(target);
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  std::string url = Str(*r, "url");
  if (url.empty()) return Status::Error("the daemon's answer has no url");
  *ctx.ui.out << url << "\n";
  return Status();
}

Status ShowStatus(Context& ctx, const std::string& app) {
  auto r = ctx.client->Get("/v1/status");
  if (!r.ok()) return r.status();
  Json app_entry;
  if (!app.empty()) {
    auto apps = ctx.client->Get("/v1/apps");
    if (!apps.ok()) return apps.status();
    if (apps->is_array()) {
      for (const auto& a : *apps) {
        if (Str(a, "name") == app) app_entry = a;
      }
    }
    if (app_entry.is_null()) return Status::Error("app not found: " + app);
  }
  if (ctx.json) {
    if (app.empty()) {
      PrintJson(ctx, *r);
    } else {
      PrintJson(ctx, Json{{"daemon", *r}, {"app", app_entry}});
    }
    return Status();
  }
  Json conns = r->contains("connections") ? (*r)["connections"] : Json();
  std::string ports;
  if (r->contains("ports") && (*r)["ports"].is_array()) {
    for (const auto& p : (*r)["ports"]) ports += (ports.empty() ? "" : ", ") + p.dump();
  }
  *ctx.ui.out << RenderVerticalTable(
      "Drawbridge",
      {{"Version", Str(*r, "version")},
       {"Store", Str(*r, "store")},
       {"Node", Str(*r, "node")},
       {"Domain", Str(*r, "domain")},
       {"Routes", "v" + Str(*r, "routes_version")},
       {"Ports", ports.empty() ? "none" : ports},
       {"Connections", Str(conns, "active") + " active, " + Str(conns, "accepted") + " accepted"}});
  if (!app.empty()) {
    std::string domain = Str(*r, "domain");
    int64_t release = Int(app_entry, "release");
    *ctx.ui.out << RenderVerticalTable(
        "App", {{"Name", app},
                {"Hostname", domain.empty() ? "N/A" : app + "." + domain},
                {"Machines", Str(app_entry, "machines")},
                {"IPs", Str(app_entry, "ips")},
                {"Release", release > 0 ? "v" + std::to_string(release) : "N/A"}});
  }
  return Status();
}

namespace {

std::string UnixDate(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer()) return "";
  std::time_t t = j[key].get<int64_t>();
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
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
  auto r = ctx.client->Get("/v1/certs");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  if (auto s = ExpectArray(*r, "certs list"); !s.ok()) return s;
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : *r) {
    rows.push_back({Str(c, "host"), Str(c, "app"), Str(c, "source"), UnixDate(c, "not_after"),
                    RelativeTimeOf(Str(c, "created_at"), ctx.ui.now())});
  }
  *ctx.ui.out << RenderTable("", {"Host Name", "App", "Source", "Expires", "Added"}, rows);
  return Status();
}

Status CertsShow(Context& ctx, const std::string& host) {
  auto r = ctx.client->Get("/v1/certs/" + UrlEncode(host));
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  *ctx.ui.out << RenderVerticalTable(
      "Certificate", {{"Hostname", Str(*r, "host")},
                      {"App", Str(*r, "app").empty() ? "N/A" : Str(*r, "app")},
                      {"Source", Str(*r, "source") == "ca" ? "built-in CA" : "operator"},
                      {"Issuer", Str(*r, "issuer")},
                      {"Names", Names(*r)},
                      {"Expires", UnixDate(*r, "not_after")},
                      {"Added", RelativeTimeOf(Str(*r, "created_at"), ctx.ui.now())}});
  return Status();
}

Status CertsAdd(Context& ctx, const std::string& host, const std::string& cert_path,
                const std::string& key_path) {
  auto cert = ReadConfig(cert_path);
  if (!cert.ok()) return cert.status();
  auto key = ReadConfig(key_path);
  if (!key.ok()) return key.status();
  auto r = ctx.client->Post("/v1/certs", Json{{"host", host}, {"cert_pem", *cert}, {"key_pem", *key}});
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  *ctx.ui.out << "Certificate for " << Str(*r, "host") << " installed (expires "
              << UnixDate(*r, "not_after") << "); new connections use it now\n";
  return Status();
}

Status CertsCa(Context& ctx) {
  auto r = ctx.client->Get("/v1/ca");
  if (!r.ok()) return r.status();
  if (ctx.json) {
    PrintJson(ctx, *r);
    return Status();
  }
  *ctx.ui.out << Str(*r, "pem");
  return Status();
}

}  // namespace drawbridge::cli
