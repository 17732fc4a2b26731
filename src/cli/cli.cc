// Flag parsing and dispatch. Resolves the app (-a, $DRAWBRIDGE_APP, `app` in fly.toml), the data
// dir (--data-dir, $DRAWBRIDGE_DATA_DIR, the default), the endpoint (--api, $DRAWBRIDGE_API,
// unix:<data_dir>/admin.sock) and the token (<data_dir>/admin.token), then runs one command.
#include "cli/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/http_transport.h"
#include "cli/settings.h"

namespace drawbridge::cli {
namespace {

using base::Status;

constexpr std::chrono::milliseconds kRequestTimeout{30'000};

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

// The app to act on: -a (or $DRAWBRIDGE_APP, which CLI11 already folded in), then the `app`
// key of the fly.toml the command reads, like flyctl.
std::string ResolveApp(const Flags& f) {
  if (!f.app.empty()) return f.app;
  auto text = ReadFile(f.ConfigFile());
  if (!text) return "";
  return AppFromFlyToml(*text).value_or("");
}

CLI::App* Sub(CLI::App* parent, const std::string& name, const std::string& description) {
  CLI::App* sub = parent->add_subcommand(name, description);
  sub->fallthrough();  // global flags may come after the subcommand, as with flyctl
  return sub;
}

// Builds the client and runs one command with it.
using Command = std::function<Status(Context&)>;
// A command on one app: gets the app ResolveApp found ("" when none; the command says so).
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

int Run(int argc, char** argv) {
  Flags f;
  Command command;
  bool needs_client = true;
  Status direct;  // result of commands that run without the daemon

  // What runs when `sub` is the subcommand given; on_app: a command on the app ResolveApp finds.
  auto on = [&command](CLI::App* sub, Command run) {
    sub->callback([&command, run = std::move(run)] { command = run; });
  };
  auto on_app = [&](CLI::App* sub, AppCommand run) {
    on(sub, [&f, run = std::move(run)](Context& c) { return run(c, ResolveApp(f)); });
  };

  CLI::App app{"drawbridge: expose Postgres on a private network, the Fly.io way", "drawbridge"};
  app.require_subcommand(1);
  app.add_option("-a,--app", f.app, "Application name ($DRAWBRIDGE_APP, else `app` in fly.toml)")
      ->envname("DRAWBRIDGE_APP");
  app.add_flag("--json", f.json, "JSON output");
  app.add_option("--data-dir", f.data_dir,
                 "daemon data directory holding admin.token ($DRAWBRIDGE_DATA_DIR; default "
                 "/var/lib/drawbridge for root, else ~/.local/share/drawbridge)");
  app.add_option("--api", f.api,
                 "admin API: unix:/path/admin.sock or http://127.0.0.1:4280 ($DRAWBRIDGE_API; "
                 "default unix:<data-dir>/admin.sock)");

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
  config_save->add_option("-c,--config", f.config_path, "Path to the app's fly.toml");
  config_save->add_flag("-y,--yes", f.yes, "Overwrite an existing file");
  on_app(config_save,
         [&](Context& c, const std::string& a) { return ConfigSave(c, a, f.config_path, f.yes); });
  auto* config_show = Sub(config, "show", "Show an app's configuration");
  on_app(config_show, ConfigShow);
  auto* config_validate = Sub(config, "validate", "Validate an app's config file");
  config_validate->add_option("-c,--config", f.config_path, "Path to the app's fly.toml");
  on_app(config_validate,
         [&](Context& c, const std::string& a) { return ConfigValidate(c, a, f.config_path); });

  // deploy
  auto* deploy = Sub(&app, "deploy", "Deploy the config in DIR/fly.toml as a new release");
  deploy->add_option("dir", f.dir, "directory holding fly.toml (default: .)");
  deploy->add_option("-c,--config", f.config_path, "Path to the app's fly.toml");
  deploy->add_option("--image", f.image, "image to record, e.g. flyio/postgres:15");
  on_app(deploy,
         [&](Context& c, const std::string& a) { return Deploy(c, a, f.ConfigFile(), f.image); });

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
  auto* pg_conn = Sub(pg, "connection-string", "Print the external connection string");
  pg_conn->add_option("--internal", f.internal_url,
                      "internal connection string to turn into the external one");
  on_app(pg_conn, [&](Context& c, const std::string& a) {
    return PgConnectionString(c, a, f.internal_url);
  });
  auto* status = Sub(&app, "status", "Show the daemon's status (and the app's, with -a)");
  // Only an app named on purpose (-a or $DRAWBRIDGE_APP), not one found in ./fly.toml.
  on(status, [&](Context& c) { return ShowStatus(c, f.app); });

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

  auto* version = Sub(&app, "version", "Print the version");
  version->callback([&] {
    needs_client = false;
    std::cout << "drawbridge 0.1.0\n";
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "Error: " << e.what() << "\n";
    return 1;
  }

  Status result = direct;
  if (needs_client) {
    if (!command) {
      std::cerr << "Error: no command given; run with --help\n";
      return 1;
    }
    result = RunWithClient(f, command);
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
