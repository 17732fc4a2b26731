// The health board of one node (docs/health.md): for each machine (app, address, internal
// port) whether it is healthy, why not, its learned role and its open sessions on this node.
//
// Written by three kinds of callers: the checker (SetTargets, CheckResult), the edge's
// connections (OpenSession, ConnectFailed/Succeeded, LearnRole) and read by those
// connections (View) and the API and /metrics (AppStatus, Prometheus).
//
// Threads: owned by net::Server; every method may be called from any thread. One mutex guards
// the machines; session counts live in per-machine blocks of atomics shared with the tickets
// (std::shared_ptr), so a ticket's end never takes the mutex and stays safe after SetTargets
// dropped its machine or the board itself is gone. Log lines are written after the mutex is
// released.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "control/types.h"
#include "health/machine.h"

namespace drawbridge::health {

// How long a machine marked down by a failed client connect is skipped before it is tried
// again as a last resort: 1 s after the first failure, doubling per failed retry, at most 30 s.
inline constexpr std::chrono::milliseconds kPassiveBackoffFirst{1000};
inline constexpr std::chrono::milliseconds kPassiveBackoffMax{30000};
// At most this many machines get label sets of their own in Prometheus(); the others are
// summed under app="other",machine="other".
inline constexpr size_t kMaxMachineLabelSets = 1000;

// Counts one open session on a machine from a successful connect to its destruction. Movable;
// an empty ticket (default or moved from) counts nothing. Any thread.
class SessionTicket {
 public:
  SessionTicket() = default;
  explicit SessionTicket(std::shared_ptr<std::atomic<int>> counter);
  SessionTicket(SessionTicket&& other) noexcept = default;
  SessionTicket& operator=(SessionTicket&& other) noexcept;
  SessionTicket(const SessionTicket&) = delete;
  SessionTicket& operator=(const SessionTicket&) = delete;
  ~SessionTicket() { Release(); }

  // Ends the count now (idempotent).
  void Release();
  bool counting() const { return counter_ != nullptr; }

 private:
  std::shared_ptr<std::atomic<int>> counter_;
};

class Board {
 public:
  Board() = default;
  Board(const Board&) = delete;
  Board& operator=(const Board&) = delete;

  // The machines that exist now (from the route table), each with its checks; machines not
  // listed are dropped (their tickets still end safely, and a machine listed again while its
  // old sessions are open gets their count back). A machine listed for the first time starts
  // healthy, with its grace period from `now`. Called by the checker.
  struct Target {
    MachineKey key;
    std::vector<control::TcpCheck> checks;
  };
  void SetTargets(const std::vector<Target>& targets, std::chrono::steady_clock::time_point now);

  // The result of check `check_index` of the machine's checks. A failure within that check's
  // grace period after the machine was first listed is ignored. Results for machines not
  // listed (or an index beyond their checks) are ignored: the targets changed meanwhile.
  void CheckResult(const MachineKey& key, size_t check_index, bool ok, const std::string& detail,
                   std::chrono::steady_clock::time_point now,
                   std::chrono::system_clock::time_point wall);

  // A connect for a client failed: the machine is unhealthy at once, and skipped for the
  // backoff. A failure while the backoff still runs (an attempt that started before the mark)
  // does not lengthen it; one after it (a last-resort retry) doubles it.
  void ConnectFailed(const MachineKey& key, std::chrono::steady_clock::time_point now);
  // A connect for a client succeeded: clears a passive mark (not a failing check).
  void ConnectSucceeded(const MachineKey& key);
  // A login through the edge reported `in_hot_standby` (or a live session saw it change).
  void LearnRole(const MachineKey& key, bool in_hot_standby,
                 std::chrono::steady_clock::time_point now);

  // Counts a session on the machine until the ticket ends.
  SessionTicket OpenSession(const MachineKey& key);

  // One view per address of `addresses` (same order), for `app`/`port`; machines the board
  // does not know are healthy with no sessions.
  std::vector<MachineView> View(const std::string& app, int port,
                                std::span<const std::string> addresses,
                                std::chrono::steady_clock::time_point now) const;

  // For the API and the CLI: every machine of `app` (all ports), ordered by address, port.
  struct Status {
    MachineKey key;
    bool healthy = true;
    Role role = Role::kUnknown;
    int sessions = 0;
    std::string last_check;     // "passing", "failing: connection refused", "" (none yet)
    std::string last_check_at;  // RFC 3339 UTC, "" if none
    uint64_t connect_failures = 0;
  };
  std::vector<Status> AppStatus(const std::string& app) const;

  // Prometheus text: drawbridge_machine_healthy, drawbridge_machine_sessions,
  // drawbridge_machine_role and drawbridge_machine_connect_failures_total, labelled
  // app and machine ("address:port"), at most kMaxMachineLabelSets machines + "other".
  std::string Prometheus() const;

 private:
  struct CheckState {
    control::TcpCheck check;
    bool has_result = false;
    bool ok = true;
    std::string detail;
    std::chrono::system_clock::time_point at{};
  };
  struct Machine {
    std::chrono::steady_clock::time_point first_listed{};
    bool listed = false;  // by SetTargets (else known only from a connection so far)
    std::vector<CheckState> checks;
    // Passive mark: set by a failed connect, cleared by a successful connect or check.
    bool passive_down = false;
    std::chrono::steady_clock::time_point passive_until{};
    std::chrono::milliseconds backoff{0};
    Role role = Role::kUnknown;
    std::chrono::steady_clock::time_point role_learned{};
    uint64_t connect_failures = 0;
    std::shared_ptr<std::atomic<int>> sessions = std::make_shared<std::atomic<int>>(0);

    bool ActiveFailing() const;
    bool Healthy() const { return !passive_down && !ActiveFailing(); }
  };
  // What to log once the mutex is released.
  struct Logs {
    std::vector<std::string> warn, info;
    void Flush() const;
  };

  Machine& Get(const MachineKey& key);  // creates it (not listed); mu_ held
  static void NoteHealth(const MachineKey& key, bool was, const Machine& m,
                         const std::string& why, Logs& logs);

  mutable std::mutex mu_;
  std::map<MachineKey, Machine> machines_;
  // Session counts of dropped machines with sessions still open, for when they come back.
  std::map<MachineKey, std::weak_ptr<std::atomic<int>>> dropped_;
};

}  // namespace drawbridge::health
