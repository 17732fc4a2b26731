// The relay loops of one server, as many as the load needs up to a maximum
// (docs/architecture.md, "How many relay threads"). One loop spends less CPU per relayed
// message than several (each wake-up finds more work), but one loop alone queues work once its
// thread is saturated. So the pool places each new connection on the first loop, in index
// order, whose thread used less than `threshold` of a core over its last measured window (each
// loop measures its own; net/relay_loop.h), and only when every loop is above it on the least
// loaded. A loop that stays above the threshold while another is well below it hands that one
// idle connection per window (RelayLoop's shedding), so that load spreads again when it grows
// on connections that are already open.
//
// Thread safety: Adopt(), RecheckAll(), Loads() and size() may be called from any thread (the
// io threads adopt, the control plane's publisher rechecks). Start() and Stop() run on the
// thread that owns the pool (the main thread for the server). Each loop's shedding decision
// runs on that loop's own thread. The pool owns its loops; each loop owns the connections it
// holds.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "net/relay_loop.h"

namespace drawbridge::net {

struct RelayPoolOptions {
  size_t max_loops = 1;  // at least 1
  // A loop whose thread used less than this share of one core over its last window takes new
  // connections.
  double threshold = 0.70;
  // A loop above the threshold sheds connections only to a loop below threshold - margin, so
  // that a move does not just push the other loop over the threshold and back.
  double shed_margin = 0.25;
  // How many windows in a row a loop must be above the threshold before it sheds (one
  // connection per window from then on, while it stays above).
  int shed_after_windows = 2;
  // How long each loop measures its CPU share over.
  std::chrono::milliseconds window{100};
};

// Where a new connection goes: the first index whose load is below `threshold`, else the least
// loaded (the first of equals). `loads` are shares of one core (0 = idle, 1 = one core busy);
// an empty span gives 0. Pure.
size_t ChooseLoop(std::span<const double> loads, double threshold);

// Where loop `from` should hand one idle connection, if anywhere: only when loads[from] is above
// `threshold`, to the first other loop whose load is below threshold - margin. Pure.
std::optional<size_t> ChooseShedTarget(std::span<const double> loads, size_t from,
                                       double threshold, double margin);

class RelayPool {
 public:
  explicit RelayPool(RelayPoolOptions options);
  ~RelayPool();  // Stop()
  RelayPool(const RelayPool&) = delete;
  RelayPool& operator=(const RelayPool&) = delete;

  // Starts every loop (a loop that has nothing to do blocks in epoll_wait and costs nothing).
  base::Status Start();
  // Stops every loop; connections still open, including any handed between two loops at that
  // moment, get OnStop() exactly once, on the calling thread or on a loop's thread as it stops.
  void Stop();

  // Thread-safe. Like RelayLoop::Adopt(), on the loop ChooseLoop() picks from the loads now.
  // False (the handler handed back in `*handler`) if that loop is not running.
  bool Adopt(std::unique_ptr<RelayHandler>* handler, int client_fd, int server_fd);
  // Thread-safe. RelayLoop::RecheckAll() on every loop: a connection moving between two loops
  // meanwhile is rechecked as the second adopts it.
  void RecheckAll();

  size_t size() const { return loops_.size(); }
  // Thread-safe. Each loop's share of one core over its last window.
  std::vector<double> Loads() const;
  // For tests and diagnostics: loop `i` (i < size()).
  const RelayLoop& loop(size_t i) const { return *loops_[i]; }

 private:
  // On loop `from`'s thread at the end of each of its windows: where to hand one idle
  // connection, or null.
  RelayLoop* Shed(size_t from, double share);

  RelayPoolOptions options_;
  std::vector<std::unique_ptr<RelayLoop>> loops_;
  // streaks_[i]: windows in a row loop i was above the threshold; read and written only on
  // loop i's thread (in Shed()).
  std::vector<int> streaks_;
};

}  // namespace drawbridge::net
