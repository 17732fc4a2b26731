// Accepting connections the same way in every server of the process (the edge's listeners,
// the admin API, the DNS server's TCP side). A failed accept() (out of descriptors or memory)
// pauses 100 ms instead of spinning, and is logged once when a streak starts, then once a
// minute while it lasts, and once more when accepting works again. The loop ends when the
// acceptor is closed, which is how a server stops it. Header-only; the loop runs on the
// acceptor's executor, and the acceptor must outlive it.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace drawbridge::io {

// `on_accept(socket, peer)` takes each accepted socket (with the peer address accept() gave,
// which stays right even if the client resets at once); `on_failure()` (may be empty) is
// called for each failed accept, e.g. to count it. `what` names the listener in the log.
template <typename Acceptor, typename OnAccept, typename OnFailure>
auto AcceptLoop(Acceptor& acceptor, std::string what, OnAccept on_accept, OnFailure on_failure)
    -> boost::asio::awaitable<void, typename Acceptor::executor_type> {
  namespace asio = boost::asio;
  using Executor = typename Acceptor::executor_type;
  using Socket =
      typename Acceptor::protocol_type::socket::template rebind_executor<Executor>::other;
  using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                           asio::wait_traits<std::chrono::steady_clock>, Executor>;
  constexpr asio::use_awaitable_t<Executor> kAwait;
  constexpr auto kPause = std::chrono::milliseconds(100);
  constexpr uint64_t kReportEvery = 600;  // failures: about a minute of pauses
  uint64_t failures = 0;                  // in a row
  while (acceptor.is_open()) {
    boost::system::error_code ec;
    Socket socket(acceptor.get_executor());
    typename Acceptor::endpoint_type peer;
    co_await acceptor.async_accept(socket, peer, asio::redirect_error(kAwait, ec));
    if (!ec) {
      if (failures > 0) {
        spdlog::info("accept on {} works again, after {} failures", what, failures);
        failures = 0;
      }
      on_accept(std::move(socket), peer);
      continue;
    }
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    on_failure();
    if (failures++ % kReportEvery == 0) {
      spdlog::warn("accept failed on {}: {} ({} in a row; retrying every {} ms)", what,
                   ec.message(), failures, kPause.count());
    }
    Timer pause(acceptor.get_executor(), kPause);
    co_await pause.async_wait(asio::redirect_error(kAwait, ec));
  }
}

}  // namespace drawbridge::io
