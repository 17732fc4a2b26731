#include "store/mirror.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "store/etcd_client.h"

namespace drawbridge::store {

namespace {

constexpr const char* kFormat = "drawbridge-etcd-mirror/1";

bool Under(const std::string& key, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes) {
    if (key.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

}  // namespace

std::optional<KeyValue> Mirror::Get(const std::string& key) const {
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

std::vector<KeyValue> Mirror::List(const std::string& prefix) const {
  std::vector<KeyValue> out;
  for (auto it = data_.lower_bound(prefix); it != data_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    out.push_back(it->second);
  }
  return out;
}

void Mirror::Replace(std::map<std::string, KeyValue> data, int64_t revision) {
  data_ = std::move(data);
  revision_ = revision;
}

bool Mirror::Apply(const std::vector<Event>& events, int64_t revision,
                   const std::vector<std::string>& quiet_prefixes) {
  bool loud = false;
  for (const auto& e : events) {
    auto it = data_.find(e.kv.key);
    // An event older than what is here was applied already (a resync overlapping the stream).
    if (it != data_.end() && it->second.mod_revision >= e.kv.mod_revision) continue;
    if (e.is_delete) {
      if (it == data_.end()) continue;
      data_.erase(it);
    } else {
      data_[e.kv.key] = e.kv;
    }
    if (!Under(e.kv.key, quiet_prefixes)) loud = true;
  }
  revision_ = std::max(revision_, revision);
  return loud;
}

void Mirror::Advance(int64_t revision) { revision_ = std::max(revision_, revision); }

std::string Mirror::Serialize(const std::string& prefix) const {
  nlohmann::json kvs = nlohmann::json::array();
  for (const auto& [key, kv] : data_) {
    kvs.push_back({EtcdBase64(key), EtcdBase64(kv.value), kv.create_revision, kv.mod_revision});
  }
  nlohmann::json j{{"format", kFormat}, {"prefix", prefix}, {"revision", revision_}, {"kvs", kvs}};
  return j.dump() + "\n";
}

base::Result<Mirror> Mirror::Load(const std::string& path, const std::string& prefix) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return base::Status::NotFound(path + ": no local copy");
    return base::Status::InvalidArgument(path + ": " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  auto bad = [&](const std::string& why) {
    return base::Status::InvalidArgument(path + ": not a usable local copy of the store: " + why);
  };
  if (!j.is_object() || j.value("format", "") != kFormat) return bad("unknown format");
  if (j.value("prefix", "") != prefix) {
    return bad("it holds prefix " + j.value("prefix", "") + ", not " + prefix);
  }
  if (!j.contains("revision") || !j["revision"].is_number_integer() || !j.contains("kvs") ||
      !j["kvs"].is_array()) {
    return bad("no revision or keys");
  }
  Mirror m;
  m.revision_ = j["revision"].get<int64_t>();
  for (const auto& row : j["kvs"]) {
    if (!row.is_array() || row.size() != 4 || !row[0].is_string() || !row[1].is_string() ||
        !row[2].is_number_integer() || !row[3].is_number_integer()) {
      return bad("a malformed key");
    }
    auto key = EtcdUnbase64(row[0].get<std::string>());
    auto value = EtcdUnbase64(row[1].get<std::string>());
    if (!key.ok() || !value.ok()) return bad("a key or value that is not base64");
    m.data_[*key] = KeyValue{*key, *value, row[2].get<int64_t>(), row[3].get<int64_t>()};
  }
  return m;
}

base::Status WritePrivateFile(const std::string& path, const std::string& text) {
  std::string temp = path + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return base::Status::Internal(temp + ": cannot create: " + std::strerror(errno));
  auto fail = [&](const char* what) {
    int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return base::Status::Internal(temp + ": " + what + ": " + std::strerror(err));
  };
  // A temporary file left 0644 by something else is narrowed before anything is written to it.
  if (::fchmod(fd, 0600) != 0) return fail("cannot make it 0600");
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot sync");
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return base::Status::Internal(path + ": cannot replace: " + std::strerror(err));
  }
  return {};
}

}  // namespace drawbridge::store
