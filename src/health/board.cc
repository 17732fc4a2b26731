#include "health/board.h"

#include <algorithm>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/prometheus_label.h"
#include "base/utc_time.h"

namespace drawbridge::health {
namespace {

using std::chrono::milliseconds;

std::string Describe(const MachineKey& key) {
  return "app " + key.app + ": machine " + key.address + " port " + std::to_string(key.port);
}

// "address:port", with brackets around an IPv6 address.
std::string MachineLabel(const MachineKey& key) {
  if (key.address.find(':') != std::string::npos) {
    return "[" + key.address + "]:" + std::to_string(key.port);
  }
  return key.address + ":" + std::to_string(key.port);
}

std::string DurationText(milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace

SessionTicket::SessionTicket(std::shared_ptr<std::atomic<int>> counter)
    : counter_(std::move(counter)) {
  if (counter_) counter_->fetch_add(1, std::memory_order_relaxed);
}

SessionTicket& SessionTicket::operator=(SessionTicket&& other) noexcept {
  if (this != &other) {
    Release();
    counter_ = std::move(other.counter_);
  }
  return *this;
}

void SessionTicket::Release() {
  if (counter_) {
    counter_->fetch_sub(1, std::memory_order_relaxed);
    counter_.reset();
  }
}

bool Board::Machine::ActiveFailing() const {
  return std::any_of(checks.begin(), checks.end(),
                     [](const CheckState& c) { return c.has_result && !c.ok; });
}

void Board::Logs::Flush() const {
  for (const auto& line : warn) spdlog::warn("{}", line);
  for (const auto& line : info) spdlog::info("{}", line);
}

Board::Machine& Board::Get(const MachineKey& key) {
  auto it = machines_.find(key);
  if (it != machines_.end()) return it->second;
  Machine m;
  if (auto d = dropped_.find(key); d != dropped_.end()) {
    if (auto counter = d->second.lock()) m.sessions = std::move(counter);
    dropped_.erase(d);
  }
  return machines_.emplace(key, std::move(m)).first->second;
}

void Board::NoteHealth(const MachineKey& key, bool was, const Machine& m, const std::string& why,
                       Logs& logs) {
  const bool now = m.Healthy();
  if (was && !now) logs.warn.push_back(Describe(key) + " unhealthy: " + why);
  if (!was && now) logs.info.push_back(Describe(key) + " healthy again");
}

void Board::SetTargets(const std::vector<Target>& targets,
                       std::chrono::steady_clock::time_point now) {
  Logs logs;
  {
    std::lock_guard lock(mu_);
    std::set<MachineKey> listed;
    for (const auto& target : targets) {
      listed.insert(target.key);
      Machine& m = Get(target.key);
      if (!m.listed) {
        m.listed = true;
        m.first_listed = now;
      }
      // A check keeps its last result when its parameters change (the machine's state did
      // not); the checker runs the changed check at once. Removed checks no longer count.
      std::vector<CheckState> checks(target.checks.size());
      for (size_t i = 0; i < target.checks.size(); ++i) {
        if (i < m.checks.size()) checks[i] = m.checks[i];
        checks[i].check = target.checks[i];
      }
      const bool was = m.Healthy();
      m.checks = std::move(checks);
      NoteHealth(target.key, was, m, "", logs);
    }
    for (auto it = machines_.begin(); it != machines_.end();) {
      if (listed.count(it->first)) {
        ++it;
        continue;
      }
      if (it->second.sessions->load(std::memory_order_relaxed) > 0) {
        dropped_[it->first] = it->second.sessions;
      }
      it = machines_.erase(it);
    }
    std::erase_if(dropped_, [](const auto& d) { return d.second.expired(); });
  }
  logs.Flush();
}

void Board::CheckResult(const MachineKey& key, size_t check_index, bool ok,
                        const std::string& detail, std::chrono::steady_clock::time_point now,
                        std::chrono::system_clock::time_point wall) {
  Logs logs;
  {
    std::lock_guard lock(mu_);
    auto it = machines_.find(key);
    if (it == machines_.end() || !it->second.listed) return;
    Machine& m = it->second;
    if (check_index >= m.checks.size()) return;
    CheckState& c = m.checks[check_index];
    if (!ok && now < m.first_listed + c.check.grace_period) return;
    const bool was = m.Healthy();
    c.has_result = true;
    c.ok = ok;
    c.detail = ok ? "" : detail;
    c.at = wall;
    if (ok) {
      // The machine answers: a passive mark from an earlier failed connect is over.
      m.passive_down = false;
      m.backoff = milliseconds{0};
    }
    NoteHealth(key, was, m, detail, logs);
  }
  logs.Flush();
}

void Board::ConnectFailed(const MachineKey& key, std::chrono::steady_clock::time_point now) {
  Logs logs;
  {
    std::lock_guard lock(mu_);
    Machine& m = Get(key);
    m.connect_failures++;
    const bool was = m.Healthy();
    if (!m.passive_down) {
      m.passive_down = true;
      m.backoff = kPassiveBackoffFirst;
      m.passive_until = now + m.backoff;
    } else if (now >= m.passive_until) {
      m.backoff = std::min(m.backoff * 2, kPassiveBackoffMax);
      m.passive_until = now + m.backoff;
    }
    NoteHealth(key, was, m,
               "a connect for a client failed (tried again after " + DurationText(m.backoff) +
                   " or when a check passes)",
               logs);
  }
  logs.Flush();
}

void Board::ConnectSucceeded(const MachineKey& key) {
  Logs logs;
  {
    std::lock_guard lock(mu_);
    auto it = machines_.find(key);
    if (it == machines_.end() || !it->second.passive_down) return;
    Machine& m = it->second;
    const bool was = m.Healthy();
    m.passive_down = false;
    m.backoff = milliseconds{0};
    NoteHealth(key, was, m, "", logs);
  }
  logs.Flush();
}

void Board::LearnRole(const MachineKey& key, bool in_hot_standby,
                      std::chrono::steady_clock::time_point now) {
  Logs logs;
  {
    std::lock_guard lock(mu_);
    Machine& m = Get(key);
    const Role role = in_hot_standby ? Role::kStandby : Role::kPrimary;
    if (m.role != role) {
      logs.info.push_back(Describe(key) + " is now " + RoleName(role));
    }
    m.role = role;
    m.role_learned = now;
  }
  logs.Flush();
}

SessionTicket Board::OpenSession(const MachineKey& key) {
  std::lock_guard lock(mu_);
  return SessionTicket(Get(key).sessions);
}

std::vector<MachineView> Board::View(const std::string& app, int port,
                                     std::span<const std::string> addresses,
                                     std::chrono::steady_clock::time_point now) const {
  std::vector<MachineView> out;
  out.reserve(addresses.size());
  std::lock_guard lock(mu_);
  MachineKey key{app, "", port};
  for (const auto& address : addresses) {
    MachineView v;
    v.address = address;
    key.address = address;
    auto it = machines_.find(key);
    if (it != machines_.end()) {
      const Machine& m = it->second;
      v.healthy = m.Healthy();
      v.last_resort = !v.healthy && !m.ActiveFailing() && now >= m.passive_until;
      v.role = m.role;
      v.role_learned = m.role_learned;
      v.sessions = m.sessions->load(std::memory_order_relaxed);
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<Board::Status> Board::AppStatus(const std::string& app) const {
  std::vector<Status> out;
  std::lock_guard lock(mu_);
  for (auto it = machines_.lower_bound(MachineKey{app, "", 0});
       it != machines_.end() && it->first.app == app; ++it) {
    const Machine& m = it->second;
    Status s;
    s.key = it->first;
    s.healthy = m.Healthy();
    s.role = m.role;
    s.sessions = m.sessions->load(std::memory_order_relaxed);
    s.connect_failures = m.connect_failures;
    // The failing check if any, else "passing" once a check has passed; the time of the
    // latest result.
    const CheckState* failing = nullptr;
    std::chrono::system_clock::time_point latest{};
    bool any = false;
    for (const auto& c : m.checks) {
      if (!c.has_result) continue;
      if (!any || c.at > latest) latest = c.at;
      any = true;
      if (!c.ok && (!failing || c.at > failing->at)) failing = &c;
    }
    if (failing) {
      s.last_check = "failing: " + failing->detail;
    } else if (any) {
      s.last_check = "passing";
    }
    if (any) {
      s.last_check_at = base::UtcText(
          std::chrono::duration_cast<std::chrono::seconds>(latest.time_since_epoch()).count());
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string Board::Prometheus() const {
  struct Row {
    std::string labels;  // app="..",machine=".."
    uint64_t healthy = 0, sessions = 0, failures = 0;
    uint64_t roles[3] = {0, 0, 0};
  };
  std::vector<Row> rows;
  {
    std::lock_guard lock(mu_);
    Row other;
    other.labels = "app=\"other\",machine=\"other\"";
    bool has_other = false;
    for (const auto& [key, m] : machines_) {
      Row* row = &other;
      if (rows.size() < kMaxMachineLabelSets) {
        row = &rows.emplace_back();
        row->labels = "app=\"" + base::PrometheusLabelValue(key.app) + "\",machine=\"" +
                      base::PrometheusLabelValue(MachineLabel(key)) + "\"";
      } else {
        has_other = true;
      }
      row->healthy += m.Healthy() ? 1 : 0;
      row->sessions += static_cast<uint64_t>(std::max(0, m.sessions->load()));
      row->failures += m.connect_failures;
      row->roles[static_cast<size_t>(m.role)]++;
    }
    if (has_other) rows.push_back(std::move(other));
  }
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  metric("drawbridge_machine_healthy", "gauge",
         "1 if the machine is healthy on this node (the \"other\" set: how many are).");
  for (const auto& r : rows) {
    out += "drawbridge_machine_healthy{" + r.labels + "} " + std::to_string(r.healthy) + "\n";
  }
  metric("drawbridge_machine_sessions", "gauge", "Sessions open to the machine from this node.");
  for (const auto& r : rows) {
    out += "drawbridge_machine_sessions{" + r.labels + "} " + std::to_string(r.sessions) + "\n";
  }
  metric("drawbridge_machine_role", "gauge",
         "1 for the machine's learned role (the \"other\" set: how many have it).");
  for (const auto& r : rows) {
    for (Role role : {Role::kUnknown, Role::kPrimary, Role::kStandby}) {
      out += "drawbridge_machine_role{" + r.labels + ",role=\"" + RoleName(role) + "\"} " +
             std::to_string(r.roles[static_cast<size_t>(role)]) + "\n";
    }
  }
  metric("drawbridge_machine_connect_failures_total", "counter",
         "Connects for clients to the machine that failed, since the machine was listed.");
  for (const auto& r : rows) {
    out += "drawbridge_machine_connect_failures_total{" + r.labels + "} " +
           std::to_string(r.failures) + "\n";
  }
  return out;
}

}  // namespace drawbridge::health
