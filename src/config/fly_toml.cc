#include "config/fly_toml.h"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "base/cidr.h"
#include "config/toml_text.h"

namespace drawbridge::config {

namespace {

using control::ServicePort;

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Collects the first error and every warning while walking the document.
class Walker {
 public:
  explicit Walker(std::string_view file) : file_(file) {}

  static int Line(const toml::node& node) {
    return std::max(1, static_cast<int>(node.source().begin.line));
  }
  std::string Where(const toml::node& node, const std::string& key) const {
    return file_ + ":" + std::to_string(Line(node)) + ": " + key + ": ";
  }
  // Remembers where `key` was written, for ParsedConfig::lines.
  void Mark(const toml::node& node, const std::string& key) { lines_[key] = Line(node); }
  void Fail(const toml::node& node, const std::string& key, const std::string& text) {
    if (error_.empty()) error_ = Where(node, key) + text;
  }
  void Warn(const toml::node& node, const std::string& key, const std::string& text) {
    warnings_.push_back(Where(node, key) + text);
  }
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  std::vector<std::string>& warnings() { return warnings_; }
  std::map<std::string, int>& lines() { return lines_; }

  // Typed getters: a wrong type is an error; a missing key leaves `out` untouched.
  template <typename T>
  bool Get(const toml::table& t, const std::string& path, std::string_view key, T* out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return false;
    if (auto v = n->value_exact<T>()) {
      *out = *v;
      return true;
    }
    Fail(*n, path, std::string("expected ") + TypeName<T>());
    return false;
  }
  bool GetPort(const toml::table& t, const std::string& path, std::string_view key, int* out) {
    int64_t v = 0;
    if (!Get(t, path, key, &v)) return false;
    if (v < 1 || v > 65535) {
      Fail(*t.get(key), path, "must be a port number between 1 and 65535");
      return false;
    }
    *out = static_cast<int>(v);
    return true;
  }
  bool GetStrings(const toml::table& t, const std::string& path, std::string_view key,
                  std::vector<std::string>* out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return false;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      Fail(*n, path, "expected an array of strings");
      return false;
    }
    out->clear();
    for (const auto& item : *a) {
      auto s = item.value_exact<std::string>();
      if (!s) {
        Fail(item, path, "expected an array of strings");
        return false;
      }
      out->push_back(*s);
    }
    return true;
  }
  void WarnUnknown(const toml::table& t, const std::string& path,
                   const std::set<std::string_view>& acted_on,
                   const std::set<std::string_view>& kept) {
    for (const auto& [k, v] : t) {
      std::string_view key = k.str();
      std::string full = path.empty() ? std::string(key) : path + "." + std::string(key);
      if (acted_on.count(key)) continue;
      if (kept.count(key)) {
        Warn(v, full, "not acted on by this edge; kept as written");
        continue;
      }
      // A near miss of a known key is a typo (`handler` for `handlers` would expose a port
      // without its handler): an error. Anything else is kept with a warning.
      std::string_view closest;
      size_t best = 3;
      for (const auto* set : {&acted_on, &kept}) {
        for (std::string_view known : *set) {
          size_t d = EditDistance(key, known);
          size_t allowed = known.size() >= 6 ? 2 : 1;  // short keys: one edit at most
          if (d <= allowed && d < best) {
            best = d;
            closest = known;
          }
        }
      }
      if (!closest.empty()) {
        Fail(v, full, "unknown key; did you mean `" + std::string(closest) + "`?");
      } else {
        Warn(v, full, "unknown key; kept as written");
      }
    }
  }

 private:
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    if constexpr (std::is_same_v<T, int64_t>) return "an integer";
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    return "another type";
  }
  std::string file_;
  std::string error_;
  std::vector<std::string> warnings_;
  std::map<std::string, int> lines_;
};

const std::set<std::string_view> kHandlers = {"tls", "pg_tls", "http", "proxy_proto"};

void ParsePort(Walker& w, const toml::table& t, const std::string& path, ServicePort* port) {
  int p = 0;
  if (w.GetPort(t, path + ".port", "port", &p)) port->port = p;
  if (w.GetPort(t, path + ".start_port", "start_port", &p)) port->start_port = p;
  if (w.GetPort(t, path + ".end_port", "end_port", &p)) port->end_port = p;
  if (!port->port && !(port->start_port && port->end_port)) {
    w.Fail(t, path, "needs `port`, or `start_port` and `end_port`");
  } else if (port->port && (port->start_port || port->end_port)) {
    w.Fail(t, path, "`port` and `start_port`/`end_port` are exclusive");
  } else if (!port->port && *port->start_port > *port->end_port) {
    w.Fail(t, path, "`start_port` is above `end_port`");
  }
  w.Mark(t, path);
  if (w.GetStrings(t, path + ".handlers", "handlers", &port->handlers)) {
    w.Mark(*t.get("handlers"), path + ".handlers");
    for (const auto& h : port->handlers) {
      if (!kHandlers.count(h)) {
        w.Fail(*t.get("handlers"), path + ".handlers",
               "unknown handler \"" + h + "\" (known: tls, pg_tls, http, proxy_proto)");
      }
    }
    if (port->HasHandler("tls") && port->HasHandler("pg_tls")) {
      w.Fail(*t.get("handlers"), path + ".handlers", "\"tls\" and \"pg_tls\" are exclusive");
    }
  }
  bool force = false;
  if (w.Get(t, path + ".force_https", "force_https", &force)) {
    port->force_https = force;
    if (force && !port->HasHandler("http")) {
      w.Fail(*t.get("force_https"), path + ".force_https", "needs the \"http\" handler");
    }
  }
  if (const toml::node* n = t.get("tls_options")) {
    const toml::table* o = n->as_table();
    std::string op = path + ".tls_options";
    if (o == nullptr) {
      w.Fail(*n, op, "expected a table");
    } else {
      control::TlsOptions tls;
      w.GetStrings(*o, op + ".alpn", "alpn", &tls.alpn);
      if (w.GetStrings(*o, op + ".versions", "versions", &tls.versions)) {
        for (const auto& v : tls.versions) {
          if (v != "TLSv1.2" && v != "TLSv1.3") {
            w.Fail(*o->get("versions"), op + ".versions",
                   "unsupported TLS version \"" + v + "\" (TLSv1.2 or TLSv1.3)");
          }
        }
      }
      bool self_signed = false;
      if (w.Get(*o, op + ".default_self_signed", "default_self_signed", &self_signed)) {
        tls.default_self_signed = self_signed;
      }
      w.WarnUnknown(*o, op, {"alpn", "versions", "default_self_signed"}, {});
      port->tls_options = tls;
    }
  }
  if (const toml::node* n = t.get("proxy_proto_options")) {
    const toml::table* o = n->as_table();
    std::string op = path + ".proxy_proto_options";
    if (o == nullptr) {
      w.Fail(*n, op, "expected a table");
    } else {
      control::ProxyProtoOptions pp;
      if (w.Get(*o, op + ".version", "version", &pp.version) && pp.version != "v1" &&
          pp.version != "v2") {
        w.Fail(*o->get("version"), op + ".version", "must be \"v1\" or \"v2\"");
      }
      port->proxy_proto_options = pp;
    }
  }
  w.WarnUnknown(t, path,
                {"port", "start_port", "end_port", "handlers", "force_https", "tls_options",
                 "proxy_proto_options"},
                {"http_options"});
}

void ParseConcurrency(Walker& w, const toml::table& t, const std::string& path,
                      std::optional<control::Concurrency>* out_conc) {
  if (const toml::node* n = t.get("concurrency")) {
    const toml::table* c = n->as_table();
    if (c == nullptr) {
      w.Fail(*n, path + ".concurrency", "expected a table");
    } else {
      control::Concurrency conc;
      std::string cp = path + ".concurrency";
      if (w.Get(*c, cp + ".type", "type", &conc.type) && conc.type != "connections" &&
          conc.type != "requests") {
        w.Fail(*c->get("type"), cp + ".type", "must be \"connections\" or \"requests\"");
      }
      for (auto [key, out] : {std::pair{"hard_limit", &conc.hard_limit},
                              std::pair{"soft_limit", &conc.soft_limit}}) {
        int64_t v = 0;
        if (!w.Get(*c, cp + "." + key, key, &v)) continue;
        if (v < 1 || v > 1'000'000) {
          w.Fail(*c->get(key), cp + "." + key, "must be between 1 and 1000000");
        } else {
          *out = static_cast<int>(v);
        }
      }
      if (w.failed()) {
        // reported above
      } else if (conc.hard_limit && conc.soft_limit && *conc.soft_limit > *conc.hard_limit) {
        w.Fail(*c->get("soft_limit"), cp + ".soft_limit", "is above hard_limit");
      }
      *out_conc = conc;
    }
  }
}

// The edge counts open connections per machine (docs/fly-toml.md, "Concurrency"); Fly's
// "requests" type counts HTTP requests, which a TCP edge does not see. The limits still apply,
// to connections, and the file says otherwise: a warning at `type`.
void WarnRequestsConcurrency(Walker& w, const toml::table& t, const std::string& path,
                             const control::Service& service) {
  const toml::table* c = t.get_as<toml::table>("concurrency");
  if (c == nullptr || !service.concurrency || service.concurrency->type != "requests") return;
  w.Warn(*c->get("type"), path + ".concurrency.type",
         "this edge counts connections, not requests: soft_limit and hard_limit apply to each "
         "machine's open connections");
}

// A duration as Fly writes it: a string of numbers with units ("15s", "500ms", "1m30s",
// "1.5s"; units ms, s, m, h) or an integer, which Fly reads as milliseconds. nullopt (and the
// error recorded) when it is neither, or outside [min, max].
std::optional<std::chrono::milliseconds> GetDuration(Walker& w, const toml::table& t,
                                                     const std::string& path, std::string_view key,
                                                     std::chrono::milliseconds min,
                                                     std::chrono::milliseconds max) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::nullopt;
  auto text = [](std::chrono::milliseconds d) {
    auto ms = d.count();
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
  };
  const std::string kForm =
      "expected a duration: a string such as \"15s\", \"500ms\" or \"1m30s\" (units ms, s, m, "
      "h), or an integer of milliseconds";
  double ms = 0;
  if (auto i = n->value_exact<int64_t>()) {
    ms = static_cast<double>(*i);
  } else if (auto str = n->value_exact<std::string>()) {
    std::string_view rest = *str;
    if (rest.empty()) {
      w.Fail(*n, path, kForm);
      return std::nullopt;
    }
    while (!rest.empty()) {
      double number = 0;
      // Digits, optionally with a fraction; from_chars alone would take a sign, "inf" or "1e3".
      size_t len = rest.find_first_not_of("0123456789.");
      auto [end, ec] =
          std::from_chars(rest.data(), rest.data() + (len == rest.npos ? rest.size() : len), number,
                          std::chars_format::fixed);
      size_t used = static_cast<size_t>(end - rest.data());
      if (ec != std::errc() || used == 0 || used != len) {
        w.Fail(*n, path, kForm);
        return std::nullopt;
      }
      rest.remove_prefix(used);
      size_t unit_len = rest.find_first_of("0123456789.");
      std::string_view unit = rest.substr(0, unit_len);
      rest.remove_prefix(unit.size());
      double scale = unit == "ms"  ? 1
                     : unit == "s" ? 1e3
                     : unit == "m" ? 6e4
                     : unit == "h" ? 3.6e6
                                   : 0;
      if (scale == 0) {
        w.Fail(*n, path, kForm);
        return std::nullopt;
      }
      ms += number * scale;
    }
  } else {
    w.Fail(*n, path, kForm);
    return std::nullopt;
  }
  if (!(ms >= static_cast<double>(min.count()) && ms <= static_cast<double>(max.count()))) {
    std::string why = "must be from " + text(min) + " to " + text(max);
    if (n->is_integer()) why += " (an integer is milliseconds)";
    w.Fail(*n, path, why);
    return std::nullopt;
  }
  return std::chrono::milliseconds(std::llround(ms));
}

// One [[services.tcp_checks]] table. Interval and timeout have floors: an integer is read as
// milliseconds, so `interval = 15` meant as seconds would otherwise probe every machine 66 times
// a second, and `timeout = 2` would fail every check.
void ParseTcpCheck(Walker& w, const toml::table& t, const std::string& path,
                   control::TcpCheck* check) {
  using std::chrono::milliseconds;
  constexpr milliseconds kHour{3'600'000};
  if (auto d = GetDuration(w, t, path + ".interval", "interval", milliseconds(100), kHour)) {
    check->interval = *d;
  }
  if (auto d = GetDuration(w, t, path + ".timeout", "timeout", milliseconds(10), kHour)) {
    check->timeout = *d;
  }
  if (auto d = GetDuration(w, t, path + ".grace_period", "grace_period", milliseconds(0), kHour)) {
    check->grace_period = *d;
  }
  int64_t restart_limit = 0;
  w.Get(t, path + ".restart_limit", "restart_limit", &restart_limit);
  if (!w.failed() && check->timeout >= check->interval) {
    const toml::node* n = t.get("timeout") ? t.get("timeout") : &t;
    w.Warn(*n, path + ".timeout",
           "not below the interval (" + std::to_string(check->timeout.count()) +
               "ms >= " + std::to_string(check->interval.count()) +
               "ms): a machine that does not answer is found out only one check late");
  }
  w.WarnUnknown(t, path, {"interval", "timeout", "grace_period"}, {"restart_limit"});
}

// `tcp_checks`: [[services.tcp_checks]] tables (or one [services.tcp_checks] table).
void ParseTcpChecks(Walker& w, const toml::table& t, const std::string& path,
                    control::Service* service) {
  const toml::node* n = t.get("tcp_checks");
  if (n == nullptr) return;
  std::string cp = path + ".tcp_checks";
  if (const toml::table* one = n->as_table()) {
    control::TcpCheck check;
    ParseTcpCheck(w, *one, cp, &check);
    service->tcp_checks.push_back(check);
    return;
  }
  const toml::array* a = n->as_array();
  if (a == nullptr || (!a->empty() && !a->is_array_of_tables())) return;  // ParseCommonServiceKeys
  for (size_t i = 0; i < a->size(); ++i) {
    control::TcpCheck check;
    ParseTcpCheck(w, *a->get(i)->as_table(), cp + "[" + std::to_string(i) + "]", &check);
    service->tcp_checks.push_back(check);
  }
}

constexpr std::pair<std::string_view, control::TargetSessionAttrs> kTargets[] = {
    {"any", control::TargetSessionAttrs::kAny},
    {"read-write", control::TargetSessionAttrs::kReadWrite},
    {"read-only", control::TargetSessionAttrs::kReadOnly},
    {"primary", control::TargetSessionAttrs::kPrimary},
    {"standby", control::TargetSessionAttrs::kStandby},
    {"prefer-standby", control::TargetSessionAttrs::kPreferStandby},
};

// [services.drawbridge]: Drawbridge's own keys for one service (Fly has no such section).
void ParseServiceExtension(Walker& w, const toml::table& t, const std::string& path,
                           control::Service* service) {
  const toml::node* n = t.get("drawbridge");
  if (n == nullptr) return;
  std::string dp = path + ".drawbridge";
  const toml::table* d = n->as_table();
  if (d == nullptr) {
    w.Fail(*n, dp, "expected a table");
    return;
  }
  std::string word;
  if (w.Get(*d, dp + ".target_session_attrs", "target_session_attrs", &word)) {
    for (const auto& [name, value] : kTargets) {
      if (word == name) service->target_session_attrs = value;
    }
    if (!service->target_session_attrs) {
      w.Fail(*d->get("target_session_attrs"), dp + ".target_session_attrs",
             "unknown value \"" + word +
                 "\" (libpq's words: any, read-write, read-only, primary, standby, "
                 "prefer-standby)");
    }
  }
  w.WarnUnknown(*d, dp, {"target_session_attrs"}, {});
}

// [drawbridge]: Drawbridge's own keys for the whole app.
void ParseAppExtension(Walker& w, const toml::table& doc, control::AppConfig* config) {
  const toml::node* n = doc.get("drawbridge");
  if (n == nullptr) return;
  const toml::table* d = n->as_table();
  if (d == nullptr) {
    w.Fail(*n, "drawbridge", "expected a table");
    return;
  }
  std::string key = "drawbridge.allowed_sources";
  if (w.GetStrings(*d, key, "allowed_sources", &config->allowed_sources)) {
    const toml::array& items = *d->get("allowed_sources")->as_array();
    for (size_t i = 0; i < items.size() && !w.failed(); ++i) {
      auto net = base::ParseCidr(config->allowed_sources[i]);
      if (!net.ok()) {
        w.Fail(items[i], key,
               net.message() +
                   " (each entry is a network such as \"10.0.0.0/8\" or "
                   "\"2001:db8::/32\", or one address)");
      }
    }
    if (items.empty()) {
      w.Warn(*d->get("allowed_sources"), key,
             "empty: every source address may connect (remove the key to say so, or list "
             "networks to limit it)");
    }
  }
  w.WarnUnknown(*d, "drawbridge", {"allowed_sources"}, {});
}

// Whether some tcp service of the app has a pg_tls port on `internal_port`: the connections
// the edge learns each machine's role from (the Postgres login's in_hot_standby).
bool LearnsRoles(const control::AppConfig& config, int internal_port) {
  for (const auto& s : config.services) {
    if (s.internal_port != internal_port || s.protocol != "tcp") continue;
    for (const auto& p : s.ports) {
      if (p.HasHandler("pg_tls")) return true;
    }
  }
  return false;
}

// Keys of [[services]] and [http_service] that the edge keeps but does not act on: their types
// are still checked, so a wrong one is an error with its line.
void ParseCommonServiceKeys(Walker& w, const toml::table& t, const std::string& path) {
  bool b = false;
  int64_t i = 0;
  std::vector<std::string> list;
  w.Get(t, path + ".auto_start_machines", "auto_start_machines", &b);
  w.Get(t, path + ".min_machines_running", "min_machines_running", &i);
  w.GetStrings(t, path + ".processes", "processes", &list);
  if (const toml::node* n = t.get("auto_stop_machines")) {
    auto s = n->value_exact<std::string>();
    if (!n->is_boolean() && !(s && (*s == "off" || *s == "stop" || *s == "suspend"))) {
      w.Fail(*n, path + ".auto_stop_machines", "expected a boolean or \"off\", \"stop\", \"suspend\"");
    }
  }
  for (const char* checks : {"tcp_checks", "http_checks", "checks"}) {
    const toml::node* n = t.get(checks);
    if (n != nullptr && !(n->is_array_of_tables() || n->is_table())) {
      w.Fail(*n, path + "." + checks, "expected [[" + std::string(checks) + "]] tables");
    }
  }
}

// [http_service] is fly's shorthand for an HTTP service on ports 80 and 443; validated like a
// service, but not served by this edge (yet).
void ParseHttpService(Walker& w, const toml::table& t) {
  std::string path = "http_service";
  int port = 0;
  if (!w.GetPort(t, path + ".internal_port", "internal_port", &port) && !w.failed()) {
    w.Fail(t, path + ".internal_port", "is required");
  }
  bool force = false;
  w.Get(t, path + ".force_https", "force_https", &force);
  std::optional<control::Concurrency> conc;
  ParseConcurrency(w, t, path, &conc);
  ParseCommonServiceKeys(w, t, path);
  w.Warn(t, path, "the http handler is not served by this edge yet; nothing is exposed for it");
  w.WarnUnknown(t, path, {"internal_port", "force_https", "concurrency"},
                {"processes", "auto_stop_machines", "auto_start_machines", "min_machines_running",
                 "http_options", "tls_options", "checks"});
}

void ParseService(Walker& w, const toml::table& t, const std::string& path,
                  control::Service* service) {
  w.Mark(t, path);
  if (!w.GetPort(t, path + ".internal_port", "internal_port", &service->internal_port) &&
      !w.failed()) {
    w.Fail(t, path + ".internal_port", "is required");
  }
  if (w.Get(t, path + ".protocol", "protocol", &service->protocol) && service->protocol != "tcp" &&
      service->protocol != "udp") {
    w.Fail(*t.get("protocol"), path + ".protocol", "must be \"tcp\" or \"udp\"");
  }
  // The seed's page shows `handlers` and `port` right under [[services]] (the web page lost the
  // [[services.ports]] line); taken literally that exposes nothing, so say where they go.
  for (const char* key : {"handlers", "port", "start_port", "end_port", "force_https",
                          "tls_options"}) {
    if (const toml::node* n = t.get(key)) {
      w.Fail(*n, path + "." + key,
             std::string("belongs in a [[services.ports]] table: add the line "
                         "\"[[services.ports]]\" above `") +
                 key + "`");
    }
  }
  if (!t.contains("ports") && !w.failed()) {
    w.Warn(t, path, "has no [[services.ports]]: nothing is exposed for it");
  }
  if (service->protocol == "udp") {
    w.Warn(t, path + ".protocol", "udp services are not served by this edge yet");
  }
  if (const toml::node* n = t.get("ports")) {
    const toml::array* a = n->as_array();
    if (a == nullptr || (!a->empty() && !a->is_array_of_tables())) {
      w.Fail(*n, path + ".ports", "expected [[services.ports]] tables");
    } else {
      for (size_t i = 0; i < a->size(); ++i) {
        ServicePort port;
        ParsePort(w, *a->get(i)->as_table(), path + ".ports[" + std::to_string(i) + "]", &port);
        if (port.HasHandler("pg_tls") && service->protocol != "tcp") {
          w.Fail(*a->get(i), path + ".protocol", "pg_tls needs protocol \"tcp\"");
        }
        service->ports.push_back(std::move(port));
      }
    }
  }
  ParseConcurrency(w, t, path, &service->concurrency);
  WarnRequestsConcurrency(w, t, path, *service);
  ParseCommonServiceKeys(w, t, path);
  ParseTcpChecks(w, t, path, service);
  ParseServiceExtension(w, t, path, service);
  w.WarnUnknown(t, path,
                {"internal_port", "protocol", "ports", "concurrency", "tcp_checks", "drawbridge"},
                {"processes", "auto_stop_machines", "auto_start_machines", "min_machines_running",
                 "http_checks"});
}

// The document, or the first reason it is not TOML: "file:line: text".
base::Result<toml::table> ParseToml(std::string_view text, std::string_view file_name) {
  auto checked = CheckTomlText(text, file_name);  // UTF-8 that toml++ 3.3 reads safely
  if (!checked.ok()) return checked.status();
  try {
    return toml::parse(*checked, file_name);
  } catch (const toml::parse_error& e) {
    return base::Status::InvalidArgument(std::string(file_name) + ":" +
                                         std::to_string(std::max(1u, e.source().begin.line)) +
                                         ": " + std::string(e.description()));
  }
}

}  // namespace

base::Result<ParsedConfig> ParseFlyToml(std::string_view text, std::string_view file_name) {
  auto doc = ParseToml(text, file_name);
  if (!doc.ok()) return doc.status();
  Walker w(file_name);
  ParsedConfig out;
  out.file = std::string(file_name);
  if (w.Get(*doc, "app", "app", &out.config.app)) w.Mark(*doc->get("app"), "app");
  if (const toml::node* n = doc->get("services")) {
    const toml::array* a = n->as_array();
    if (a == nullptr || (!a->empty() && !a->is_array_of_tables())) {
      w.Fail(*n, "services", "expected [[services]] tables");
    } else {
      for (size_t i = 0; i < a->size(); ++i) {
        control::Service s;
        ParseService(w, *a->get(i)->as_table(), "services[" + std::to_string(i) + "]", &s);
        out.config.services.push_back(std::move(s));
      }
    }
  }
  // A public port may be claimed once per app; the error points at the second claim.
  std::set<int> seen;
  const toml::array* services = doc->get_as<toml::array>("services");
  for (size_t si = 0; services && si < out.config.services.size(); ++si) {
    const auto& svc = out.config.services[si];
    const toml::array* ports = services->get(si)->as_table()->get_as<toml::array>("ports");
    for (size_t pi = 0; ports && pi < svc.ports.size(); ++pi) {
      const toml::table& pt = *ports->get(pi)->as_table();
      const toml::node* where = pt.get("port") ? pt.get("port") : pt.get("start_port");
      std::string key = "services[" + std::to_string(si) + "].ports[" + std::to_string(pi) + "]." +
                        (pt.get("port") ? "port" : "start_port");
      for (int port : svc.ports[pi].PublicPorts()) {
        if (!seen.insert(port).second && !w.failed()) {
          w.Fail(where ? *where : pt, key,
                 "public port " + std::to_string(port) + " is already used by another service");
        }
      }
    }
  }
  // A role target where no pg_tls connection reaches the machines' port: the roles stay
  // unknown, so any machine is used. Said at the key, since the file reads otherwise.
  const toml::array* svc_tables = doc->get_as<toml::array>("services");
  for (size_t si = 0; svc_tables && si < out.config.services.size() && !w.failed(); ++si) {
    const auto& svc = out.config.services[si];
    if (!svc.target_session_attrs ||
        *svc.target_session_attrs == control::TargetSessionAttrs::kAny ||
        LearnsRoles(out.config, svc.internal_port)) {
      continue;
    }
    const toml::node* n =
        svc_tables->get(si)->as_table()->at_path("drawbridge.target_session_attrs").node();
    w.Warn(n ? *n : *svc_tables->get(si),
           "services[" + std::to_string(si) + "].drawbridge.target_session_attrs",
           "no pg_tls port reaches internal_port " + std::to_string(svc.internal_port) +
               ": the edge learns roles from the Postgres logins of pg_tls connections, so "
               "every machine's role stays unknown and any machine is used");
  }
  ParseAppExtension(w, *doc, &out.config);
  if (const toml::node* n = doc->get("http_service")) {
    if (const toml::table* t = n->as_table()) {
      ParseHttpService(w, *t);
    } else {
      w.Fail(*n, "http_service", "expected a table");
    }
  }
  if (out.config.services.empty() && !doc->contains("http_service")) {
    w.warnings().push_back(std::string(file_name) +
                           ":1: services: no [[services]]: nothing will be served for this app");
  }
  w.WarnUnknown(*doc, "", {"app", "services", "http_service", "drawbridge"},
                {"primary_region", "kill_signal", "kill_timeout", "swap_size_mb", "console_command",
                 "build", "env", "vm", "mounts", "checks", "metrics", "deploy", "experimental",
                 "processes", "statics", "restart", "files"});
  if (w.failed()) return base::Status::InvalidArgument(w.error());
  out.warnings = std::move(w.warnings());
  out.lines = std::move(w.lines());
  return out;
}

std::string ParsedConfig::Where(const std::string& key) const {
  auto it = lines.find(key);
  return file + ":" + std::to_string(it == lines.end() ? 1 : it->second) + ": " + key + ": ";
}

base::Result<std::string> AppNameOfFlyToml(std::string_view text, std::string_view file_name) {
  auto doc = ParseToml(text, file_name);
  if (!doc.ok()) return doc.status();
  const toml::node* app = doc->get("app");
  if (app == nullptr) return std::string();
  if (auto name = app->value_exact<std::string>()) return *name;
  return base::Status::InvalidArgument(Walker(file_name).Where(*app, "app") + "expected a string");
}

base::Result<ParsedConfig> LoadFlyToml(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return base::Status::NotFound(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseFlyToml(ss.str(), path);
}

}  // namespace drawbridge::config
