// Flag parsing and dispatch. Resolves the app (-a, $DRAWBRIDGE_APP, `app` in the fly.toml the
// command reads), the data dir (--data-dir, $DRAWBRIDGE_DATA_DIR, the default), the endpoint
// (--api, $DRAWBRIDGE_API, unix:<data_dir>/admin.sock) and the token (<data_dir>/admin.token),
// then runs one command. Before CLI11 sees argv, WalkCommands follows the command words itself,
// so an unknown one is named (with the nearest known ones) instead of CLI11's "A subcommand is
// required", and `help` anywhere a command may stand means --help.
#include "cli/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/http_transport.h"
#include "cli/settings.h"
#include "cli/usage.h"

namespace drawbridge::cli {
namespace {

using base::Status;

constexpr std::chrono::milliseconds kRequestTimeout{30'000};
constexpr const char* kVersion = DRAWBRIDGE_VERSION;

struct Flags {
  std::string app;
  bool json = false;
  std::string data_dir;
  std::string api;

  // Per-command flags and arguments.
  bool yes = false;
  bool shared = false;
  std::string config_path;  // -c
  std::string name;         // apps create/destroy NAME, machines remove ID
  MachineSpec machine;
  std::vector<std::string> addresses;
  std::string dir;    // deploy [DIR]
  std::string image;  // deploy --image
  std::string internal_url;
  std::string ca_path;  // pg connection-string --sslrootcert
  std::string host;
  std::string cert_path;
  std::string key_path;

  // The fly.toml the command reads: -c, else deploy's DIR/fly.toml, else ./fly.toml.
  std::string ConfigFile() const {
    return ResolveConfigPath(config_path.empty() ? dir : config_path);
  }
};

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

bool AskOnTerminal(std::string_view question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string line;
  if (!std::getline(std::cin, line)) return false;
  size_t b = line.find_first_not_of(" \t");
  if (b == std::string::npos) return false;
  char c = line[b];
  return c == 'y' || c == 'Y';
}

CLI::App* Sub(CLI::App* parent, const std::string& name, const std::string& description) {
  CLI::App* sub = parent->add_subcommand(name, description);
  sub->fallthrough();  // global flags may come after the subcommand, as with flyctl
  sub->footer("");     // the top level's footer is about the top level
  return sub;
}

// ------------------------------------------------------------------------------ command words

// "drawbridge ips allocate-v4" for the command `app` is.
std::string CommandPath(const CLI::App* app) {
  std::string path = app->get_name();
  for (const CLI::App* p = app->get_parent(); p != nullptr; p = p->get_parent()) {
    path = p->get_name() + " " + path;
  }
  return path;
}

// A command that only groups others (apps, ips, ...): it has commands and no arguments.
bool IsGroup(const CLI::App* app) {
  return !app->get_subcommands({}).empty() &&
         app->get_options([](const CLI::Option* o) { return !o->nonpositional(); }).empty();
}

const CLI::Option* FindOption(const CLI::App* app, const std::string& name) {
  for (; app != nullptr; app = app->get_parent()) {  // global flags fall through
    if (const CLI::Option* o = app->get_option_no_throw(name)) return o;
  }
  return nullptr;
}

// What the command words of argv name, as far as they name commands.
struct Walk {
  CLI::App* at = nullptr;           // the deepest command named
  std::string unknown;              // the first word in a command's place that names none
  std::optional<size_t> help_word;  // index of `help` in a command's place
};

// Follows args (argv without the program name) from `root`: words in a command's place descend
// into the command they name; an option that takes a value skips it ("-a mydb", not "-amydb" or
// "--app=mydb"); the walk stops at the first argument of a command that has arguments, at "--",
// or at a word that names no command (Walk::unknown). Unknown options are taken for flags.
Walk WalkCommands(CLI::App* root, const std::vector<std::string>& args) {
  Walk w;
  w.at = root;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() > 1 && a[0] == '-') {
      bool long_name = a[1] == '-';
      bool attached = long_name ? a.find('=') != std::string::npos : a.size() > 2;
      std::string name = long_name ? a.substr(0, a.find('=')) : a.substr(0, 2);
      const CLI::Option* o = FindOption(w.at, name);
      if (o != nullptr && o->get_items_expected_max() > 0 && !attached) ++i;
      continue;
    }
    CLI::App* sub = nullptr;
    for (CLI::App* s : w.at->get_subcommands({})) {
      if (s->check_name(a)) {
        sub = s;
        break;
      }
    }
    if (sub == nullptr && IsGroup(w.at) && a == "help") {
      w.help_word = i;  // `drawbridge ips help`: the group's help
      break;
    }
    if (sub == nullptr) {
      if (IsGroup(w.at)) w.unknown = a;
      break;
    }
    if (sub->get_name() == "help") {
      w.help_word = i;
      continue;  // `drawbridge help ips ...`: the words after it name the command to explain
    }
    w.at = sub;
  }
  return w;
}

std::vector<CommandName> KnownCommands(const CLI::App* group) {
  std::vector<CommandName> out;
  for (const CLI::App* s : group->get_subcommands({})) {
    out.push_back({s->get_name(), s->get_name()});
    for (const auto& alias : s->get_aliases()) out.push_back({s->get_name(), alias});
  }
  return out;
}

std::vector<std::string> CommandNames(const CLI::App* group) {
  std::vector<std::string> out;
  for (const CLI::App* s : group->get_subcommands({})) out.push_back(s->get_name());
  return out;
}

// Prints a usage error, with where to read the usage, and gives its exit code.
int UsageError(const std::string& message, const CLI::App* at) {
  std::cerr << "Error: " << message << "\n"
            << "Run '" << CommandPath(at) << " --help' for usage.\n";
  return kUsageExit;
}

// ------------------------------------------------------------------------------ running

// Builds the client and runs one command with it.
using Command = std::function<Status(Context&)>;
// A command on one app: gets the app the flags or the fly.toml name ("" when none; the command
// says so).
using AppCommand = std::function<Status(Context&, const std::string& app)>;

Status RunWithClient(const Flags& f, const Command& command) {
  std::string data_dir = FirstNonEmpty(
      f.data_dir, Env("DRAWBRIDGE_DATA_DIR"),
      DefaultDataDir(::geteuid() == 0, std::getenv("XDG_DATA_HOME"), std::getenv("HOME")));
  std::string api = FirstNonEmpty(f.api, Env("DRAWBRIDGE_API"), "unix:" + data_dir + "/admin.sock");
  auto endpoint = ParseEndpoint(api);
  if (!endpoint.ok()) return endpoint.status();
  auto token = ReadToken(data_dir);
  if (!token.ok()) return token.status();
  auto transport = MakeHttpTransport(*endpoint, *token, kRequestTimeout);
  Client client(transport.get(), "sent from " + data_dir + "/admin.token");
  Context ctx;
  ctx.client = &client;
  ctx.json = f.json;
  ctx.ui.out = &std::cout;
  ctx.ui.err = &std::cerr;
  ctx.ui.interactive = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  ctx.ui.confirm = AskOnTerminal;
  ctx.ui.now = [] { return std::chrono::system_clock::now(); };
  return command(ctx);
}

Status PrintVersion(bool json) {
  if (json) {
    std::cout << RenderJson(Json{{"name", "drawbridge"}, {"version", kVersion}});
  } else {
    std::cout << "drawbridge " << kVersion << "\n";
  }
  return Status();
}

int Run(int argc, char** argv) {
  Flags f;
  Command command;                // what the chosen command does with the daemon
  std::string toml_for_app;       // the fly.toml an app command reads its app from
  bool app_command = false;       // the command acts on an app (ResolveApp before running)
  std::function<Status()> local;  // a command that runs without the daemon

  // What runs when `sub` is the subcommand given. on_app: a command on one app, named by -a or
  // $DRAWBRIDGE_APP, else by `app` in the fly.toml it reads (reads_config: -c or deploy's DIR),
  // else in ./fly.toml (config save's -c is the file it writes, not one it reads).
  auto on = [&command](CLI::App* sub, Command run) {
    sub->callback([&command, run = std::move(run)] { command = run; });
  };
  std::string app_name;
  auto on_app = [&](CLI::App* sub, AppCommand run, bool reads_config = false) {
    sub->callback([&, run = std::move(run), reads_config] {
      app_command = true;
      toml_for_app = reads_config ? f.ConfigFile() : ResolveConfigPath("");
      command = [&app_name, run](Context& c) { return run(c, app_name); };
    });
  };

  CLI::App app{"drawbridge: expose Postgres on a private network, the Fly.io way", "drawbridge"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("drawbridge ") + kVersion,
                       "Print the version and exit");
  app.footer(
      "Run 'drawbridge COMMAND --help' (or 'drawbridge help COMMAND') for a command's "
      "flags.");
  app.add_option("-a,--app", f.app, "Application name ($DRAWBRIDGE_APP, else `app` in fly.toml)")
      ->envname("DRAWBRIDGE_APP");
  app.add_flag("--json", f.json, "JSON output");
  app.add_option("--data-dir", f.data_dir,
                 "daemon data directory holding admin.token ($DRAWBRIDGE_DATA_DIR; default "
                 "/var/lib/drawbridge for root, else ~/.local/share/drawbridge)");
  app.add_option("--api", f.api,
                 "admin API: unix:/path/admin.sock or http://127.0.0.1:4280 ($DRAWBRIDGE_API; "
                 "default unix:<data-dir>/admin.sock)");

  // serve: main.cc runs it before the CLI sees argv; here only to be listed (and to say so when
  // it is not the first word).
  auto* serve = Sub(&app, "serve", "Run the daemon: the edge, the control plane and the admin API");
  serve->allow_extras();

  // apps
  auto* apps = Sub(&app, "apps", "Manage apps");
  apps->require_subcommand(1);
  auto* apps_create = Sub(apps, "create", "Create a new app");
  apps_create->add_option("name", f.name, "app name")->required();
  on(apps_create, [&](Context& c) { return AppsCreate(c, f.name); });
  auto* apps_list = Sub(apps, "list", "List apps");
  apps_list->alias("ls");
  on(apps_list, AppsList);
  auto* apps_destroy = Sub(apps, "destroy", "Permanently destroy an app");
  apps_destroy->add_option("name", f.name, "app name")->required();
  apps_destroy->add_flag("-y,--yes", f.yes, "Accept all confirmations");
  on(apps_destroy, [&](Context& c) { return AppsDestroy(c, f.name, f.yes); });

  // machines
  auto* machines = Sub(&app, "machines", "Manage the machines (backends) of an app");
  machines->alias("machine");
  machines->require_subcommand(1);
  auto* machines_add = Sub(machines, "add", "Add a machine by address (IP or host name)");
  machines_add->add_option("address", f.machine.address, "private address")->required();
  machines_add->add_option("--region", f.machine.region, "region label");
  machines_add->add_option("--role", f.machine.role, "role label, e.g. primary");
  on_app(machines_add,
         [&](Context& c, const std::string& a) { return MachinesAdd(c, a, f.machine); });
  auto* machines_list = Sub(machines, "list", "List machines");
  machines_list->alias("ls");
  on_app(machines_list, MachinesList);
  auto* machines_remove = Sub(machines, "remove", "Remove a machine");
  machines_remove->alias("rm");
  machines_remove->add_option("id", f.name, "machine id")->required();
  on_app(machines_remove,
         [&](Context& c, const std::string& a) { return MachinesRemove(c, a, f.name); });

  // ips
  auto* ips = Sub(&app, "ips", "Manage IP addresses for apps");
  ips->require_subcommand(1);
  auto* ips_list = Sub(ips, "list", "List public IP addresses");
  ips_list->alias("ls");
  on_app(ips_list, IpsList);
  auto* ips_v4 = Sub(ips, "allocate-v4", "Allocate an IPv4 address");
  ips_v4->add_flag("--shared", f.shared, "Allocates a shared IPv4");
  ips_v4->add_flag("-y,--yes", f.yes, "Accept all confirmations");
  on_app(ips_v4,
         [&](Context& c, const std::string& a) { return IpsAllocateV4(c, a, f.shared, f.yes); });
  auto* ips_v6 = Sub(ips, "allocate-v6", "Allocate an IPv6 address");
  on_app(ips_v6, IpsAllocateV6);
  auto* ips_release = Sub(ips, "release", "Release one or more IP addresses");
  ips_release->add_option("addresses", f.addresses, "addresses to release")->required();
  on_app(ips_release,
         [&](Context& c, const std::string& a) { return IpsRelease(c, a, f.addresses); });

  // config
  auto* config = Sub(&app, "config", "Manage an app's configuration");
  config->require_subcommand(1);
  auto* config_save = Sub(config, "save", "Save an app's config file");
  config_save->add_option(
      "-c,--config", f.config_path,
      "Path to write (default ./fly.toml; the app comes from -a or ./fly.toml)");
  config_save->add_flag("-y,--yes", f.yes, "Overwrite an existing file");
  on_app(config_save,
         [&](Context& c, const std::string& a) { return ConfigSave(c, a, f.config_path, f.yes); });
  auto* config_show = Sub(config, "show", "Show an app's configuration");
  on_app(config_show, ConfigShow);
  auto* config_validate = Sub(config, "validate", "Validate an app's config file");
  config_validate->add_option("-c,--config", f.config_path, "Path to the app's fly.toml");
  on_app(
      config_validate,
      [&](Context& c, const std::string& a) { return ConfigValidate(c, a, f.config_path); },
      /*reads_config=*/true);

  // deploy
  auto* deploy = Sub(&app, "deploy", "Deploy the config in DIR/fly.toml as a new release");
  deploy->add_option("dir", f.dir, "directory holding fly.toml (default: .)");
  deploy->add_option("-c,--config", f.config_path, "Path to the app's fly.toml");
  deploy->add_option("--image", f.image, "image to record, e.g. flyio/postgres:15");
  on_app(
      deploy,
      [&](Context& c, const std::string& a) { return Deploy(c, a, f.ConfigFile(), f.image); },
      /*reads_config=*/true);

  // services, image, pg, status
  auto* services = Sub(&app, "services", "Show the app's public services");
  services->require_subcommand(1);
  auto* services_list = Sub(services, "list", "List the services of the current release");
  services_list->alias("ls");
  on_app(services_list, ServicesList);
  auto* image = Sub(&app, "image", "Show the image recorded by deploy");
  image->require_subcommand(1);
  auto* image_show = Sub(image, "show", "Show image details and observed server versions");
  on_app(image_show, ImageShow);
  auto* pg = Sub(&app, "pg", "Postgres helpers");
  pg->alias("postgres");
  pg->require_subcommand(1);
  auto* pg_conn = Sub(pg, "connection-string",
                      "Print the external connection string (sslmode=require, then verify-full)");
  pg_conn->add_option("--internal", f.internal_url,
                      "internal connection string to turn into the external one");
  pg_conn->add_option("--sslrootcert", f.ca_path,
                      "where clients keep the built-in CA (drawbridge certs ca), for the "
                      "verify-full string (default ~/.postgresql/drawbridge-ca.pem)");
  on_app(pg_conn, [&](Context& c, const std::string& a) {
    std::string ca = f.ca_path.empty() ? DefaultCaPath(std::getenv("HOME")) : f.ca_path;
    return PgConnectionString(c, a, f.internal_url, ca);
  });
  auto* status = Sub(&app, "status", "Show the daemon's status (and the app's, with -a)");
  // Only an app named on purpose (-a or $DRAWBRIDGE_APP), not one found in ./fly.toml.
  on(status, [&](Context& c) { return ShowStatus(c, f.app); });

  // nodes
  auto* nodes = Sub(&app, "nodes", "Show the nodes of the fleet");
  nodes->alias("node");
  nodes->require_subcommand(1);
  auto* nodes_list =
      Sub(nodes, "list", "List every node: last seen, applied revision, store health, ports");
  nodes_list->alias("ls");
  on(nodes_list, NodesList);

  // certs
  auto* certs = Sub(&app, "certs", "Manage certificates");
  certs->require_subcommand(1);
  auto* certs_list = Sub(certs, "list", "List the certificates the edge serves");
  certs_list->alias("ls");
  on(certs_list, CertsList);
  auto* certs_show = Sub(certs, "show", "Show one certificate");
  certs_show->add_option("host", f.host, "host name")->required();
  on(certs_show, [&](Context& c) { return CertsShow(c, f.host); });
  auto* certs_add = Sub(certs, "add", "Install your own certificate for a host name");
  certs_add->add_option("host", f.host, "host name")->required();
  certs_add->add_option("--cert", f.cert_path, "PEM certificate chain (leaf first)")->required();
  certs_add->add_option("--key", f.key_path, "PEM private key")->required();
  on(certs_add, [&](Context& c) { return CertsAdd(c, f.host, f.cert_path, f.key_path); });
  auto* certs_ca = Sub(certs, "ca", "Print the built-in CA certificate (for sslrootcert)");
  on(certs_ca, CertsCa);
  auto* certs_remove = Sub(certs, "remove", "Removes a certificate and its key");
  certs_remove->alias("delete");
  certs_remove->add_option("host", f.host, "host name")->required();
  certs_remove->add_flag("-y,--yes", f.yes, "Accept all confirmations");
  on(certs_remove, [&](Context& c) { return CertsRemove(c, f.host, f.yes); });

  auto* version = Sub(&app, "version", "Print the version (--json: as JSON)");
  version->callback([&] { local = [&f] { return PrintVersion(f.json); }; });
  // Rewritten to --help before parsing (WalkCommands); listed like flyctl's.
  auto* help = Sub(&app, "help", "Help about any command: drawbridge help [COMMAND...]");
  help->allow_extras();

  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {  // bare `drawbridge`: what there is, as flyctl does
    std::cout << app.help();
    return 0;
  }
  Walk walk = WalkCommands(&app, args);
  if (walk.help_word) {
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(*walk.help_word));
    args.push_back("--help");
    walk = WalkCommands(&app, args);
  }
  if (!walk.unknown.empty()) {
    return UsageError(UnknownCommandMessage(walk.unknown, CommandPath(walk.at),
                                            SuggestCommands(walk.unknown, KnownCommands(walk.at))),
                      walk.at);
  }

  std::vector<char*> parse_argv{argv[0]};
  for (auto& a : args) parse_argv.push_back(a.data());
  try {
    app.parse(static_cast<int>(parse_argv.size()), parse_argv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (IsGroup(walk.at) && !command && !local) {
      return UsageError(MissingCommandMessage(CommandPath(walk.at), CommandNames(walk.at)),
                        walk.at);
    }
    return UsageError(e.what(), walk.at);
  }

  if (serve->parsed()) {
    return UsageError("serve must be the first word: drawbridge serve [flags]", serve);
  }
  Status result;
  if (local) {
    result = local();
  } else if (!command) {
    return UsageError(MissingCommandMessage(CommandPath(walk.at), CommandNames(walk.at)), walk.at);
  } else {
    if (app_command) {
      // Before the daemon is asked anything: a fly.toml that does not parse is reported here.
      auto resolved = ResolveApp(f.app, toml_for_app);
      if (resolved.ok()) {
        app_name = *resolved;
      } else {
        result = resolved.status();
      }
    }
    if (result.ok()) result = RunWithClient(f, command);
  }
  std::cout.flush();
  if (!result.ok()) {
    std::cerr << "Error: " << result.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "Error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "Error: unexpected failure\n";
  }
  return 1;
}

}  // namespace drawbridge::cli
