// The CLI's commands, one function each, written against Client (no sockets here) and a Ui (the
// terminal, abstracted so tests run commands with string streams, a fake clock and scripted
// answers). Each returns an error value; Main prints it as "Error: <message>" and exits 1.
// Each is one admin API request and what to print of the answer (commands.cc, "the common run"):
// the answer itself with --json, else a flyctl table or line.
// Tables go to ui.out, warnings and prompts to ui.err.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cli/client.h"
#include "cli/table.h"

namespace drawbridge::cli {

struct Ui {
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  // True when a person can answer a prompt (stdin and stdout are terminals).
  bool interactive = false;
  // Asks a yes/no question; called only when interactive. Default answer: no.
  std::function<bool(std::string_view question)> confirm;
  std::function<TimePoint()> now;
};

struct Context {
  Client* client = nullptr;
  Ui ui;
  bool json = false;  // --json: print the daemon's answer as JSON instead of a table
};

// flyctl's answer to a question nobody can answer: "yes flag must be specified when not running
// interactively", plus " (<hint>)" when hint is not empty.
base::Status NonInteractiveError(std::string_view hint);

// What a command needs from its arguments; filled by the flag parser in cli.cc.
struct MachineSpec {
  std::string address;
  std::string region;
  std::string role;
};

base::Status AppsCreate(Context& ctx, const std::string& name);
base::Status AppsList(Context& ctx);
base::Status AppsDestroy(Context& ctx, const std::string& name, bool yes);

base::Status MachinesAdd(Context& ctx, const std::string& app, const MachineSpec& machine);
base::Status MachinesList(Context& ctx, const std::string& app);
base::Status MachinesRemove(Context& ctx, const std::string& app, const std::string& id);

base::Status IpsList(Context& ctx, const std::string& app);
base::Status IpsAllocateV4(Context& ctx, const std::string& app, bool shared, bool yes);
base::Status IpsAllocateV6(Context& ctx, const std::string& app);
base::Status IpsRelease(Context& ctx, const std::string& app,
                        const std::vector<std::string>& addresses);

// path: -c as given ("" = ./fly.toml; a directory means <dir>/fly.toml).
base::Status ConfigSave(Context& ctx, const std::string& app, const std::string& path, bool yes);
base::Status ConfigShow(Context& ctx, const std::string& app);
base::Status ConfigValidate(Context& ctx, const std::string& app, const std::string& path);
// config_path: the resolved fly.toml to deploy (see ResolveConfigPath).
base::Status Deploy(Context& ctx, const std::string& app, const std::string& config_path,
                    const std::string& image);

base::Status ServicesList(Context& ctx, const std::string& app);
base::Status ImageShow(Context& ctx, const std::string& app);
// The external connection string (sslmode=require) and, when the daemon offers it, the same
// with sslmode=verify-full and sslrootcert=<ca_path>, each on its own line; on stderr, how to
// save the built-in CA at ca_path (`drawbridge certs ca > <ca_path>`). With --json, the answer
// with its verify_full_url completed the same way and "sslrootcert": ca_path.
base::Status PgConnectionString(Context& ctx, const std::string& app,
                                const std::string& internal_url, const std::string& ca_path);
// app may be empty: then only the daemon's status; with an app, also its machines (one row each:
// address, health, role, sessions, last check).
base::Status ShowStatus(Context& ctx, const std::string& app);
// Every node of the fleet the daemon knows (a lone daemon: itself), one row each.
base::Status NodesList(Context& ctx);
base::Status CertsList(Context& ctx);
base::Status CertsShow(Context& ctx, const std::string& host);
// Installs the operator's certificate chain and key (PEM files) for `host`.
base::Status CertsAdd(Context& ctx, const std::string& host, const std::string& cert_path,
                      const std::string& key_path);
// Prints the built-in CA certificate (PEM) for clients' sslrootcert.
base::Status CertsCa(Context& ctx);
// Removes the certificate and key stored for `host` (flyctl's `certs remove`): asks first unless
// `yes`; without a terminal, --yes is required.
base::Status CertsRemove(Context& ctx, const std::string& host, bool yes);

// Row builders, exposed for tests: one table row per element of the daemon's answer.
std::vector<std::vector<std::string>> IpRows(const Json& ips, TimePoint now);
std::vector<std::vector<std::string>> ServiceRows(const Json& services);
// machines list: ID, ADDRESS, HEALTH ("healthy" or "unhealthy" as the edge sees it), ROLE (the
// learned role, else the declared one, else "unknown"), SESSIONS (open on this node), LAST CHECK
// ("passing (3s ago)", "failing: <why> (1s ago)", "none yet"), REGION, CREATED AT. A daemon
// that sends no health fields leaves HEALTH, SESSIONS and LAST CHECK empty.
std::vector<std::vector<std::string>> MachineRows(const Json& machines, TimePoint now);
// nodes list: NAME, ID, LAST SEEN, REVISION, STORE ("ok" or "degraded: <why>"), LISTENING
// (ports), PORT ERRORS ("<port>: <why>", separated by "; ").
std::vector<std::vector<std::string>> NodeRows(const Json& nodes, TimePoint now);
// flyctl's TYPE column: v4 -> "public (dedicated)", shared_v4 -> "public (shared)",
// v6 -> "public (dedicated)", private_v6 -> "private".
std::string IpTypeLabel(std::string_view type);

}  // namespace drawbridge::cli
