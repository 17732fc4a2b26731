// The one place that includes Asio. Boost 1.74's awaitable.hpp uses std::exchange without
// including <utility>, so <utility> comes first.
#pragma once

#include <chrono>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace drawbridge::net {
namespace asio = boost::asio;
using boost::system::error_code;
using asio::ip::tcp;

// The edge's I/O objects are bound to their io_context's own executor instead of the
// type-erased asio::any_io_executor: a completion resumes its coroutine without going through
// the type-erased executor, and sockets, timers and pending operations are smaller.
using Executor = asio::io_context::executor_type;
template <typename T>
using awaitable = asio::awaitable<T, Executor>;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Resolver = asio::ip::basic_resolver<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
inline constexpr asio::use_awaitable_t<Executor> kAwait;
}  // namespace drawbridge::net
