#include "net/relay_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace drawbridge::net {

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
}

bool RelayLoop::Adopt(std::unique_ptr<RelayHandler>* handler, int client_fd, int server_fd) {
  auto e = std::make_unique<Entry>();
  e->handler = std::move(*handler);
  e->fds[0] = client_fd;
  e->fds[1] = server_fd;
  e->tags[0] = Tag{e.get(), RelayHandler::Side::kClient};
  e->tags[1] = Tag{e.get(), RelayHandler::Side::kServer};
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !thread_.joinable()) {
      *handler = std::move(e->handler);
      return false;
    }
    pending_.push_back(std::move(e));
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  return true;
}

void RelayLoop::RecheckAll() {
  // The wake-up is written under the lock: Stop() marks the loop stopping under it before it
  // closes the eventfd, so this never writes to a descriptor closed (or reused) meanwhile.
  std::lock_guard lock(mu_);
  if (stopping_ || !thread_.joinable()) return;
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
    Handle(e, e->handler->Recheck());
    for (int i = 0; i < 2 && !e->done; ++i) {
      epoll_event ev{};
      // Edge-triggered for both directions, once: the handler reads and writes until a
      // socket says EAGAIN (or a read comes back short), and the next edge calls it again.
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.ptr = &e->tags[i];
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, e->fds[i], &ev) != 0) {
        spdlog::error("relay loop: cannot watch a socket: {}", std::strerror(errno));
        e->handler->OnStop(RelayHandler::Stop::kCannotWatch);
        e->done = true;
        finished_.push_back(e);
      }
    }
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
  while (true) {
    // Connections that stopped early run again after the others had their turn; the wait does
    // not block while there are any.
    int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                       again_.empty() ? -1 : 0);
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
      finished_.clear();
    }
  }
}

}  // namespace drawbridge::net
