#include "net/relay_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>

namespace drawbridge::net {

namespace {

int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Answered by the vDSO (no syscall) on the clock sources Linux uses on x86-64 and arm64.
int64_t MonotonicNs() { return ClockNs(CLOCK_MONOTONIC); }
// A syscall: read once per window only.
int64_t ThreadCpuNs() { return ClockNs(CLOCK_THREAD_CPUTIME_ID); }

}  // namespace

RelayLoop::RelayLoop(RelayLoopOptions options) : options_(std::move(options)) {}

RelayLoop::~RelayLoop() { Stop(); }

base::Status RelayLoop::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return base::Status::Internal(std::string("relay loop: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return base::Status::Internal(std::string("relay loop: ") + std::strerror(errno));
  }
  {
    std::lock_guard lock(mu_);
    running_ = true;
  }
  thread_ = std::thread([this] { Run(); });
  return {};
}

void RelayLoop::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  // The loop's thread is gone: what it still held is ours to close.
  Abandon(RelayHandler::Stop::kLoopStopping);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  epoll_fd_ = wake_fd_ = -1;
}

void RelayLoop::Abandon(RelayHandler::Stop why) {
  std::vector<std::unique_ptr<Entry>> pending;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    pending.swap(pending_);
  }
  for (auto& [e, entry] : entries_) {
    if (!entry->done) entry->handler->OnStop(why);
  }
  entries_.clear();
  again_.clear();
  finished_.clear();
  for (auto& entry : pending) entry->handler->OnStop(why);
  held_.store(0, std::memory_order_relaxed);  // Adopt() refuses from here on
}

bool RelayLoop::Adopt(std::unique_ptr<RelayHandler>* handler, int client_fd, int server_fd) {
  auto e = std::make_unique<Entry>();
  e->handler = std::move(*handler);
  e->fds[0] = client_fd;
  e->fds[1] = server_fd;
  e->tags[0] = Tag{e.get(), RelayHandler::Side::kClient};
  e->tags[1] = Tag{e.get(), RelayHandler::Side::kServer};
  // The wake-up is written under the lock, as in RecheckAll(): the caller may be another
  // loop's thread shedding a connection while this loop stops and closes its eventfd.
  std::lock_guard lock(mu_);
  if (stopping_ || !running_) {
    *handler = std::move(e->handler);
    return false;
  }
  pending_.push_back(std::move(e));
  held_.fetch_add(1, std::memory_order_relaxed);
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  return true;
}

void RelayLoop::RecheckAll() {
  // The wake-up is written under the lock: Stop() marks the loop stopping under it before it
  // closes the eventfd, so this never writes to a descriptor closed (or reused) meanwhile.
  std::lock_guard lock(mu_);
  if (stopping_ || !running_) return;
  recheck_ = true;
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

void RelayLoop::AdoptPending() {
  std::vector<std::unique_ptr<Entry>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
  }
  for (auto& owned : batch) {
    Entry* e = owned.get();
    entries_.emplace(e, std::move(owned));
    // Here, on the loop's thread, rather than before Adopt(): a RecheckAll() that this loop ran
    // before the connection arrived cannot have seen it, so it looks for itself.
    // A connection shed by another loop is rechecked here too: that loop may have passed it
    // on after its own recheck and before this one's.
    Handle(e, e->handler->Recheck());
    if (!e->done) (void)Watch(e);
  }
}

bool RelayLoop::Watch(Entry* e) {
  for (int i = 0; i < 2; ++i) {
    epoll_event ev{};
    // Edge-triggered for both directions, once: the handler reads and writes until a socket
    // says EAGAIN (or a read comes back short), and the next edge calls it again. Adding a
    // socket reports what is ready already, so bytes that came before (before the hand-off,
    // or while another loop passed the connection here) raise the first edge.
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &e->tags[i];
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, e->fds[i], &ev) != 0) {
      spdlog::error("relay loop: cannot watch a socket: {}", std::strerror(errno));
      e->handler->OnStop(RelayHandler::Stop::kCannotWatch);
      e->done = true;
      finished_.push_back(e);
      return false;
    }
  }
  return true;
}

void RelayLoop::ShedOne(RelayLoop* to) {
  Entry* moving = nullptr;
  for (auto& [e, entry] : entries_) {
    // Not one that asked to run again (it has work in hand), nor one that is not idle.
    if (!e->done && !e->queued && e->handler->Movable()) {
      moving = e;
      break;
    }
  }
  if (moving == nullptr) return;
  // Out of this epoll set first: no event of this loop can name it any more.
  for (int fd : moving->fds) (void)epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  std::unique_ptr<RelayHandler> handler = std::move(moving->handler);
  if (to->Adopt(&handler, moving->fds[0], moving->fds[1])) {
    // `to` owns it now and registers both sockets on its own thread.
    entries_.erase(moving);
    held_.fetch_sub(1, std::memory_order_relaxed);
    moved_out_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // `to` is stopping: this loop keeps the connection (and gives it up when it stops itself).
  moving->handler = std::move(handler);
  (void)Watch(moving);
}

int RelayLoop::WaitTimeout(int64_t now) const {
  // Nothing handled in this window and none reported in the last: block until an event.
  if (!worked_ && Load() == 0.0) return -1;
  // Else wake at the window's end at the latest, so that the share falls to 0 when idle.
  int64_t left = window_start_ + std::chrono::nanoseconds(options_.window).count() - now;
  if (left <= 0) return 0;
  return static_cast<int>((left + 999'999) / 1'000'000);
}

void RelayLoop::Measure(int64_t now) {
  int64_t wall = now - window_start_;
  if (wall < std::chrono::nanoseconds(options_.window).count()) return;
  double share = 0.0;
  if (worked_) {
    int64_t cpu = ThreadCpuNs();
    share = static_cast<double>(cpu - cpu_start_) / static_cast<double>(wall);
    cpu_start_ = cpu;
  }
  // A window without an event was idle: 0, without reading the CPU clock (the few µs the
  // timed-out wait itself cost go to the next window that works).
  load_.store(share, std::memory_order_relaxed);
  window_start_ = now;
  worked_ = false;
  if (options_.shed) {
    if (RelayLoop* to = options_.shed(share)) ShedOne(to);
  }
}

void RelayLoop::Call(Entry* e, RelayHandler::Side side, uint32_t events) {
  if (e->done) return;
  Handle(e, e->handler->OnReady(side, events));
}

void RelayLoop::Handle(Entry* e, RelayHandler::Result r) {
  switch (r) {
    case RelayHandler::Result::kWait:
      break;
    case RelayHandler::Result::kMore:
      if (!e->queued) {
        e->queued = true;
        again_.push_back(e);
      }
      break;
    case RelayHandler::Result::kDone:
      e->done = true;
      finished_.push_back(e);
      break;
  }
}

bool RelayLoop::Wake() {
  uint64_t count;
  (void)!read(wake_fd_, &count, sizeof count);
  bool recheck = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    recheck = std::exchange(recheck_, false);
  }
  AdoptPending();  // rechecks what it adopts
  if (recheck) {
    for (auto& [e, entry] : entries_) {
      if (!entry->done) Handle(e, entry->handler->Recheck());
    }
  }
  return true;
}

void RelayLoop::Run() {
  std::array<epoll_event, 64> events;
  std::vector<Entry*> again;
  int64_t now = MonotonicNs();
  window_start_ = now;
  cpu_start_ = ThreadCpuNs();
  while (true) {
    // Connections that stopped early run again after the others had their turn; the wait does
    // not block while there are any.
    int timeout = again_.empty() ? WaitTimeout(now) : 0;
    int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0 && errno != EINTR) {
      // Nothing can be watched any more: finish every connection now rather than strand them,
      // and refuse new ones (their negotiation then closes them).
      spdlog::error("relay loop: epoll_wait: {}; closing its connections", std::strerror(errno));
      Abandon(RelayHandler::Stop::kCannotWatch);
      return;
    }
    if (n < 0) n = 0;  // EINTR
    again.clear();
    again.swap(again_);
    if (n > 0 || !again.empty()) worked_ = true;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        if (!Wake()) return;
        continue;
      }
      auto* tag = static_cast<Tag*>(events[i].data.ptr);
      Call(tag->entry, tag->side, events[i].events);
    }
    for (Entry* e : again) {
      e->queued = false;
      Call(e, RelayHandler::Side::kClient, 0);
    }
    if (!finished_.empty()) {
      // One that asked to run again may have finished since.
      std::erase_if(again_, [](const Entry* e) { return e->done; });
      for (Entry* e : finished_) entries_.erase(e);  // drops the loop's reference
      held_.fetch_sub(finished_.size(), std::memory_order_relaxed);
      finished_.clear();
    }
    // The one clock read of this wake-up.
    now = MonotonicNs();
    if (timeout < 0) {
      // It slept with nothing to measure: the window starts now, not before the sleep (the
      // thread used no CPU while it slept, so cpu_start_ still holds).
      window_start_ = now;
    } else {
      Measure(now);
    }
  }
}

}  // namespace drawbridge::net
