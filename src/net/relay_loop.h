// The relay phase on an epoll loop of its own. Asio's reactor (Boost 1.74) spends a syscall on
// every wait: an EPOLL_CTL_MOD to re-arm the socket, or a read that fails with EAGAIN. Here
// both sockets of a connection are registered once, edge-triggered, for reading and writing,
// so a relayed message costs its read, its write and a share of one epoll_wait. A connection
// moves here once its startup is done (net/negotiation.h) and stays until it closes
// (docs/architecture.md, "Why the relay has its own loop").
//
// Thread safety: Adopt() and RecheckAll() may be called from any thread; everything else
// happens on the loop's own thread, and after the loop has stopped, on the thread that calls
// Stop(). The loop owns each handler it adopted until the handler says kDone or is given up
// (OnStop).
#pragma once

#include <cstdint>
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
};

class RelayLoop {
 public:
  RelayLoop() = default;
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

  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Adopt() and Stop() write it
  std::thread thread_;

  std::mutex mu_;  // guards pending_, stopping_ and recheck_
  std::vector<std::unique_ptr<Entry>> pending_;
  bool stopping_ = false;  // Stop() was called, or the loop failed: Adopt() refuses
  bool recheck_ = false;   // RecheckAll() asked, the loop's thread has not done it yet

  // Loop thread only.
  std::unordered_map<Entry*, std::unique_ptr<Entry>> entries_;
  std::vector<Entry*> again_;     // answered kMore: called again before the next wait blocks
  std::vector<Entry*> finished_;  // erased after the batch that finished them
};

}  // namespace drawbridge::net
