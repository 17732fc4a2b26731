// The active health checks of one node (docs/health.md, "Active checks"): a TCP connect to
// every machine of every service, per the service's `[[services.tcp_checks]]`, reported to the
// Board. A connect that completes within the check's timeout passes; nothing is sent (no
// credentials are needed), and the connection is closed at once.
//
// Threads: the checker owns one thread with its own io_context, started by Start() and ended
// by Stop() (both from the owner's thread; the destructor stops it too). That thread reads the
// route table about every `poll_interval` and, when a new table was swapped in, computes the
// targets (TargetsOf), hands them to Board::SetTargets and starts or stops checks to match:
// a new target's checks run at once (the board ignores failures within the grace period),
// then every `interval` from the start of the previous run. Stop() returns within a poll of the
// io_context: checks in flight are abandoned, not awaited (a host-name lookup already running
// in the resolver's thread is the one thing the io_context's end waits for).
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "control/route_table.h"
#include "health/board.h"

namespace drawbridge::health {

// The machines of `table` to check: one target per (app, machine address, internal port),
// with the union of the checks of every route that leads to it (identical checks once), in
// the order they first appear. Pure.
std::vector<Board::Target> TargetsOf(const control::RouteTable& table);

class Checker {
 public:
  // `board` and `routes` must outlive the checker.
  Checker(Board* board, const control::RouteTableHolder* routes,
          std::chrono::milliseconds poll_interval = std::chrono::milliseconds(250));
  ~Checker();
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;

  void Start();  // once; further calls do nothing
  void Stop();   // joins the thread; idempotent; the checker cannot be started again

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drawbridge::health
