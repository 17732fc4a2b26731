// The drawbridge command-line client: every command except `serve` (flyctl's spelling, see
// docs/admin-api.md for the API it talks to). main.cc hands it argv unchanged.
#pragma once

namespace drawbridge::cli {

// Parses argv (argv[0] is the program name), runs one command against the daemon's admin API
// and returns the process exit code: 0 on success, 1 on any error, which is printed to stderr
// as "Error: <message>". Never throws.
int Main(int argc, char** argv);

}  // namespace drawbridge::cli
