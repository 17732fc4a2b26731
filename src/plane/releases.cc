#include "plane/releases.h"

#include <limits>
#include <regex>

#include "base/parse_int.h"
#include "config/fly_toml.h"
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

}  // namespace

std::string DefaultConfig(const std::string& app) {
  return "app = \"" + app +
         "\"\n"
         "primary_region = \"local\"\n"
         "\n"
         "[[services]]\n"
         "  internal_port = 8080\n"
         "  protocol = \"tcp\"\n"
         "\n"
         "  [[services.ports]]\n"
         "    handlers = [\"http\"]\n"
         "    port = 80\n"
         "    force_https = true\n"
         "\n"
         "  [[services.ports]]\n"
         "    handlers = [\"tls\", \"http\"]\n"
         "    port = 443\n";
}

void SplitImage(const std::string& image, std::string* registry, std::string* repository,
                std::string* tag) {
  std::string rest = image;
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
    *tag = "latest";
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
    warnings.push_back(file + ": app: the file names app \"" + parsed->config.app +
                       "\"; deploying to \"" + app + "\"");
  }
  for (size_t s = 0; s < parsed->config.services.size(); ++s) {
    const auto& svc = parsed->config.services[s];
    for (size_t p = 0; p < svc.ports.size(); ++p) {
      if (svc.ports[p].HasHandler("http")) {
        warnings.push_back(file + ": services[" + std::to_string(s) + "].ports[" +
                           std::to_string(p) +
                           "].handlers: the \"http\" handler is not served by this edge yet; the "
                           "port is not opened");
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
