#include "api/admin_token.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace drawbridge::api {

base::Result<std::string> EnsureAdminToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  if (in && std::getline(in, token) && token.size() >= 32) return token;
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1)
    return base::Status::Internal("no random bytes for " + path);
  char hex[65];
  for (int i = 0; i < 32; ++i) std::snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  token.assign(hex, 64);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return base::Status::Internal(path + ": cannot write");
  ::fchmod(fd, 0600);
  std::string line = token + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) return base::Status::Internal(path + ": cannot write");
  return token;
}

}  // namespace drawbridge::api
