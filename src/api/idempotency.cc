#include "api/idempotency.h"

#include <openssl/evp.h>

#include <chrono>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api/http_status.h"

namespace drawbridge::api {

namespace {

using json = nlohmann::json;

// A key is the client's text: printable ASCII, as an HTTP header value carries it plainly.
constexpr size_t kMaxKeyLength = 255;
// Attempts to settle a race with another request of the same key (each loses only to a write).
constexpr int kMaxAttempts = 4;
// Records deleted by one sweep, at most: the rest wait for the next.
constexpr size_t kMaxPrunedPerSweep = 1000;

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

Response Error(int status, const std::string& message) {
  return {status, json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace)};
}

std::string KeyProblem(const std::string& key) {
  if (key.size() > kMaxKeyLength) return "Idempotency-Key is longer than 255 characters";
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) {
      return "Idempotency-Key must be printable ASCII without spaces";
    }
  }
  return "";
}

// What identifies the request besides its key: the same key on another request is refused.
std::string Fingerprint(const Request& req) {
  std::string text = req.method;
  text += ' ';
  text += req.target;
  text += '\n';
  text += req.body;
  return Sha256Hex(text);
}

std::string PendingRecord(const std::string& fingerprint, const std::string& what, int64_t now) {
  return json{{"state", "pending"}, {"fingerprint", fingerprint}, {"request", what},
              {"created", now}}
      .dump();
}

std::string DoneRecord(const std::string& fingerprint, const std::string& what, int64_t created,
                       const Response& r) {
  return json{{"state", "done"},
              {"fingerprint", fingerprint},
              {"request", what},
              {"created", created},
              {"status", r.status},
              {"body", r.body},
              {"content_type", r.content_type}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

// Fields of a record; a field of the wrong type (a record this code did not write) reads as
// missing, never throws.
int64_t IntField(const json& record, const char* name, int64_t fallback = 0) {
  auto it = record.find(name);
  return it != record.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}
std::string StrField(const json& record, const char* name, const std::string& fallback = "") {
  auto it = record.find(name);
  return it != record.end() && it->is_string() ? it->get<std::string>() : fallback;
}
int64_t Created(const json& record) { return IntField(record, "created"); }

}  // namespace

RequestRecords::RequestRecords(store::Store* store, std::function<int64_t()> now)
    : store_(store), now_(std::move(now)) {
  if (!now_) {
    now_ = [] {
      return static_cast<int64_t>(
          std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()));
    };
  }
}

Response RequestRecords::Once(const Request& req, const std::function<Response()>& handle) {
  const std::string& id = req.idempotency_key;
  if (std::string problem = KeyProblem(id); !problem.empty()) return Error(400, problem);
  const std::string key = std::string(kRequestsPrefix) + Sha256Hex(id);
  const std::string fingerprint = Fingerprint(req);
  const std::string what = req.method + " " + req.target;
  const int64_t now = now_();

  int64_t pending_revision = 0;
  for (int attempt = 0; attempt < kMaxAttempts && pending_revision == 0; ++attempt) {
    auto current = store_->Get(key);
    if (!current.ok()) return Error(HttpStatusFor(current.code()), current.message());
    store::Txn claim;
    if (!current->has_value()) {
      claim.compares.push_back(store::Compare::Absent(key));
    } else {
      json record = json::parse((*current)->value, nullptr, false);
      std::string state = record.is_object() ? StrField(record, "state") : "";
      bool readable = state == "pending" || state == "done";
      int64_t created = readable ? Created(record) : 0;
      bool expired = !readable || now - created >= std::chrono::seconds(kRecordLifetime).count();
      if (!expired) {
        if (StrField(record, "fingerprint") != fingerprint) {
          return Error(422, "Idempotency-Key \"" + id + "\" was used for another request (" +
                                StrField(record, "request") + "); use a new key for " + what);
        }
        if (state == "done") {
          Response replay;
          replay.status = static_cast<int>(IntField(record, "status", 200));
          replay.body = StrField(record, "body");
          replay.content_type = StrField(record, "content_type", "application/json");
          return replay;
        }
        if (now - created < kPendingTakeover.count()) {
          return Error(409, "a request with Idempotency-Key \"" + id +
                                "\" is still in progress; retry it later");
        }
        // Pending too long: the daemon that took it died mid-request. Taken over below.
      }
      claim.compares.push_back(store::Compare::ModRevision(key, (*current)->mod_revision));
    }
    claim.ops.push_back(store::Op::Put(key, PendingRecord(fingerprint, what, now)));
    auto committed = store_->Commit(claim);
    if (!committed.ok()) return Error(HttpStatusFor(committed.code()), committed.message());
    if (!committed->succeeded) continue;  // another request with this key came first: read again
    auto mine = store_->Get(key);
    if (!mine.ok() || !mine->has_value()) {
      // Written, yet not readable: run anyway (the request's own writes would fail alike).
      spdlog::warn("Idempotency-Key record {} not readable after its write", key);
      pending_revision = -1;
      break;
    }
    pending_revision = (*mine)->mod_revision;
  }
  if (pending_revision == 0) {
    return Error(409, "a request with Idempotency-Key \"" + id +
                          "\" is being answered concurrently; retry it later");
  }

  Response answer = handle();
  store::Txn settle;
  if (pending_revision > 0) {
    settle.compares.push_back(store::Compare::ModRevision(key, pending_revision));
  }
  if (answer.status >= 500) {
    settle.ops.push_back(store::Op::Delete(key));
  } else {
    settle.ops.push_back(store::Op::Put(key, DoneRecord(fingerprint, what, now, answer)));
  }
  if (auto r = store_->Commit(settle); !r.ok() || !r->succeeded) {
    // The answer stands; a retry then finds the pending record (409) until it can be taken over.
    spdlog::warn("Idempotency-Key record {} for {} not settled: {}", key, what,
                 r.ok() ? "it changed meanwhile" : r.message());
  }
  MaybePrune(now);
  return answer;
}

void RequestRecords::MaybePrune(int64_t now) {
  int64_t last = last_prune_.load();
  if (now - last < std::chrono::seconds(kPruneInterval).count()) return;
  if (!last_prune_.compare_exchange_strong(last, now)) return;  // another thread sweeps
  auto records = store_->List(kRequestsPrefix);
  if (!records.ok()) return;
  const int64_t lifetime = std::chrono::seconds(kRecordLifetime).count();
  size_t pruned = 0;
  for (const auto& kv : *records) {
    if (pruned >= kMaxPrunedPerSweep) break;
    json record = json::parse(kv.value, nullptr, false);
    if (record.is_object() && now - Created(record) < lifetime) continue;
    store::Txn txn;
    txn.compares.push_back(store::Compare::ModRevision(kv.key, kv.mod_revision));
    txn.ops.push_back(store::Op::Delete(kv.key));
    if (auto r = store_->Commit(txn); !r.ok()) return;  // the store is down: next sweep
    ++pruned;
  }
  if (pruned > 0) spdlog::info("{} expired Idempotency-Key records removed", pruned);
}

}  // namespace drawbridge::api
