#include "net/local_delivery.h"

#include <fcntl.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

extern char** environ;

namespace drawbridge::net {

namespace {

// Runs a command with stderr discarded, its stdout into `*out` (if given, at most 64 KiB; else
// discarded): its exit code, or -1 if it could not run.
int Run(const std::vector<std::string>& argv, std::string* out = nullptr) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipe_fds[2] = {-1, -1};
  if (out && ::pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (out) {
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (out) {
    ::close(pipe_fds[1]);
    if (rc == 0) {
      char buf[4096];
      for (;;) {
        ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (out->size() < 64 * 1024) out->append(buf, static_cast<size_t>(n));
      }
    }
    ::close(pipe_fds[0]);
  }
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char* Family(bool v6) { return v6 ? "-6" : "-4"; }
const char* FamilyName(bool v6) { return v6 ? "IPv6" : "IPv4"; }

// 1 if the local table holds a route for exactly `prefix` (of our protocol only, if `ours`),
// 0 if not, -1 when `ip` could not tell.
int HasRoute(bool v6, const std::string& prefix, bool ours) {
  std::vector<std::string> argv = {"ip", Family(v6), "route", "show", "table", "local", "exact",
                                   prefix};
  if (ours) {
    argv.push_back("proto");
    argv.push_back(std::to_string(kRouteProtocol));
  }
  std::string out;
  if (Run(argv, &out) != 0) return -1;
  return out.find_first_not_of(" \t\r\n") != std::string::npos ? 1 : 0;
}

}  // namespace

bool IsLoopbackV4(const control::IpPool& pool) {
  return !pool.v6() && pool.prefix_length() >= 8 &&
         control::IpPool::Parse("127.0.0.0/8")->Contains(pool.At(0));
}

void LocalDelivery::MakeLocallyDeliverable(const control::IpPool& pool) {
  if (IsLoopbackV4(pool)) {
    spdlog::info("IPv4 pool {} is loopback: locally deliverable", pool.ToString());
    return;
  }
  const bool v6 = pool.v6();
  const std::string prefix = pool.ToString();
  if (HasRoute(v6, prefix, /*ours=*/true) == 1) {
    // Left by a daemon that did not get to remove it: ours to remove at exit.
    added_.push_back({v6, prefix});
    spdlog::info("{} pool {} is locally deliverable (a local route on lo left by an earlier "
                 "drawbridge; removed when this one exits)",
                 FamilyName(v6), prefix);
    return;
  }
  if (HasRoute(v6, prefix, /*ours=*/false) == 1) {
    spdlog::info("{} pool {} is locally deliverable (a local route that was already there; "
                 "left in place at exit)",
                 FamilyName(v6), prefix);
    return;
  }
  int rc = Run({"ip", Family(v6), "route", "add", "local", prefix, "dev", "lo", "table", "local",
                "proto", std::to_string(kRouteProtocol)});
  if (rc == 0) {
    added_.push_back({v6, prefix});
    spdlog::info("{} pool {} made locally deliverable (local route on lo, removed at exit)",
                 FamilyName(v6), prefix);
    return;
  }
  spdlog::warn(
      "{} pool {} is not locally deliverable: adding a local route failed ({}). Addresses "
      "from it will not reach this edge until you run, as root: ip {} route add local {} dev "
      "lo (or route the pool to this host on your network)",
      FamilyName(v6), prefix,
      rc < 0 ? "the ip command could not run" : "ip exited with " + std::to_string(rc),
      Family(v6), prefix);
}

void LocalDelivery::RemoveAdded() {
  for (const auto& r : added_) {
    // The protocol selector deletes only our route, should someone have replaced it since.
    int rc = Run({"ip", Family(r.v6), "route", "del", "local", r.prefix, "dev", "lo", "table",
                  "local", "proto", std::to_string(kRouteProtocol)});
    if (rc == 0) {
      spdlog::info("{} pool {}: local route removed", FamilyName(r.v6), r.prefix);
    } else {
      spdlog::warn("{} pool {}: the local route this daemon added could not be removed ({}); "
                   "remove it as root: ip {} route del local {} dev lo",
                   FamilyName(r.v6), r.prefix,
                   rc < 0 ? "the ip command could not run" : "ip exited with " + std::to_string(rc),
                   Family(r.v6), r.prefix);
    }
  }
  added_.clear();
}

}  // namespace drawbridge::net
