// Test helpers for the tests of the data plane that run real loops (relay_loop_test,
// relay_pool_test, session_test, negotiation_test): a non-blocking Unix socketpair, one end for
// the code under test, and a bounded wait for what another thread does.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace drawbridge::net::nettest {

// Polls `pred` every millisecond until it holds or `limit` has passed; returns its last answer.
// The limit only bounds a failing test: a passing one returns as soon as `pred` holds.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// `ours` goes to the loop or session under test, which closes it; the test keeps `theirs`.
struct SocketPair {
  int ours = -1, theirs = -1;
  SocketPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0) {
      ours = fds[0];
      theirs = fds[1];
    }
  }
  ~SocketPair() { CloseTheirs(); }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  void CloseTheirs() {
    if (theirs >= 0) close(theirs);
    theirs = -1;
  }
};

}  // namespace drawbridge::net::nettest
