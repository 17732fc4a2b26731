#include "net/local_delivery.h"

#include <fcntl.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <string>
#include <vector>

extern char** environ;

namespace drawbridge::net {

namespace {

// Runs a command with its output discarded: its exit code, or -1 if it could not run.
int RunQuietly(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

void MakeLocallyDeliverable(const control::IpPool& pool) {
  if (!pool.v6() && control::IpPool::Parse("127.0.0.0/8")->Contains(pool.At(0))) {
    spdlog::info("IPv4 pool {} is loopback: locally deliverable", pool.ToString());
    return;
  }
  std::string family = pool.v6() ? "-6" : "-4";
  int rc = RunQuietly({"ip", family, "route", "replace", "local", pool.ToString(), "dev", "lo"});
  if (rc == 0) {
    spdlog::info("{} pool {} made locally deliverable (local route on lo)",
                 pool.v6() ? "IPv6" : "IPv4", pool.ToString());
  } else {
    spdlog::warn(
        "{} pool {} is not locally deliverable: adding a local route failed ({}). Addresses "
        "from it will not reach this edge until you run, as root: ip {} route add local {} dev "
        "lo (or route the pool to this host on your network)",
        pool.v6() ? "IPv6" : "IPv4", pool.ToString(),
        rc < 0 ? "the ip command could not run" : "ip exited with " + std::to_string(rc), family,
        pool.ToString());
  }
}

}  // namespace drawbridge::net
