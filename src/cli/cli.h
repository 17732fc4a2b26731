// The drawbridge command-line client: every command except `serve` (flyctl's spelling, see
// docs/admin-api.md for the API it talks to). main.cc hands it argv unchanged.
#pragma once

namespace drawbridge::cli {

// Parses argv (argv[0] is the program name), runs one command against the daemon's admin API
// and returns the process exit code: 0 on success; 2 on a usage error (an unknown command, a
// missing argument or flag: "Error: <message>" and "Run '<command> --help' for usage." on
// stderr, see usage.h); 1 on any other error, printed to stderr as "Error: <message>".
// `help [COMMAND]`, `--help`, `--version` and `version [--json]` print to stdout and need no
// daemon. Never throws.
int Main(int argc, char** argv);

}  // namespace drawbridge::cli
