// The relay phase on an epoll loop of its own. Asio's reactor (Boost 1.74) spends a syscall on
// every wait: an EPOLL_CTL_MOD to re-arm the socket, or a read that fails with EAGAIN. Here
// both sockets of a connection are registered once, edge-triggered, for reading and writing,
// so a relayed message costs its read, its write and a share of one epoll_wait. A connection
// moves here once its startup is done (net/negotiation.h) and stays until it closes
// (docs/architecture.md, "Why the relay has its own loop").
//
// Each loop measures the CPU its own thread uses, as a share of one core over a window
// (~100 ms): one clock read per wake-up (the monotonic clock, which the vDSO answers without a
// syscall) and one read of the thread's CPU clock per window. A loop that blocks with load
// still reported wakes once at the window's end, so that the share it reports falls to 0 when
// it has nothing to do. RelayPool (net/relay_pool.h) places connections by these shares and may
// have a busy loop hand an idle connection to another loop ("shedding").
//
// Thread safety: Adopt(), RecheckAll(), Load(), Held() and MovedOut() may be called from any
// thread; everything else happens on the loop's own thread, and after the loop has stopped, on
// the thread that calls Stop(). The loop owns each handler it adopted until the handler says
// kDone, is given up (OnStop), or is handed to another loop's Adopt() (shedding, on the loop's
// thread).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace drawbridge::net {

// A connection in its relay phase. Every call comes from the loop's thread.
class RelayHandler {
 public:
  enum class Side : uint8_t { kClient, kServer };
  enum class Result : uint8_t {
    kWait,  // nothing more to do until an event arrives
    kMore,  // stopped early to let other connections run: call again with events 0
    kDone,  // finished: the handler has closed its sockets; no more calls
  };
  virtual ~RelayHandler() = default;
  // `events` (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR, or 0) for the socket of `side`.
  virtual Result OnReady(Side side, uint32_t events) = 0;
  // Why the loop gives a connection up with its sockets open.
  enum class Stop : uint8_t { kLoopStopping, kCannotWatch };
  // The loop gives the connection up: close and finish it; no more calls.
  virtual void OnStop(Stop why) = 0;
  // The loop asks the connection to look again at whether it may go on (as it is adopted, and
  // at RelayLoop::RecheckAll()). kDone: it has finished itself (closed and logged); anything
  // else: it goes on.
  virtual Result Recheck() { return Result::kWait; }
  // Whether the loop may hand the connection, between two calls, to another loop's thread:
  // nothing of it is tied to this thread, and it holds nothing that only a call could move on
  // (no bytes buffered either way, no TLS record decrypted but unread, no hang-up noted), so
  // that registering its sockets afresh elsewhere, which reports what is ready now, is enough.
  // False by default: a handler that says nothing stays where it was adopted.
  virtual bool Movable() const { return false; }
};

class RelayLoop;

struct RelayLoopOptions {
  // The span over which the loop measures its thread's share of one core.
  std::chrono::milliseconds window{100};
  // Called on the loop's thread at the end of each window with the share just measured:
  // the loop to hand one movable connection to, or null. Unset: the loop never sheds.
  std::function<RelayLoop*(double share)> shed;
};

class RelayLoop {
 public:
  explicit RelayLoop(RelayLoopOptions options = {});
  ~RelayLoop();  // Stop()
  RelayLoop(const RelayLoop&) = delete;
  RelayLoop& operator=(const RelayLoop&) = delete;

  // Creates the epoll set and starts the thread.
  base::Status Start();
  // Stops the thread; connections still open get OnStop() on the calling thread.
  void Stop();

  // Thread-safe. Takes `handler`, and registers `client_fd` and `server_fd` (non-blocking,
  // owned and closed by the handler) on the loop's thread, which then calls the handler as
  // they become ready (at once for what is already there). If the loop is not running (not
  // started, stopping, or failed), hands the handler back in `*handler` and returns false.
  bool Adopt(std::unique_ptr<RelayHandler>* handler, int client_fd, int server_fd);
  // Thread-safe. Asks the loop's thread to call Recheck() on every connection it holds; those
  // adopted after it are rechecked as they are adopted anyway. Returns at once; does nothing
  // once the loop is stopping. Used when the control plane takes an address away (a connection
  // idle in the loop is otherwise never called).
  void RecheckAll();

  // Thread-safe. The share of one core the loop's thread used over its last window (0 when
  // it has been idle for a whole window).
  double Load() const { return load_.load(std::memory_order_relaxed); }
  // Thread-safe. Connections adopted or pending and not yet finished, given up or shed.
  size_t Held() const { return held_.load(std::memory_order_relaxed); }
  // Thread-safe. Connections this loop has handed to another loop so far.
  uint64_t MovedOut() const { return moved_out_.load(std::memory_order_relaxed); }

 private:
  struct Entry;
  struct Tag {
    Entry* entry;
    RelayHandler::Side side;
  };
  struct Entry {
    std::unique_ptr<RelayHandler> handler;
    int fds[2];
    Tag tags[2];
    bool done = false;
    bool queued = false;  // in again_
  };

  void Run();
  void AdoptPending();
  // Gives up every connection, adopted or pending, with `why`: at Stop(), or when the loop
  // cannot wait any more.
  void Abandon(RelayHandler::Stop why);
  void Call(Entry* e, RelayHandler::Side side, uint32_t events);
  // Acts on what a handler's call answered.
  void Handle(Entry* e, RelayHandler::Result r);
  // The eventfd fired: adopts what is pending and rechecks if asked. False: stop the loop.
  bool Wake();
  // Loop thread. Registers both sockets of `e`, edge-triggered; false (and the handler given up
  // with kCannotWatch) when the epoll set refuses one.
  bool Watch(Entry* e);
  // Loop thread, at the end of a batch: closes the window if it is over (publishes the share,
  // asks options_.shed). `now`: the monotonic clock in ns.
  void Measure(int64_t now);
  // How long the next epoll_wait may block, in ms (-1: until an event).
  int WaitTimeout(int64_t now) const;
  // Loop thread: hands one movable connection to `to`; keeps it if `to` refuses.
  void ShedOne(RelayLoop* to);

  RelayLoopOptions options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Adopt() and Stop() write it
  std::thread thread_;

  std::mutex mu_;  // guards pending_, running_, stopping_ and recheck_
  std::vector<std::unique_ptr<Entry>> pending_;
  bool running_ = false;   // Start() started the thread
  bool stopping_ = false;  // Stop() was called, or the loop failed: Adopt() refuses
  bool recheck_ = false;   // RecheckAll() asked, the loop's thread has not done it yet

  // Written by the loop's thread, read by any.
  std::atomic<double> load_{0.0};
  std::atomic<size_t> held_{0};
  std::atomic<uint64_t> moved_out_{0};

  // Loop thread only.
  std::unordered_map<Entry*, std::unique_ptr<Entry>> entries_;
  std::vector<Entry*> again_;     // answered kMore: called again before the next wait blocks
  std::vector<Entry*> finished_;  // erased after the batch that finished them
  // The window being measured: when it began (monotonic ns), the thread's CPU time then (ns),
  // and whether any event was handled in it.
  int64_t window_start_ = 0;
  int64_t cpu_start_ = 0;
  bool worked_ = false;
};

}  // namespace drawbridge::net
