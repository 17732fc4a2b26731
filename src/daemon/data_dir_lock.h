// One daemon per data directory. Two daemons on one data dir would both start (their public
// ports are SO_REUSEPORT, so the kernel would split connections between them) and the second
// would replace the first's admin socket; so `serve` takes an exclusive flock() on
// `<data-dir>/lock` before it touches anything else there, writes its pid into the file for the
// message the next one gives, and holds the lock for its whole life. The kernel releases it
// when the process ends, however it ends (kill -9 included), so a stale lock cannot exist; the
// file itself stays.
//
// Owned by the main thread of `serve`.
#pragma once

#include <string>

#include "base/status.h"

namespace drawbridge::daemon {

class DataDirLock {
 public:
  // Locks `dir`/lock. kUnavailable, naming the holder's pid when it can be read, if another
  // process holds it; kInternal if the file cannot be opened or locked.
  static base::Result<DataDirLock> Acquire(const std::string& dir);

  DataDirLock(DataDirLock&& other) noexcept;
  DataDirLock& operator=(DataDirLock&&) = delete;
  DataDirLock(const DataDirLock&) = delete;
  ~DataDirLock();  // releases the lock

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace drawbridge::daemon
