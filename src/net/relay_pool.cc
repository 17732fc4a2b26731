#include "net/relay_pool.h"

#include <algorithm>
#include <utility>

namespace drawbridge::net {

size_t ChooseLoop(std::span<const double> loads, double threshold) {
  size_t least = 0;
  for (size_t i = 0; i < loads.size(); ++i) {
    if (loads[i] < threshold) return i;
    if (loads[i] < loads[least]) least = i;
  }
  return least;
}

std::optional<size_t> ChooseShedTarget(std::span<const double> loads, size_t from,
                                       double threshold, double margin) {
  if (from >= loads.size() || !(loads[from] > threshold)) return std::nullopt;
  for (size_t i = 0; i < loads.size(); ++i) {
    if (i != from && loads[i] < threshold - margin) return i;
  }
  return std::nullopt;
}

RelayPool::RelayPool(RelayPoolOptions options) : options_(options) {
  size_t n = std::max<size_t>(1, options_.max_loops);
  streaks_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    RelayLoopOptions lo;
    lo.window = options_.window;
    // A single loop has nowhere to shed to.
    if (n > 1) lo.shed = [this, i](double share) { return Shed(i, share); };
    loops_.push_back(std::make_unique<RelayLoop>(std::move(lo)));
  }
}

RelayPool::~RelayPool() { Stop(); }

base::Status RelayPool::Start() {
  for (auto& loop : loops_) {
    if (auto s = loop->Start(); !s.ok()) return s;
  }
  return {};
}

void RelayPool::Stop() {
  // One loop after the other. A loop still running may hand a connection to one already
  // stopped: that one refuses it (Adopt() answers false once it is stopping) and the first keeps
  // it, so it is given up when its own turn comes. No loop object is destroyed before every
  // thread has been joined, since a loop's thread may call another's Adopt().
  for (auto& loop : loops_) loop->Stop();
}

bool RelayPool::Adopt(std::unique_ptr<RelayHandler>* handler, int client_fd, int server_fd) {
  // One vector per io thread, reused: no allocation per connection.
  thread_local std::vector<double> loads;
  loads.resize(loops_.size());
  for (size_t i = 0; i < loops_.size(); ++i) loads[i] = loops_[i]->Load();
  return loops_[ChooseLoop(loads, options_.threshold)]->Adopt(handler, client_fd, server_fd);
}

void RelayPool::RecheckAll() {
  for (auto& loop : loops_) loop->RecheckAll();
}

std::vector<double> RelayPool::Loads() const {
  std::vector<double> out;
  out.reserve(loops_.size());
  for (const auto& loop : loops_) out.push_back(loop->Load());
  return out;
}

RelayLoop* RelayPool::Shed(size_t from, double share) {
  int& streak = streaks_[from];
  if (share <= options_.threshold) {
    streak = 0;
    return nullptr;
  }
  if (++streak < options_.shed_after_windows) return nullptr;
  streak = options_.shed_after_windows;  // stays there while the loop stays above
  std::vector<double> loads = Loads();  // once per window, on a busy loop only
  loads[from] = share;                  // what it measured just now
  auto to = ChooseShedTarget(loads, from, options_.threshold, options_.shed_margin);
  return to ? loops_[*to].get() : nullptr;
}

}  // namespace drawbridge::net
