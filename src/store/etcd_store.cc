#include "store/etcd_store.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <openssl/rand.h>
#include <thread>

#include "store/etcd_client.h"
#include "store/mirror.h"

namespace drawbridge::store {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultPrefix = "/drawbridge/";
constexpr auto kCommitWait = std::chrono::seconds(2);
// How long a commit whose answer was lost keeps trying to learn its outcome (an etcd leader
// election takes about one election timeout, 1 s by default).
constexpr auto kSettleTime = std::chrono::seconds(8);
constexpr const char* kMarkerSuffix = ".txn/";
constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);
constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
// A watch stream with nothing to say for this long is checked with a quorum read, so a member
// that is up but cut off from its cluster is noticed (the stream alone would stay quiet).
constexpr auto kProbeIdle = std::chrono::milliseconds(3000);

// etcd's int64 fields arrive as strings ("12"); absent means 0.
int64_t Int(const json& j, const char* field) {
  if (!j.is_object() || !j.contains(field)) return 0;
  const auto& v = j[field];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (...) {
      return 0;
    }
  }
  return 0;
}

// The smallest key greater than every key starting with `prefix` (etcd's range_end).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (prefix.empty()) return std::string(1, '\0');
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

std::string Decode(const json& j, const char* field) {
  if (!j.is_object() || !j.contains(field) || !j[field].is_string()) return {};
  auto r = EtcdUnbase64(j[field].get<std::string>());
  return r.ok() ? *r : std::string();
}

class EtcdStore : public Store {
 public:
  EtcdStore(EtcdOptions options, std::unique_ptr<EtcdClient> client, std::string name)
      : options_(std::move(options)), client_(std::move(client)), name_(std::move(name)) {
    unsigned char boot[8] = {};
    RAND_bytes(boot, sizeof boot);
    static const char kHex[] = "0123456789abcdef";
    for (unsigned char b : boot) {
      boot_id_ += kHex[b >> 4];
      boot_id_ += kHex[b & 15];
    }
    // Outside the prefix, so the mirror and every List never see it: "/drawbridge/" ->
    // "/drawbridge.txn/<writer>".
    std::string base = options_.prefix;
    if (!base.empty() && base.back() == '/') base.pop_back();
    marker_key_ = base + kMarkerSuffix + (options_.writer.empty() ? boot_id_ : options_.writer);
  }

  ~EtcdStore() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      stop_flag_ = true;
      wake_.notify_all();
      applied_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

  base::Status Open() {
    bool cached = false;
    std::string why_not =
        options_.cache_path.empty() ? "" : " (" + options_.cache_path + " is absent)";
    if (!options_.cache_path.empty()) {
      auto m = Mirror::Load(options_.cache_path, options_.prefix);
      if (m.ok()) {
        mirror_ = std::move(*m);
        cached = true;
      } else if (m.code() != base::StatusCode::kNotFound) {
        spdlog::warn("{}: the local copy is not used: {}", name_, m.message());
        why_not = " (" + m.message() + ")";
      }
    }
    auto synced = Resync();
    if (synced.ok()) {
      // etcd answered: healthy from the start (the watch connects a moment later).
      std::lock_guard lock(mu_);
      stream_up_ = true;
    } else {
      if (synced.code() != base::StatusCode::kUnavailable) return synced;
      if (!cached) {
        return base::Status::Unavailable(synced.message() +
                                         "; and no local copy of the store to serve" + why_not);
      }
      spdlog::warn("{}; serving the local copy {} (revision {}) until etcd answers",
                   synced.message(), options_.cache_path, mirror_.revision());
      std::lock_guard lock(mu_);
      stream_up_ = false;
      stream_error_ = synced.message();
      need_resync_ = true;
    }
    thread_ = std::thread([this] { Loop(); });
    return {};
  }

  base::Result<std::optional<KeyValue>> Get(const std::string& key) override {
    std::lock_guard lock(mu_);
    return mirror_.Get(key);
  }

  base::Result<std::vector<KeyValue>> List(const std::string& prefix) override {
    std::lock_guard lock(mu_);
    return mirror_.List(prefix);
  }

  base::Result<int64_t> Revision() override {
    std::lock_guard lock(mu_);
    return mirror_.revision();
  }

  void Watch(std::function<void(int64_t)> on_change) override {
    std::lock_guard lock(mu_);
    watchers_.push_back(std::move(on_change));
  }

  std::string Describe() const override { return name_; }
  std::vector<std::string> Endpoints() const override { return options_.endpoints; }

  StoreHealth Health() override {
    std::lock_guard lock(mu_);
    StoreHealth h;
    h.applied_revision = mirror_.revision();
    h.healthy = stream_up_ && request_error_.empty();
    if (!stream_up_) {
      h.error = stream_error_.empty() ? name_ + ": not connected" : stream_error_;
    } else {
      h.error = request_error_;
    }
    return h;
  }

  base::Result<TxnResult> Commit(const Txn& txn) override {
    json compare = json::array(), success = json::array(), failure = json::array();
    for (const auto& c : txn.compares) {
      std::string key = EtcdBase64(options_.prefix + c.key);
      if (c.kind == Compare::Kind::kAbsent) {
        compare.push_back(
            {{"key", key}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}});
      } else {
        compare.push_back({{"key", key},
                           {"target", "MOD"},
                           {"result", "EQUAL"},
                           {"mod_revision", std::to_string(c.revision)}});
      }
      // On failure, the compared keys' revisions as etcd has them: the call then waits until
      // the mirror shows at least that much.
      failure.push_back({{"request_range", {{"key", key}, {"keys_only", true}}}});
    }
    for (const auto& op : txn.ops) {
      std::string key = options_.prefix + op.key;
      switch (op.kind) {
        case Op::Kind::kPut:
          success.push_back(
              {{"request_put", {{"key", EtcdBase64(key)}, {"value", EtcdBase64(op.value)}}}});
          break;
        case Op::Kind::kDelete:
          success.push_back({{"request_delete_range", {{"key", EtcdBase64(key)}}}});
          break;
        case Op::Kind::kDeletePrefix:
          success.push_back(
              {{"request_delete_range",
                {{"key", EtcdBase64(key)}, {"range_end", EtcdBase64(PrefixEnd(key))}}}});
          break;
      }
    }
    // The commit marker: written with the ops, so that a commit whose answer was lost (a leader
    // that died with it in flight) can be told applied or not by reading the marker back.
    std::string marker;
    if (!txn.ops.empty()) {
      marker = boot_id_ + ":" + std::to_string(++commits_);
      success.push_back({{"request_put",
                          {{"key", EtcdBase64(marker_key_)}, {"value", EtcdBase64(marker)}}}});
    }
    json body{{"compare", compare}, {"success", success}, {"failure", failure}};
    bool sent = false;
    auto answer = client_->Call("/v3/kv/txn", body, /*idempotent=*/false, &sent);
    if (!answer.ok() && sent && !marker.empty() &&
        answer.code() == base::StatusCode::kUnavailable) {
      answer = Settle(body, marker, answer.status());
      if (!answer.ok()) sent = true;
    }
    if (!answer.ok()) {
      if (answer.code() != base::StatusCode::kUnavailable) {
        return answer.status().WithPrefix(name_ + ": ");
      }
      std::string msg = name_ + ": unreachable (" + answer.message() + "); " +
                        (sent ? "outcome unknown" : "nothing was written");
      SetRequestError(msg);
      return base::Status::Unavailable(msg);
    }
    SetRequestError("");
    const json& r = *answer;
    int64_t revision = Int(r.contains("header") ? r["header"] : json(), "revision");
    bool succeeded =
        r.contains("succeeded") && r["succeeded"].is_boolean() && r["succeeded"].get<bool>();
    const json responses = r.contains("responses") ? r["responses"] : json::array();
    if (succeeded) {
      bool changed = false;
      for (size_t i = 0; i < txn.ops.size(); ++i) {
        if (txn.ops[i].kind == Op::Kind::kPut) {
          changed = true;
        } else if (i < responses.size() && responses[i].contains("response_delete_range") &&
                   Int(responses[i]["response_delete_range"], "deleted") > 0) {
          changed = true;
        }
      }
      if (changed && !WaitUntil([&] { return mirror_.revision() >= revision; })) {
        spdlog::warn("{}: revision {} committed but not applied here within {} s", name_, revision,
                     kCommitWait.count());
      }
      return TxnResult{true, revision};
    }
    // What etcd had for each compared key at `revision`: its mod revision, or 0 when absent.
    std::vector<std::pair<std::string, int64_t>> seen;
    for (size_t i = 0; i < txn.compares.size(); ++i) {
      int64_t mod = 0;
      if (i < responses.size() && responses[i].contains("response_range")) {
        const auto& range = responses[i]["response_range"];
        if (range.contains("kvs") && range["kvs"].is_array() && !range["kvs"].empty()) {
          mod = Int(range["kvs"][0], "mod_revision");
        }
      }
      seen.emplace_back(txn.compares[i].key, mod);
    }
    WaitUntil([&] {
      if (mirror_.revision() >= revision) return true;
      for (const auto& [key, mod] : seen) {
        auto kv = mirror_.Get(key);
        bool fresh =
            mod > 0 ? kv && kv->mod_revision >= mod : !kv || kv->create_revision > revision;
        if (!fresh) return false;
      }
      return true;
    });
    return TxnResult{false, revision};
  }

 private:
  // A commit was sent and no answer came: reads the marker back (a linearizable read, which a
  // new leader answers only once it has committed every entry it will ever commit from the old
  // term). Our marker there: the commit was applied, and its answer is rebuilt as a success.
  // Anything else: it was not, and it is sent once more. Bounded by kSettleTime.
  base::Result<json> Settle(const json& body, const std::string& marker, base::Status first) {
    auto until = std::chrono::steady_clock::now() + kSettleTime;
    while (std::chrono::steady_clock::now() < until) {
      auto read = client_->Call("/v3/kv/range", {{"key", EtcdBase64(marker_key_)}},
                                /*idempotent=*/true);
      if (!read.ok()) {
        if (read.code() != base::StatusCode::kUnavailable) return read.status();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      const json& r = *read;
      if (r.contains("kvs") && r["kvs"].is_array() && !r["kvs"].empty()) {
        auto value = EtcdUnbase64(r["kvs"][0].value("value", ""));
        if (value.ok() && *value == marker) {
          int64_t revision = Int(r["kvs"][0], "mod_revision");
          spdlog::info("{}: a commit whose answer was lost was applied (revision {})", name_,
                       revision);
          return json{{"header", {{"revision", std::to_string(revision)}}},
                      {"succeeded", true},
                      {"responses", json::array()}};
        }
      }
      spdlog::info("{}: a commit whose answer was lost was not applied; sending it again", name_);
      bool sent = false;
      auto again = client_->Call("/v3/kv/txn", body, /*idempotent=*/false, &sent);
      if (again.ok() || !sent) return again;
      // Lost again: read the marker once more.
    }
    return first;
  }

  // Waits (up to kCommitWait) until `ready` holds under mu_; whether it did.
  template <typename Ready>
  bool WaitUntil(Ready ready) {
    std::unique_lock lock(mu_);
    return applied_.wait_for(lock, kCommitWait, [&] { return ready() || stop_; }) && ready();
  }

  void SetRequestError(const std::string& error) {
    std::lock_guard lock(mu_);
    request_error_ = error;
  }

  // Reads the whole prefix at etcd's current revision and replaces the mirror with it.
  base::Status Resync() {
    json body{{"key", EtcdBase64(options_.prefix)},
              {"range_end", EtcdBase64(PrefixEnd(options_.prefix))}};
    auto answer = client_->Call("/v3/kv/range", body, /*idempotent=*/true);
    if (!answer.ok()) {
      if (answer.code() == base::StatusCode::kUnavailable) {
        return base::Status::Unavailable(name_ + ": unreachable (" + answer.message() + ")");
      }
      return answer.status().WithPrefix(name_ + ": ");
    }
    const json& r = *answer;
    int64_t revision = Int(r.contains("header") ? r["header"] : json(), "revision");
    std::map<std::string, KeyValue> data;
    if (r.contains("kvs") && r["kvs"].is_array()) {
      for (const auto& kv : r["kvs"]) {
        std::string key = Decode(kv, "key");
        if (key.compare(0, options_.prefix.size(), options_.prefix) != 0) continue;
        key.erase(0, options_.prefix.size());
        data[key] =
            KeyValue{key, Decode(kv, "value"), Int(kv, "create_revision"), Int(kv, "mod_revision")};
      }
    }
    std::vector<std::function<void(int64_t)>> watchers;
    {
      std::lock_guard lock(mu_);
      mirror_.Replace(std::move(data), revision);
      request_error_.clear();
      watchers = watchers_;
      applied_.notify_all();
    }
    Persist();
    for (auto& w : watchers) w(revision);
    return {};
  }

  // Writes the mirror to cache_path; a failure is logged once until it works again.
  void Persist() {
    if (options_.cache_path.empty()) return;
    std::string text;
    {
      std::lock_guard lock(mu_);
      text = mirror_.Serialize(options_.prefix);
    }
    auto s = WritePrivateFile(options_.cache_path, text);
    if (!s.ok() && !persist_failing_) spdlog::error("{}: the local copy: {}", name_, s.message());
    persist_failing_ = !s.ok();
  }

  void SetStreamDown(const std::string& error) {
    std::lock_guard lock(mu_);
    if (stream_up_) spdlog::warn("{}: watch lost: {}", name_, error);
    stream_up_ = false;
    stream_error_ = error;
  }

  // Sleeps `d` unless the store is being destroyed; whether to go on.
  bool Pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !wake_.wait_for(lock, d, [&] { return stop_; });
  }

  // The watch thread: (re)connects the stream, resyncs when needed, backs off up to 1 s.
  void Loop() {
    pthread_setname_np(pthread_self(), "etcd-watch");
    auto backoff = kFirstBackoff;
    for (;;) {
      bool resync;
      int64_t from;
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
        resync = need_resync_;
      }
      if (resync) {
        auto s = Resync();
        if (!s.ok()) {
          SetStreamDown(s.message());
          if (!Pause(backoff)) return;
          backoff = std::min(backoff * 2, kMaxBackoff);
          continue;
        }
        std::lock_guard lock(mu_);
        need_resync_ = false;
      }
      {
        std::lock_guard lock(mu_);
        from = mirror_.revision() + 1;
      }
      start_revision_ = from;
      json create{{"key", EtcdBase64(options_.prefix)},
                  {"range_end", EtcdBase64(PrefixEnd(options_.prefix))},
                  {"start_revision", std::to_string(from)},
                  {"progress_notify", true}};
      connected_ = false;
      auto s = client_->Watch(
          create, [this](const json& m) { return OnMessage(m); }, kProbeIdle,
          [this] { return Probe(); }, stop_flag_);
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
      }
      SetStreamDown(s.ok()
                        ? (watch_error_.empty() ? name_ + ": the watch stream ended" : watch_error_)
                        : name_ + ": " + s.message());
      watch_error_.clear();
      if (connected_) backoff = kFirstBackoff;
      bool resync_now;
      {
        std::lock_guard lock(mu_);
        resync_now = need_resync_;
      }
      if (resync_now && connected_) continue;  // compaction: resync at once
      if (!Pause(backoff)) return;
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }

  // A quorum read while the stream is quiet: whether etcd still serves.
  bool Probe() {
    json body{{"key", EtcdBase64(options_.prefix)},
              {"range_end", EtcdBase64(PrefixEnd(options_.prefix))},
              {"limit", 1},
              {"keys_only", true}};
    auto r = client_->Call("/v3/kv/range", body, /*idempotent=*/true);
    SetRequestError(r.ok() ? "" : name_ + ": unreachable (" + r.message() + ")");
    return r.ok();
  }

  // One message of the watch stream, on the watch thread. False ends the stream.
  bool OnMessage(const json& m) {
    if (m.contains("error")) {
      watch_error_ = name_ + ": watch: " + m["error"].dump();
      return false;
    }
    if (!m.contains("result") || !m["result"].is_object()) return true;
    const json& r = m["result"];
    int64_t header_revision = Int(r.contains("header") ? r["header"] : json(), "revision");
    bool canceled = r.value("canceled", false);
    if (canceled) {
      if (Int(r, "compact_revision") > 0) {
        spdlog::info("{}: revision {} was compacted (oldest kept: {}); reading everything again",
                     name_, start_revision_, Int(r, "compact_revision"));
        std::lock_guard lock(mu_);
        need_resync_ = true;
        watch_error_ = name_ + ": the watched revision was compacted";
        return false;
      }
      std::string reason = r.value("cancel_reason", std::string("canceled"));
      if (reason.find("auth token") != std::string::npos) client_->DropToken();
      watch_error_ = name_ + ": watch refused: " + reason;
      return false;
    }
    if (r.value("created", false)) {
      // etcd's history ends before ours: another cluster, or one restored from an older backup.
      if (header_revision < start_revision_ - 1) {
        spdlog::warn("{}: etcd is at revision {}, behind this node's {}; reading everything again",
                     name_, header_revision, start_revision_ - 1);
        std::lock_guard lock(mu_);
        need_resync_ = true;
        return false;
      }
      connected_ = true;
      // The stream is up; whether writes work too (a quorum) is another question: ask now, so
      // that the health a failed write left behind is not kept until the next write.
      (void)Probe();
      std::lock_guard lock(mu_);
      if (!stream_up_) spdlog::info("{}: watching from revision {}", name_, start_revision_);
      stream_up_ = true;
      stream_error_.clear();
      return true;
    }
    std::vector<Mirror::Event> events;
    int64_t last = 0;
    if (r.contains("events") && r["events"].is_array()) {
      for (const auto& e : r["events"]) {
        const json& kv = e.contains("kv") ? e["kv"] : json();
        std::string key = Decode(kv, "key");
        if (key.compare(0, options_.prefix.size(), options_.prefix) != 0) continue;
        key.erase(0, options_.prefix.size());
        Mirror::Event ev;
        ev.is_delete = e.value("type", std::string()) == "DELETE";
        ev.kv =
            KeyValue{key, Decode(kv, "value"), Int(kv, "create_revision"), Int(kv, "mod_revision")};
        last = std::max(last, ev.kv.mod_revision);
        events.push_back(std::move(ev));
      }
    }
    std::vector<std::function<void(int64_t)>> watchers;
    int64_t revision;
    {
      std::lock_guard lock(mu_);
      if (events.empty()) {
        // A progress notice: every change up to the header's revision has been sent.
        mirror_.Advance(header_revision);
        applied_.notify_all();
        return true;
      }
      if (mirror_.Apply(events, last, options_.quiet_prefixes)) watchers = watchers_;
      revision = mirror_.revision();
      applied_.notify_all();
    }
    Persist();
    for (auto& w : watchers) w(revision);
    return true;
  }

  const EtcdOptions options_;
  const std::unique_ptr<EtcdClient> client_;
  const std::string name_;
  std::string boot_id_;     // random per process: commit markers of a restarted writer differ
  std::string marker_key_;  // <prefix without its last '/'>.txn/<writer>
  std::atomic<uint64_t> commits_{0};

  std::mutex mu_;
  std::condition_variable applied_;  // the mirror moved (Commit waits here)
  std::condition_variable wake_;     // stop_ was set (the watch thread's backoff waits here)
  Mirror mirror_;
  std::vector<std::function<void(int64_t)>> watchers_;
  bool stop_ = false;
  bool need_resync_ = false;
  bool stream_up_ = false;
  std::string stream_error_;   // why the watch stream is down
  std::string request_error_;  // the last request's failure; empty once one succeeds

  // The watch thread's own state.
  std::thread thread_;
  std::atomic<bool> stop_flag_{false};
  int64_t start_revision_ = 0;
  bool connected_ = false;
  std::string watch_error_;
  bool persist_failing_ = false;
};

bool ValidHostName(const std::string& host) {
  if (host.empty() || host.size() > 253) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
  });
}

}  // namespace

base::Result<std::vector<std::string>> ParseEtcdUrl(const std::string& url) {
  constexpr std::string_view kScheme = "etcd://";
  const std::string form = " (etcd://HOST:PORT[,HOST:PORT...], IPv6 as [::1]:2379)";
  if (url.compare(0, kScheme.size(), kScheme) != 0) {
    return base::Status::InvalidArgument(url + ": not an etcd store URL" + form);
  }
  std::string rest = url.substr(kScheme.size());
  if (rest.empty()) return base::Status::InvalidArgument(url + ": no endpoint" + form);
  if (rest.find_first_of("/?@#") != std::string::npos) {
    return base::Status::InvalidArgument(
        url +
        ": only host:port endpoints go in the URL (a key prefix, user or option has a "
        "flag of its own)");
  }
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t comma = rest.find(',', start);
    std::string ep =
        rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (ep.empty()) return base::Status::InvalidArgument(url + ": an empty endpoint" + form);
    std::string host, port;
    if (ep[0] == '[') {
      size_t close = ep.find(']');
      if (close == std::string::npos) {
        return base::Status::InvalidArgument(url + ": " + ep + ": no closing ]" + form);
      }
      host = ep.substr(1, close - 1);
      in6_addr addr{};
      if (inet_pton(AF_INET6, host.c_str(), &addr) != 1) {
        return base::Status::InvalidArgument(url + ": " + ep + ": " + host +
                                             " is not an IPv6 address");
      }
      if (close + 1 >= ep.size() || ep[close + 1] != ':') {
        return base::Status::InvalidArgument(url + ": " + ep + ": no port (etcd's is 2379: " + ep +
                                             ":2379)");
      }
      port = ep.substr(close + 2);
    } else {
      size_t colon = ep.find(':');
      if (colon == std::string::npos) {
        return base::Status::InvalidArgument(url + ": " + ep + ": no port (etcd's is 2379: " + ep +
                                             ":2379)");
      }
      if (ep.find(':', colon + 1) != std::string::npos) {
        return base::Status::InvalidArgument(url + ": " + ep +
                                             ": an IPv6 address goes in brackets, as [::1]:2379");
      }
      host = ep.substr(0, colon);
      port = ep.substr(colon + 1);
      if (!ValidHostName(host)) {
        return base::Status::InvalidArgument(url + ": " + ep + ": \"" + host +
                                             "\" is not a host name or address");
      }
    }
    bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
      return base::Status::InvalidArgument(url + ": " + ep + ": the port \"" + port +
                                           "\" is not a number from 1 to 65535");
    }
    if (std::find(out.begin(), out.end(), ep) != out.end()) {
      return base::Status::InvalidArgument(url + ": " + ep + " is given twice");
    }
    out.push_back(ep);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

base::Result<std::unique_ptr<Store>> OpenEtcdStore(EtcdOptions options) {
  if (options.endpoints.empty()) {
    return base::Status::InvalidArgument("etcd store: no endpoints");
  }
  if (options.prefix.empty()) {
    return base::Status::InvalidArgument("etcd store: the key prefix is empty");
  }
  std::string name = "etcd://";
  for (size_t i = 0; i < options.endpoints.size(); ++i) {
    name += (i ? "," : "") + options.endpoints[i];
  }
  if (options.prefix != kDefaultPrefix) name += " (prefix " + options.prefix + ")";
  EtcdClientOptions c;
  c.endpoints = options.endpoints;
  c.ca_file = options.ca_file;
  c.cert_file = options.cert_file;
  c.key_file = options.key_file;
  c.user = options.user;
  c.password = options.password;
  c.request_timeout = options.request_timeout;
  c.name = name;
  auto client = EtcdClient::Create(std::move(c));
  if (!client.ok()) return client.status();
  auto store = std::make_unique<EtcdStore>(std::move(options), std::move(*client), name);
  if (auto s = store->Open(); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace drawbridge::store
