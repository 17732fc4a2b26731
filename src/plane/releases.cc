#include "plane/releases.h"

#include <algorithm>
#include <limits>
#include <regex>
#include <string_view>

#include "base/parse_int.h"
#include "config/fly_toml.h"
#include "control/ip_pool.h"
#include "plane/common.h"
#include "plane/records.h"

namespace drawbridge::plane {

namespace {

using base::Result;
using base::Status;

// Major version of a Postgres image tag or server_version: "15", "15.4", "15.18 (Debian...)".
// None when the text does not start with a number ("latest"); kInvalidArgument when the number
// is beyond int ("99999999999"), which a user or a machine can send.
Result<std::optional<int>> MajorVersion(const std::string& text) {
  static const std::regex re(R"(^v?(\d+))");
  std::smatch m;
  if (!std::regex_search(text, m, re)) return std::optional<int>();
  auto major = base::ParseInt(m.str(1), 0, std::numeric_limits<int>::max());
  if (!major.ok()) return major.status().WithPrefix("major version ");
  return std::optional<int>(static_cast<int>(*major));
}

// The app's shared IPv4 address when that is its only IPv4 (no dedicated one); "" otherwise.
// Read from the records as Ips::List reads them.
Result<std::string> SharedOnlyV4(store::Store* store, const std::string& app) {
  std::string shared;
  for (const char* prefix : {records::kIpPrefix, records::kSharedIpPrefix}) {
    auto kvs = store->List(prefix);
    if (!kvs.ok()) return kvs.status();
    for (const auto& kv : *kvs) {
      IpInfo ip = records::IpFrom(kv);
      if (ip.app != app) continue;
      if (ip.type == "v4") return std::string();
      if (ip.type == "shared_v4") shared = ip.address;
    }
  }
  return shared;
}

}  // namespace

std::string DefaultConfig(const std::string& app) {
  // What this edge serves (the guide's pg_tls section), and no line its own deploy warns about.
  return "app = \"" + app +
         "\"\n"
         "\n"
         "[[services]]\n"
         "  internal_port = 5432 # Postgres instance\n"
         "  protocol = \"tcp\"\n"
         "\n"
         "  [[services.ports]]\n"
         "    handlers = [\"pg_tls\"]\n"
         "    port = 5432\n";
}

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// One component of a repository path: runs of lower-case letters and digits joined by one
// separator each: '.', '_', "__" or a run of '-'.
bool ValidPathComponent(std::string_view c) {
  size_t i = 0;
  while (true) {  // each turn consumes at least one character
    if (i >= c.size() || !IsLowerAlnum(c[i])) return false;
    while (i < c.size() && IsLowerAlnum(c[i])) ++i;
    if (i == c.size()) return true;
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      i += i + 1 < c.size() && c[i + 1] == '_' ? 2 : 1;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') ++i;
    } else {
      return false;
    }
  }
}

// A registry: a host name (labels of letters, digits and '-') or a bracketed IPv6 address,
// then an optional ":port".
bool ValidRegistry(std::string_view r) {
  if (auto colon = r.rfind(':'); colon != std::string_view::npos && r.find(']', colon) == r.npos) {
    std::string_view port = r.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
    r = r.substr(0, colon);
  }
  if (r.size() > 2 && r.front() == '[' && r.back() == ']') {
    std::string v6(r.substr(1, r.size() - 2));
    return v6.find(':') != std::string::npos && !control::CanonicalIp(v6).empty();
  }
  size_t start = 0;
  while (start <= r.size()) {
    size_t dot = std::min(r.find('.', start), r.size());
    std::string_view label = r.substr(start, dot - start);
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return false;
    }
    start = dot + 1;
  }
  return true;
}

// Docker's reference grammar (distribution/reference): [registry[:port]/]path[:tag][@digest]
// with a path of '/'-separated lower-case components, a tag of 1-128 word characters, '.' and
// '-' not starting with '.' or '-', and a sha256 digest of 64 lower-case hex digits. The image
// is stored and shown, never pulled, but it is what `image show` prints and what
// `deploy --image` compares majors with, so it must be an image a registry could have.
Status CheckImage(const std::string& image) {
  auto refuse = [&image](const std::string& rule) {
    return Status::InvalidArgument(
        "invalid image \"" + image + "\": " + rule +
        " (an image is [registry[:port]/]repository[:tag][@sha256:digest])");
  };
  if (image.size() > 512) return refuse("longer than 512 characters");
  // Split first, then judge the parts from left to right, so the error names the first one.
  std::string_view rest = image, digest, tag;
  bool has_digest = false, has_tag = false;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    has_digest = true;
    digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
  }
  if (auto colon = rest.rfind(':');
      colon != std::string_view::npos && rest.find('/', colon) == std::string_view::npos) {
    has_tag = true;
    tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (rest.size() > 255) return refuse("the name is longer than 255 characters");
  std::string_view path = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    if (first.find_first_of(".:[") != std::string_view::npos || first == "localhost") {
      if (!ValidRegistry(first)) {
        return refuse("the registry \"" + std::string(first) +
                      "\" must be a host name or [IPv6 address], with an optional :port");
      }
      path = rest.substr(slash + 1);
    }
  }
  bool ok = !path.empty();
  size_t start = 0;
  while (ok && start <= path.size()) {
    size_t slash = std::min(path.find('/', start), path.size());
    ok = ValidPathComponent(path.substr(start, slash - start));
    start = slash + 1;
  }
  if (!ok) {
    return refuse("the repository \"" + std::string(path) +
                  "\" must be lower-case letters and digits, with '.', '_', '__' or '-' inside "
                  "a component and '/' between components");
  }
  if (has_tag) {
    ok = !tag.empty() && tag.size() <= 128 && tag.front() != '.' && tag.front() != '-';
    for (char c : tag) ok = ok && (IsAlnum(c) || c == '_' || c == '.' || c == '-');
    if (!ok) {
      return refuse("the tag \"" + std::string(tag) +
                    "\" must be 1-128 letters, digits, '_', '.' and '-', not starting with '.' "
                    "or '-'");
    }
  }
  static constexpr std::string_view kSha256 = "sha256:";
  if (has_digest &&
      (!digest.starts_with(kSha256) || digest.size() != kSha256.size() + 64 ||
       digest.find_first_not_of("0123456789abcdef", kSha256.size()) != std::string_view::npos)) {
    return refuse("the digest must be sha256: and 64 lower-case hex digits");
  }
  return {};
}

}  // namespace

void SplitImage(const std::string& image, std::string* registry, std::string* repository,
                std::string* tag) {
  std::string rest = image;
  std::string digest;  // "sha256:...", the tag shown when there is no tag
  if (auto at = rest.find('@'); at != std::string::npos) {
    digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
  }
  *registry = "registry-1.docker.io";
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string first = rest.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
        first == "localhost") {
      *registry = first;
      rest = rest.substr(slash + 1);
    }
  }
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    *repository = rest.substr(0, colon);
    *tag = rest.substr(colon + 1);
  } else {
    *repository = rest;
    *tag = digest.empty() ? "latest" : digest;
  }
}

Result<std::optional<ReleaseInfo>> Releases::Latest(const std::string& app) {
  auto kvs = store_->List(records::ReleasePrefix(app));
  if (!kvs.ok()) return kvs.status();
  if (kvs->empty()) return std::optional<ReleaseInfo>();
  return std::optional<ReleaseInfo>(records::ReleaseFrom(kvs->back()));
}

Result<ReleaseInfo> Releases::CurrentConfig(const std::string& app) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  auto latest = Latest(app);
  if (!latest.ok()) return latest.status();
  if (*latest) return **latest;
  ReleaseInfo r;
  r.toml = DefaultConfig(app);
  r.file = "fly.toml";
  return r;
}

Result<control::AppConfig> Releases::CurrentServices(const std::string& app) {
  auto current = CurrentConfig(app);
  if (!current.ok()) return current.status();
  auto parsed = config::ParseFlyToml(current->toml, "fly.toml");
  if (!parsed.ok()) return AsInternal(parsed.status());  // it was valid when deployed
  return parsed->config;
}

Result<std::vector<std::string>> Releases::Validate(const std::string& app, const std::string& toml,
                                                    const std::string& file) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  if (toml.size() > 512 * 1024) return Status::InvalidArgument(file + ": larger than 512 KiB");
  auto parsed = config::ParseFlyToml(toml, file.empty() ? "fly.toml" : file);
  if (!parsed.ok()) return Status::InvalidArgument(parsed.message());
  std::vector<std::string> warnings = parsed->warnings;
  if (!parsed->config.app.empty() && parsed->config.app != app) {
    warnings.push_back(parsed->Where("app") + "the file names app \"" + parsed->config.app +
                       "\"; deploying to \"" + app + "\"");
  }
  // On the shared IPv4 address only TLS SNI (or a pg_tls client's options=app=) says which app
  // a connection is for; raw TCP there has neither.
  auto shared_v4 = SharedOnlyV4(store_, app);
  if (!shared_v4.ok()) return shared_v4.status();
  for (size_t s = 0; s < parsed->config.services.size(); ++s) {
    const auto& svc = parsed->config.services[s];
    for (size_t p = 0; p < svc.ports.size(); ++p) {
      const control::ServicePort& port = svc.ports[p];
      std::string key = "services[" + std::to_string(s) + "].ports[" + std::to_string(p) + "]";
      if (port.HasHandler("http")) {
        warnings.push_back(parsed->Where(key + ".handlers") +
                           "the \"http\" handler is not served by this edge yet; the port is not "
                           "opened");
      } else if (!shared_v4->empty() && svc.protocol == "tcp" && !port.HasHandler("tls") &&
                 !port.HasHandler("pg_tls")) {
        std::string ports = port.port ? "port " + std::to_string(*port.port)
                                      : "ports " + std::to_string(port.start_port.value_or(0)) +
                                            "-" + std::to_string(port.end_port.value_or(0));
        warnings.push_back(
            parsed->Where(key) + "raw TCP (no \"tls\" or \"pg_tls\" handler) on the shared IPv4 " +
            *shared_v4 + ", the app's only IPv4: that address cannot tell apps apart without TLS "
            "SNI, so connections to it on " + ports + " are refused; allocate a dedicated IPv4 with `drawbridge ips allocate-v4`");
      }
    }
  }
  return warnings;
}

Result<DeployResult> Releases::Deploy(const std::string& app, const std::string& toml,
                                      const std::string& file, const std::string& image) {
  auto warnings = Validate(app, toml, file);
  if (!warnings.ok()) return warnings.status();
  if (!image.empty()) {
    if (auto s = CheckImage(image); !s.ok()) return s;
    std::string registry, repository, tag;
    SplitImage(image, &registry, &repository, &tag);
    auto want = MajorVersion(tag);
    if (!want.ok()) return want.status().WithPrefix("image " + image + ": ");
    std::lock_guard lock(observed_mu_);
    for (const auto& [key, version] : observed_) {
      if (key.first != app) continue;
      auto have = MajorVersion(version);  // recorded versions parse (ObserveServerVersion)
      if (*want && have.ok() && *have && **want != **have) {
        return Status::InvalidArgument(
            "image " + image + " is PostgreSQL " + std::to_string(**want) +
            " but the app's machines run PostgreSQL " + version +
            "; a major version change needs a dump and restore, not a deploy");
      }
    }
  }
  for (int attempt = 0; attempt < kMaxCasRetries; ++attempt) {
    auto latest = Latest(app);
    if (!latest.ok()) return latest.status();
    ReleaseInfo release;
    release.version = *latest ? (*latest)->version + 1 : 1;
    release.toml = toml;
    release.file = file.empty() ? "fly.toml" : file;
    release.image = image.empty() && *latest ? (*latest)->image : image;
    release.created_at = Now();
    std::string key = records::ReleaseKey(app, release.version);
    auto r = store_->Commit(
        {{store::Compare::Absent(key)}, {store::Op::Put(key, records::ReleaseValue(release))}});
    if (!r.ok()) return r.status();
    if (r->succeeded) return DeployResult{release.version, *warnings};
  }
  return Status::Conflict("too many concurrent deploys; try again");
}

Result<std::vector<ReleaseInfo>> Releases::List(const std::string& app) {
  if (auto s = RequireApp(store_, app); !s.ok()) return s;
  auto kvs = store_->List(records::ReleasePrefix(app));
  if (!kvs.ok()) return kvs.status();
  std::vector<ReleaseInfo> out;
  for (auto it = kvs->rbegin(); it != kvs->rend(); ++it) out.push_back(records::ReleaseFrom(*it));
  return out;
}

Status Releases::ObserveServerVersion(const std::string& app, const std::string& address,
                                      const std::string& version) {
  // Deploy compares majors; a version it could not read would only be skipped there, and
  // `image show` would print whatever the machine sent.
  if (auto major = MajorVersion(version); !major.ok()) {
    return major.status().WithPrefix("server_version not recorded: ");
  }
  std::lock_guard lock(observed_mu_);
  observed_[{app, address}] = version;
  return {};
}

Result<ImageInfo> Releases::Image(const std::string& app) {
  auto latest = CurrentConfig(app);
  if (!latest.ok()) return latest.status();
  ImageInfo info;
  if (!latest->image.empty()) {
    SplitImage(latest->image, &info.registry, &info.repository, &info.tag);
  }
  if (latest->version > 0) info.version = "v" + std::to_string(latest->version);
  auto machines = machines_->List(app);
  if (!machines.ok()) return machines.status();
  std::lock_guard lock(observed_mu_);
  for (const auto& m : *machines) {
    auto it = observed_.find({app, m.address});
    info.machines.push_back({m.id, m.address, it == observed_.end() ? "" : it->second});
  }
  return info;
}

Result<std::string> Releases::ConnectionString(const std::string& app,
                                               const std::string& internal_url) {
  auto services = CurrentServices(app);
  if (!services.ok()) return services.status();
  std::string host = app + "." + options_.domain;
  // postgres[ql]://[user[:password]@]host[:port][/db][?params]
  static const std::regex url_re(
      R"(^(postgres(?:ql)?)://(?:([^@/]*)@)?(\[[^\]]+\]|[^:/?]*)(?::(\d+))?(/[^?]*)?(?:\?(.*))?$)");
  std::smatch m;
  std::string url = internal_url.empty() ? "postgres://postgres@" + app + ".internal:5432/postgres"
                                         : internal_url;
  if (!std::regex_match(url, m, url_re)) {
    return Status::InvalidArgument("not a postgres:// connection string: " + url);
  }
  int internal_port = 5432;
  if (m[4].matched) {
    auto port = base::ParseInt(m.str(4), 1, 65535);
    if (!port.ok()) return port.status().WithPrefix("connection string: port ");
    internal_port = static_cast<int>(*port);
  }
  int public_port = 0;
  for (const auto& s : services->services) {
    for (const auto& p : s.ports) {
      if (!p.HasHandler("pg_tls") || p.PublicPorts().empty()) continue;
      if (public_port == 0 || s.internal_port == internal_port) public_port = p.PublicPorts()[0];
      if (s.internal_port == internal_port) break;
    }
  }
  if (public_port == 0) {
    return Status::InvalidArgument("app \"" + app +
                                   "\" has no pg_tls service; deploy one first (see fly.toml's "
                                   "[[services]] with handlers = [\"pg_tls\"])");
  }
  std::string params;
  if (m[6].matched) {
    std::string rest = m[6];
    size_t start = 0;
    while (start <= rest.size()) {
      size_t amp = rest.find('&', start);
      std::string kv =
          rest.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
      if (!kv.empty() && kv.rfind("sslmode=", 0) != 0) params += "&" + kv;
      if (amp == std::string::npos) break;
      start = amp + 1;
    }
  }
  std::string out = std::string(m[1]) + "://" + (m[2].matched ? std::string(m[2]) + "@" : "") +
                    host + ":" + std::to_string(public_port) +
                    (m[5].matched ? std::string(m[5]) : "") + "?sslmode=require" + params;
  return out;
}

}  // namespace drawbridge::plane
