"""The guide's whole flow (docs/cli.md, "The guide's flow") through the CLI only, against the
real daemon (`drawbridge serve`) and a real PostgreSQL 15, then psql over the allocated
addresses.

The tests run in file order and share one daemon: each step needs the ones before it, and says
so when they did not happen. Nothing here skips: a missing binary, Postgres or client fails.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q tests/integration/test_cli.py
"""

from __future__ import annotations

import ipaddress
import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness
from harness import PSQL, cli_env, dsn, free_port, libpq_env, run, wait_until

APP = "mydb"
DOMAIN = "drawbridge.test"
V4_POOL = "127.0.10.0/24"
V6_POOL = "fd00:db:1::/64"
IMAGE = "flyio/postgres:15"


# ------------------------------------------------------------------------------ helpers


def flyctl_table(headers: list[str], rows: list[list[str]]) -> str:
    """What flyctl's render.Table writes (tablewriter, NoWhiteSpace, TablePadding "\\t"): cells
    padded to the column width; header cells end in TAB, the last in a space; row cells all end
    in TAB; a blank line after the table."""
    ncols = max([len(headers)] + [len(r) for r in rows])
    widths = [0] * ncols
    for i, h in enumerate(headers):
        widths[i] = max(widths[i], len(h))
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    out = ""
    if headers:
        for i in range(ncols):
            h = headers[i].upper() if i < len(headers) else ""
            out += h.ljust(widths[i]) + (" " if i == ncols - 1 else "\t")
        out += "\n"
    for r in rows:
        out += "".join(c.ljust(widths[i]) + "\t" for i, c in enumerate(r)) + "\n"
    return out + "\n"


def on_terminal(text: str) -> list[str]:
    """Lines as a terminal shows them: TABs to 8-column stops, no trailing blanks."""
    return [ln.expandtabs(8).rstrip() for ln in text.split("\n")]


def table_rows(text: str) -> list[list[str]]:
    """Data rows of a flyctl table (the header and blank lines dropped), cells stripped."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return [[c.strip() for c in ln.rstrip("\t").split("\t")] for ln in lines[1:]]


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """The CLI's error contract: exit 1, nothing but `Error: <message>` lines on stderr."""
    assert p.returncode == 1, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("Error: ")]
    assert lines, f"no 'Error: ' line on stderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr and "terminate called" not in p.stderr, p.stderr
    return lines[-1]


def usage_error_line(p: subprocess.CompletedProcess) -> str:
    """A usage error (the command line itself is wrong): exit 2, `Error: <message>` then where
    to read the usage, nothing on stdout."""
    assert p.returncode == 2, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    lines = p.stderr.splitlines()
    assert lines and lines[0].startswith("Error: "), p.stderr
    assert re.fullmatch(r"Run 'drawbridge( [a-z0-9-]+)* --help' for usage\.", lines[-1]), p.stderr
    assert p.stdout == "", p.stdout
    return lines[0]


def replace_services(toml: str, section: str) -> str:
    """Drops every [[services]] / [[services.*]] / [services.*] table of a fly.toml and appends
    `section`, as the guide says to."""
    out, skipping = [], False
    for line in toml.splitlines():
        m = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.\"-]+)\s*\]\]?", line)
        if m:
            name = m.group(1)
            skipping = name == "services" or name.startswith("services.")
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip() + "\n\n" + section


def Daemon(workdir: Path) -> harness.DrawbridgeDaemon:
    """`drawbridge serve` with its own data dir (no DNS); the CLI runs against it."""
    return harness.DrawbridgeDaemon(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN)


def psql_conninfo(host: str, port: int) -> str:
    # The guide's: psql "sslmode=require host=<pg-app-name>.fly.dev dbname=<db> user=<user>".
    return dsn(sslmode="require", host=host, port=port, dbname="app", user="alice",
               password="alice-secret")


def psql(host: str, port: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", psql_conninfo(host, port), *args]
    return run(cmd, timeout=60, check=check, env=libpq_env())


def assert_tls13(host: str, port: int) -> None:
    p = psql(host, port, "-c", "\\conninfo", "-c", "SELECT current_user")
    assert "SSL connection (protocol: TLSv1.3" in p.stdout, p.stdout
    assert "alice" in p.stdout, p.stdout


class State:
    """What one step leaves for the next."""

    def __init__(self, daemon: Daemon, pg):
        self.daemon = daemon
        self.pg = pg
        self.public_port = free_port()
        self.v4: str | None = None
        self.v6: str | None = None
        self.machine: str | None = None
        self.deployed = False
        self.v6_deliverable: bool | None = None

    def need(self, attr: str, step: str):
        v = getattr(self, attr)
        assert v, f"this step needs {step}, which did not succeed"
        return v


@pytest.fixture(scope="module")
def st(pg):
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-cli-"))
    with harness.running(Daemon(workdir)) as d:
        yield State(d, pg)


@pytest.fixture(autouse=True)
def _daemon_still_alive(request):
    yield
    if "st" in request.fixturenames:
        harness.fail_if_dead(request.getfixturevalue("st").daemon)


# ------------------------------------------------------------------------------ the flow


def test_apps_create_and_machines_add(st):
    d = st.daemon
    p = d.cli("apps", "create", APP)
    assert p.stdout == f"New app created: {APP}\n"
    p = d.cli("machines", "add", "127.0.0.1", "--region", "local", "--role", "primary",
              "-a", APP)
    m = re.fullmatch(rf"Added machine (\S+) \(127\.0\.0\.1\) to {APP}\n", p.stdout)
    assert m, p.stdout
    st.machine = m.group(1)
    rows = table_rows(d.cli("machines", "list", "-a", APP).stdout)
    # ID ADDRESS HEALTH ROLE SESSIONS LAST CHECK REGION CREATED AT: nothing deployed, nothing
    # checked or learned yet, so healthy, the declared role, no check.
    assert [r[:7] for r in rows] == [[st.machine, "127.0.0.1", "healthy", "primary", "0",
                                      "none yet", "local"]], rows
    # Creating it twice is the API's 409, printed cleanly.
    line = one_error_line(d.cli("apps", "create", APP, check=False))
    assert APP in line


def test_ips_list_is_empty_at_first(st):
    st.need("machine", "test_apps_create_and_machines_add")
    p = st.daemon.cli("ips", "list", "--app", APP)
    assert p.stdout == flyctl_table(["VERSION", "IP", "TYPE", "REGION", "CREATED AT"], [])


def test_allocate_v4_without_yes_fails_when_not_interactive(st):
    p = st.daemon.cli("ips", "allocate-v4", "--app", APP, check=False)
    line = one_error_line(p)
    assert line == ("Error: yes flag must be specified when not running interactively "
                    "(or use --shared for a shared IPv4 address)"), line
    assert p.stdout == ""
    # Nothing was allocated.
    assert json.loads(st.daemon.cli("ips", "list", "-a", APP, "--json").stdout) == []


def test_allocate_v4_asks_on_a_terminal(st):
    """On a TTY the question is asked; answering no allocates nothing."""
    d = st.daemon
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(d.cli_cmd("ips", "allocate-v4", "-a", APP), stdin=slave,
                                stdout=slave, stderr=slave, cwd=d.workdir, env=cli_env(),
                                close_fds=True)
        os.close(slave)
        slave = -1
        seen = b""
        deadline = time.monotonic() + 30
        answered = False
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(master, b"n\n")
                answered = True
            if proc.poll() is not None and not r:
                break
        rc = proc.wait(30)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    text = seen.decode(errors="replace")
    assert "Are you ok with this? [y/N]" in text, text
    assert "--shared" in text, text
    assert rc == 1 and "Error: user aborted" in text, (rc, text)
    assert json.loads(d.cli("ips", "list", "-a", APP, "--json").stdout) == []


def test_allocate_v4_with_yes_and_v6(st):
    d = st.daemon
    p = d.cli("ips", "allocate-v4", "--yes", "--app", APP)
    rows = table_rows(p.stdout)
    assert len(rows) == 1 and rows[0][0] == "v4" and rows[0][2] == "public (dedicated)", p.stdout
    assert ipaddress.ip_address(rows[0][1]) in ipaddress.ip_network(V4_POOL)
    st.v4 = rows[0][1]

    p = d.cli("ips", "allocate-v6", "--app", APP)
    rows = table_rows(p.stdout)
    assert len(rows) == 1 and rows[0][0] == "v6" and rows[0][2] == "public (dedicated)", p.stdout
    assert ipaddress.ip_address(rows[0][1]) in ipaddress.ip_network(V6_POOL)
    st.v6 = rows[0][1]

    p = d.cli("ips", "list", "--app", APP)
    lines = p.stdout.split("\n")
    assert on_terminal(lines[0])[0].split() == ["VERSION", "IP", "TYPE", "REGION", "CREATED",
                                                "AT"], p.stdout
    rows = table_rows(p.stdout)
    assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == sorted([
        ("v4", st.v4, "public (dedicated)", "global"),
        ("v6", st.v6, "public (dedicated)", "global")]), p.stdout
    for r in rows:
        assert re.fullmatch(r"just now|\d+s ago|\d+m\d+s ago", r[4]), r
    # Byte-exact flyctl layout.
    assert p.stdout == flyctl_table(["VERSION", "IP", "TYPE", "REGION", "CREATED AT"],
                                    [r for r in rows]), p.stdout


def test_config_save_then_refuses_to_overwrite(st):
    d = st.daemon
    st.need("v4", "test_allocate_v4_with_yes_and_v6")
    fly = d.workdir / "fly.toml"
    assert not fly.exists()
    p = d.cli("config", "save", "--app", APP)
    assert p.stdout == "Wrote config file fly.toml\n"
    saved = fly.read_text()
    assert re.search(rf"^app\s*=\s*['\"]{APP}['\"]", saved, re.M), saved

    fly.write_text(saved + "# edited by hand\n")
    line = one_error_line(d.cli("config", "save", "--app", APP, check=False))
    assert "--yes" in line, line
    assert fly.read_text() == saved + "# edited by hand\n"
    p = d.cli("config", "save", "--app", APP, "-y")
    assert fly.read_text() == saved

    # -c PATH writes elsewhere.
    other = d.workdir / "other.toml"
    d.cli("config", "save", "-a", APP, "-c", str(other))
    assert other.read_text() == saved


def test_config_save_c_without_a_takes_the_app_from_dot_fly_toml(st):
    """-c names the file to write (which need not exist yet); the app comes from -a,
    $DRAWBRIDGE_APP, else ./fly.toml, as for every command that does not read the -c file."""
    d = st.daemon
    fly = d.workdir / "fly.toml"
    assert fly.exists(), "needs test_config_save_then_refuses_to_overwrite"
    target = d.workdir / "copy" / "saved.toml"
    target.parent.mkdir(exist_ok=True)
    p = d.cli("config", "save", "-c", str(target), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == f"Wrote config file {target}\n", p.stdout
    assert target.read_text() == fly.read_text()
    # The app of ./fly.toml, not of the file being overwritten.
    target.write_text('app = "someone-else"\n')
    d.cli("config", "save", "-c", str(target), "--yes")
    assert target.read_text() == fly.read_text()


def test_replace_services_and_validate(st):
    d = st.daemon
    fly = d.workdir / "fly.toml"
    assert fly.exists(), "needs test_config_save_then_refuses_to_overwrite"
    text = replace_services(fly.read_text(), harness.pg_tls_fly_toml(st.pg.port, st.public_port))
    assert "pg_tls" in text and "internal_port = 8080" not in text, text
    fly.write_text(text)
    p = d.cli("config", "validate")  # the app comes from fly.toml, like flyctl
    assert p.stdout == "✓ Configuration is valid\n", p.stdout + p.stderr
    for ln in p.stderr.splitlines():
        assert re.match(r"Warning: fly\.toml:\d+: ", ln), p.stderr


def test_deploy_with_image(st):
    d = st.daemon
    assert "pg_tls" in (d.workdir / "fly.toml").read_text(), "needs the edited fly.toml"
    # The guide's: fly deploy . --app <pg-app-name> --image flyio/postgres:<major-version>
    p = d.cli("deploy", ".", "--app", APP, "--image", IMAGE)
    assert re.fullmatch(r"Release v\d+ created\n", p.stdout), p.stdout + p.stderr
    st.deployed = True


def test_services_list_exactly_as_the_guide(st):
    assert st.deployed, "needs test_deploy_with_image"
    p = st.daemon.cli("services", "list", "--app", APP)
    row = ["TCP", f"{st.public_port} => {st.pg.port} [PG_TLS]", "False"]
    assert p.stdout == flyctl_table(["PROTOCOL", "PORTS", "FORCE HTTPS"], [row]), repr(p.stdout)
    # On a terminal: the guide's layout, TAB stops every 8 columns.
    shown = on_terminal(p.stdout)
    assert re.fullmatch(r"PROTOCOL {8}PORTS +FORCE HTTPS", shown[0]), shown
    assert re.fullmatch(rf"TCP {{13}}{st.public_port} => {st.pg.port} \[PG_TLS\] +False",
                        shown[1]), shown
    assert shown[0].index("FORCE HTTPS") == shown[1].index("False"), shown
    assert shown[2:] == ["", ""], shown


def test_psql_over_v4_is_tls13_and_image_shows_the_server(st):
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    assert_tls13(v4, st.public_port)

    server_version = st.pg.query("SHOW server_version")[0][0]

    def image_show():
        p = st.daemon.cli("image", "show", "--app", APP)
        return p.stdout if f"PostgreSQL {server_version}" in p.stdout else None

    out = wait_until(image_show, 15, interval=0.2, what="image show to list the observed version")
    lines = on_terminal(out)
    assert lines[0] == "Image Details", lines
    assert "  Repository = flyio/postgres" in lines, lines
    assert "  Tag        = 15" in lines, lines
    assert any(re.fullmatch(r"  Version    = \S+", ln) for ln in lines), lines
    assert f"Machine {st.machine}: PostgreSQL {server_version}" in lines, lines


def test_psql_over_v6(st):
    v6 = st.need("v6", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    log = st.daemon.log()
    # The daemon explains how when it cannot make the pool deliverable; these tests run as root,
    # where it can, so an unexercised v6 path is a failure, not a skip.
    assert not re.search(r"IPv6 pool \S+ is not locally deliverable", log), log[-3000:]
    st.v6_deliverable = True
    assert_tls13(v6, st.public_port)


def test_app_certificate_verifies_with_the_built_in_ca(st, tmp_path):
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    host = f"{APP}.{DOMAIN}"
    listed = on_terminal(st.daemon.cli("certs", "list").stdout)
    assert any(line.split()[:3] == [host, APP, "ca"] for line in listed[1:] if line), listed
    shown = on_terminal(st.daemon.cli("certs", "show", host).stdout)
    assert "  Source   = built-in CA" in shown, shown
    ca = st.daemon.cli("certs", "ca").stdout
    assert ca.startswith("-----BEGIN CERTIFICATE-----"), ca
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(ca)

    def verify_full(name: str) -> subprocess.CompletedProcess:
        conn = dsn(sslmode="verify-full", sslrootcert=str(ca_file), host=name, hostaddr=v4,
                   port=st.public_port, dbname="app", user="alice", password="alice-secret")
        return run([PSQL, "-X", "-d", conn, "-c", "\\conninfo"], timeout=60, check=False,
                   env=libpq_env())

    ok = verify_full(host)
    assert ok.returncode == 0 and "TLSv1.3" in ok.stdout, ok.stdout + ok.stderr
    wrong = verify_full(f"other.{DOMAIN}")
    assert wrong.returncode != 0 and "does not match host name" in wrong.stderr, wrong.stderr

    # A certificate whose key does not match is refused, and the CA's stays.
    bad_key = tmp_path / "bad.key"
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(bad_key)], timeout=30)
    chain = tmp_path / "chain.pem"
    chain.write_text(st.daemon.cli("certs", "show", host, "--json").stdout and
                     json.loads(st.daemon.cli("certs", "show", host, "--json").stdout)["cert_pem"])
    refused = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(bad_key),
                            check=False)
    assert refused.returncode == 1, refused.stdout
    assert one_error_line(refused) == (
        f"Error: certificate for {host} refused: the key does not match the certificate")
    assert verify_full(host).returncode == 0


def test_pg_connection_string_has_a_verify_full_form_that_connects(st, tmp_path):
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    d = st.daemon
    internal = f"postgres://alice:alice-secret@{APP}.internal:{st.pg.port}/app"
    home = tmp_path / "home"
    home.mkdir()
    p = run(d.cli_cmd("pg", "connection-string", "-a", APP, "--internal", internal),
            timeout=60, cwd=d.workdir, env={**cli_env(), "HOME": str(home)},
            stdin=subprocess.DEVNULL)
    lines = p.stdout.splitlines()
    assert len(lines) == 2, p.stdout
    require, verify_full = lines
    host = f"{APP}.{DOMAIN}"
    ca_path = home / ".postgresql" / "drawbridge-ca.pem"
    assert require == (f"postgres://alice:alice-secret@{host}:{st.public_port}/app"
                       "?sslmode=require"), require
    assert verify_full == (f"postgres://alice:alice-secret@{host}:{st.public_port}/app"
                           f"?sslmode=verify-full&sslrootcert={ca_path}"), verify_full
    # stderr says how to get the CA there.
    assert f"drawbridge certs ca > {ca_path}" in p.stderr, p.stderr
    assert f"mkdir -p {ca_path.parent}" in p.stderr, p.stderr

    # Before the CA is saved, verify-full cannot connect; after, the exact string does. The name
    # is the public one; PGHOSTADDR stands in for DNS (the test's resolver does not ask ours).
    def connect(conn: str) -> subprocess.CompletedProcess:
        return run([PSQL, "-X", "-d", conn, "-c", "\\conninfo", "-c", "SELECT current_user"],
                   timeout=60, check=False, env=libpq_env(PGHOSTADDR=v4))

    before = connect(verify_full)
    assert before.returncode != 0 and "drawbridge-ca.pem" in before.stderr, before.stderr
    ca_path.parent.mkdir()
    ca_path.write_text(d.cli("certs", "ca").stdout)
    ok = connect(verify_full)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "SSL connection (protocol: TLSv1.3" in ok.stdout and "alice" in ok.stdout, ok.stdout
    assert connect(require).returncode == 0

    # --json: one document with both forms, nothing on stderr.
    p = run(d.cli_cmd("pg", "connection-string", "-a", APP, "--internal", internal, "--json",
                      "--sslrootcert", str(ca_path)),
            timeout=60, cwd=d.workdir, env=cli_env(), stdin=subprocess.DEVNULL)
    doc = json.loads(p.stdout)
    assert doc["url"] == require and doc["verify_full_url"] == verify_full, doc
    assert doc["sslrootcert"] == str(ca_path) and doc["host"] == host, doc
    assert p.stderr == "", p.stderr


def test_metrics_endpoint_counts_connections_and_refusals(st):
    import urllib.error
    import urllib.request
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    # One refusal of a known reason: a plaintext StartupMessage on the pg_tls port.
    refused = run([PSQL, "-X", "-d", dsn(sslmode="disable", host=v4, port=st.public_port,
                                         dbname="app", user="alice", password="x"),
                   "-c", "SELECT 1"], timeout=30, check=False, env=libpq_env())
    assert "SSL/TLS is required" in refused.stderr, refused.stderr
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    token = (st.daemon.data / "admin.token").read_text().strip()
    url = f"http://127.0.0.1:{st.daemon.api_port}/metrics"
    with opener.open(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                     timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)  # histogram sums are not whole numbers
    assert values["drawbridge_connections_accepted_total"] >= 2, text
    assert values['drawbridge_refusals_total{reason="tls_required"}'] >= 1, text
    assert values["drawbridge_routes_version"] > 0, text
    try:
        opener.open(url, timeout=10)
        raise AssertionError("/metrics answered without a token")
    except urllib.error.HTTPError as e:
        assert e.code == 401
        assert "error" in json.loads(e.read())


def test_invalid_deploy_is_refused_and_the_previous_release_serves(st):
    d = st.daemon
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    good = (d.workdir / "fly.toml").read_text()
    bad = good.replace('"pg_tls"', '"pgtls"')
    assert bad != good
    (d.workdir / "bad.toml").write_text(bad)
    bad_line = next(i for i, ln in enumerate(bad.splitlines(), 1) if "pgtls" in ln)
    before = d.cli("services", "list", "-a", APP).stdout

    p = d.cli("deploy", "-c", "bad.toml", "-a", APP, check=False)
    line = one_error_line(p)
    assert re.match(rf"Error: bad\.toml:{bad_line}: services\[0\]\.ports\[0\]\.handlers: .*pgtls",
                    line), line
    assert p.stdout == ""
    # validate says the same
    line = one_error_line(d.cli("config", "validate", "-c", "bad.toml", "-a", APP, check=False))
    assert f"bad.toml:{bad_line}:" in line, line

    assert d.cli("services", "list", "-a", APP).stdout == before
    assert_tls13(v4, st.public_port)


def test_deploy_with_an_image_tag_beyond_int_is_a_clean_400(st):
    # The daemon read the tag's major version with std::stoi, whose out_of_range escaped the
    # admin API and ended the process.
    d = st.daemon
    assert st.deployed, "needs test_deploy_with_image"
    bad_image = "flyio/postgres:99999999999"
    releases = d.api("GET", f"/v1/apps/{APP}/releases")

    line = one_error_line(d.cli("deploy", ".", "--app", APP, "--image", bad_image, check=False))
    assert bad_image in line and "out of range" in line, line
    harness.fail_if_dead(d)

    status, body = d.api("POST", f"/v1/apps/{APP}/deploy",
                         {"toml": (d.workdir / "fly.toml").read_text(), "image": bad_image})
    assert status == 400, (status, body)
    error = json.loads(body)["error"]
    assert isinstance(error, str) and bad_image in error, body
    harness.fail_if_dead(d)
    status, body = d.api("GET", "/v1/status")
    assert status == 200, (status, body)
    assert d.api("GET", f"/v1/apps/{APP}/releases") == releases, "a refused deploy made a release"


def test_deploy_keeps_established_sessions_and_applies_at_once(st):
    import psycopg
    d = st.daemon
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    session = psycopg.connect(dsn(sslmode="require", host=v4, port=st.public_port, dbname="app",
                                  user="alice", password="alice-secret"), connect_timeout=10)
    try:
        pid = session.execute("SELECT pg_backend_pid()").fetchone()[0]
        good = (d.workdir / "fly.toml").read_text()
        extra = free_port()
        with_extra = good + "\n" + harness.pg_tls_fly_toml(st.pg.port, extra)
        (d.workdir / "extra.toml").write_text(with_extra)
        d.cli("deploy", "-c", "extra.toml", "-a", APP)
        # A new port serves as soon as deploy returns; the open session is untouched.
        assert_tls13(v4, extra)
        assert session.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        d.cli("deploy", "-c", "fly.toml", "-a", APP)
        gone = psql(v4, extra, "-c", "SELECT 1", check=False)
        assert gone.returncode != 0, gone.stdout
        assert session.execute("SELECT 'still here'").fetchone()[0] == "still here"
        assert_tls13(v4, st.public_port)
    finally:
        session.close()


def test_json_outputs_parse(st):
    d = st.daemon
    assert st.deployed, "needs test_deploy_with_image"
    for args, kind in [(("apps", "list"), list), (("machines", "list", "-a", APP), list),
                       (("ips", "list", "-a", APP), list), (("services", "list", "-a", APP), list),
                       (("image", "show", "-a", APP), dict), (("config", "show", "-a", APP), dict),
                       (("status",), dict), (("status", "-a", APP), dict),
                       (("pg", "connection-string", "-a", APP), dict)]:
        p = d.cli(*args, "--json")
        v = json.loads(p.stdout)
        assert isinstance(v, kind), (args, p.stdout)
        assert p.stdout.endswith("\n")
        if v:
            assert p.stdout.split("\n")[1].startswith("    "), (args, p.stdout)  # 4-space indent
    apps = json.loads(d.cli("apps", "list", "--json").stdout)
    assert [a["name"] for a in apps] == [APP]
    ips = json.loads(d.cli("ips", "list", "-a", APP, "--json").stdout)
    assert {i["address"] for i in ips} >= {st.v4}
    # The same over TCP with --api.
    p = d.cli("apps", "list", "--json", "--api", f"http://127.0.0.1:{d.api_port}")
    assert json.loads(p.stdout) == apps
    conn = json.loads(d.cli("pg", "connection-string", "-a", APP, "--internal",
                            "postgres://alice:alice-secret@mydb.internal:5432/app",
                            "--json").stdout)
    assert conn["host"] == f"{APP}.{DOMAIN}", conn
    assert f"@{APP}.{DOMAIN}:" in conn["url"] and "sslmode=" in conn["url"], conn


def test_concurrent_allocations_are_distinct(st):
    d = st.daemon
    st.need("v4", "test_allocate_v4_with_yes_and_v6")
    procs = [subprocess.Popen(d.cli_cmd("ips", "allocate-v4", "--yes", "-a", APP, "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, cwd=d.workdir, env=cli_env())
             for _ in range(8)]
    addresses = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"rc={p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
        addresses.append(json.loads(out)["address"])
    assert len(set(addresses)) == 8, addresses
    assert st.v4 not in addresses
    for a in addresses:
        assert ipaddress.ip_address(a) in ipaddress.ip_network(V4_POOL), a
    listed = {i["address"] for i in json.loads(d.cli("ips", "list", "-a", APP, "--json").stdout)}
    assert set(addresses) <= listed
    # Give them back; releasing several at once prints one line each.
    p = d.cli("ips", "release", *addresses, "-a", APP)
    assert p.stdout == "".join(f"Released {a} from {APP}\n" for a in addresses), p.stdout


def test_bad_token_and_no_daemon_are_clean_errors(st):
    d = st.daemon
    bogus = d.workdir / "bogus"
    bogus.mkdir(exist_ok=True)
    (bogus / "admin.token").write_text("not-the-token\n")
    p = d.cli("apps", "list", "--api", f"unix:{d.data}/admin.sock", data_dir=bogus, check=False)
    line = one_error_line(p)
    assert "token" in line, line
    assert p.stdout == ""
    p = d.cli("apps", "list", "--api", f"http://127.0.0.1:{d.api_port}", data_dir=bogus,
              check=False)
    assert "token" in one_error_line(p)
    # No daemon behind the socket: a clean error naming the endpoint.
    line = one_error_line(d.cli("apps", "list", data_dir=bogus, check=False))
    assert f"{bogus}/admin.sock" in line, line
    # No token at all.
    empty = d.workdir / "empty"
    empty.mkdir(exist_ok=True)
    line = one_error_line(d.cli("apps", "list", data_dir=empty, check=False))
    assert "admin.token" in line, line


def test_bad_arguments_are_clean_errors(st):
    d = st.daemon
    line = one_error_line(d.cli("ips", "release", "nope", "-a", APP, check=False))
    assert line == "Error: Invalid IP address: 'nope'", line
    line = one_error_line(d.cli("ips", "list", "-a", "ghost", check=False))
    assert "ghost" in line, line
    line = one_error_line(d.cli("certs", "show", "nope.example.com", check=False))
    assert line == 'Error: certificate for "nope.example.com" not found', line
    line = one_error_line(d.cli("apps", "destroy", APP, check=False))
    assert "--yes" in line, line
    assert APP in {a["name"] for a in json.loads(d.cli("apps", "list", "--json").stdout)}


def test_unknown_commands_are_named_with_the_nearest(st):
    d = st.daemon
    line = usage_error_line(d.cli("aps", "list", check=False))
    assert line == 'Error: unknown command "aps" for "drawbridge"; did you mean "apps"?', line
    line = usage_error_line(d.cli("ips", "allocate-v5", "-a", APP, check=False))
    assert line == ('Error: unknown command "allocate-v5" for "drawbridge ips"; did you mean '
                    '"allocate-v4" or "allocate-v6"?'), line
    # A flag's value is not taken for a command.
    line = usage_error_line(d.cli("-a", APP, "confg", "show", check=False))
    assert line == 'Error: unknown command "confg" for "drawbridge"; did you mean "config"?', line
    line = usage_error_line(d.cli("zzzz", check=False))
    assert line == 'Error: unknown command "zzzz" for "drawbridge"', line
    # Every usage error exits 2, the same way: a group without its command, a missing flag.
    line = usage_error_line(d.cli("ips", check=False))
    assert line == ('Error: "drawbridge ips" needs a command: list, allocate-v4, allocate-v6, '
                    'release'), line
    line = usage_error_line(d.cli("certs", "add", "h.example", check=False))
    assert "--cert" in line, line
    # A command that ran and failed is not a usage error: exit 1.
    one_error_line(d.cli("ips", "list", "-a", "ghost", check=False))


def test_help_lists_every_command_and_serve(st):
    d = st.daemon
    for args in (("help",), ("--help",)):
        p = d.cli(*args)
        assert p.stderr == "", p.stderr
        commands = {m.group(1) for m in re.finditer(r"^  ([a-z-]+)[ ,]", p.stdout, re.M)}
        assert {"serve", "apps", "machines", "ips", "config", "deploy", "services", "image",
                "pg", "status", "certs", "version", "help"} <= commands, p.stdout
        assert re.search(r"^  serve +Run the daemon", p.stdout, re.M), p.stdout
    # help COMMAND is COMMAND --help.
    assert d.cli("help", "ips").stdout == d.cli("ips", "--help").stdout
    assert "allocate-v4" in d.cli("help", "ips").stdout
    usage_error_line(d.cli("help", "aps", check=False))


def test_version_flag_command_and_json(st):
    d = st.daemon
    version = d.cli("--version")
    assert re.fullmatch(r"drawbridge \d+\.\d+\.\d+\n", version.stdout), version.stdout
    assert d.cli("version").stdout == version.stdout
    doc = json.loads(d.cli("version", "--json").stdout)
    assert doc == {"name": "drawbridge", "version": version.stdout.split()[1]}, doc
    # The daemon reports the same version.
    assert json.loads(d.cli("status", "--json").stdout)["version"] == doc["version"]


def test_a_fly_toml_that_does_not_parse_is_reported_with_its_line(st, tmp_path):
    """The app is read from ./fly.toml when -a is not given; a file that does not parse (and so
    names no app) says so with file:line, without the daemon."""
    d = st.daemon
    (tmp_path / "fly.toml").write_text('primary_region = "local"\n\n[[services]\n'
                                       '  internal_port = 5432\n')
    no_daemon = tmp_path / "no-daemon"  # no token, no socket
    no_daemon.mkdir()
    for args in (("machines", "list"), ("deploy",), ("config", "validate"), ("ips", "list")):
        for data_dir in (d.data, no_daemon):
            p = run(d.cli_cmd(*args, data_dir=data_dir), timeout=60, check=False, cwd=tmp_path,
                    env=cli_env(), stdin=subprocess.DEVNULL)
            line = one_error_line(p)
            assert line.startswith("Error: fly.toml:3: "), (args, line)
            assert "missing an app name" not in line and "-a" in line, (args, line)
    # -a still works beside it (the file is not needed then).
    p = run(d.cli_cmd("machines", "list", "-a", APP), timeout=60, cwd=tmp_path, env=cli_env(),
            stdin=subprocess.DEVNULL)
    assert table_rows(p.stdout), p.stdout


def test_a_fly_toml_too_large_for_the_api_is_refused_by_the_cli(st, tmp_path):
    d = st.daemon
    assert st.deployed, "needs test_deploy_with_image"
    good = (d.workdir / "fly.toml").read_text()
    big = tmp_path / "big.toml"
    big.write_text(good + "# " + "x" * (2 * 1024 * 1024) + "\n")
    size = big.stat().st_size
    releases = d.api("GET", f"/v1/apps/{APP}/releases")
    for args in (("config", "validate", "-c", str(big), "-a", APP),
                 ("deploy", "-c", str(big), "-a", APP)):
        p = d.cli(*args, check=False)
        line = one_error_line(p)
        assert line.startswith(f"Error: {big} is 2.0 MiB ({size} bytes), too large to send: "), line
        assert "at most 1 MiB (1048576 bytes)" in line, line
        assert "pipe" not in p.stderr.lower(), p.stderr
        assert p.stdout == ""
    assert d.api("GET", f"/v1/apps/{APP}/releases") == releases, "a refused deploy made a release"


@pytest.fixture
def open_tmp():
    """A directory anyone may enter (pytest's tmp_path is below a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="drawbridge-it-cli-perm-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_token_the_user_may_not_read_says_whose_it_is(st, open_tmp):
    """The tests run as root, who reads anything: the CLI runs as nobody here, so open() really
    fails with EACCES."""
    d = st.daemon
    token = d.token()
    tmp_path = open_tmp
    # The token readable only by root, in a directory anyone may enter.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    (open_dir / "admin.token").write_text(token + "\n")
    os.chmod(open_dir / "admin.token", 0o600)
    # The daemon's own layout: a data directory only root may enter.
    closed_dir = tmp_path / "closed"
    closed_dir.mkdir()
    (closed_dir / "admin.token").write_text(token + "\n")
    os.chmod(closed_dir, 0o700)

    def as_nobody(data_dir: Path) -> subprocess.CompletedProcess:
        return run(["runuser", "-u", "nobody", "--", str(d.bin), "apps", "list", "--data-dir",
                    str(data_dir)], timeout=60, check=False, cwd="/", env=cli_env(),
                   stdin=subprocess.DEVNULL)

    line = one_error_line(as_nobody(open_dir))
    assert line == (f"Error: cannot read the admin token {open_dir}/admin.token: Permission "
                    "denied: the file is owned by root with mode 0600; run the command as root "
                    "(e.g. with sudo)"), line
    line = one_error_line(as_nobody(closed_dir))
    assert line == (f"Error: cannot read the admin token {closed_dir}/admin.token: Permission "
                    f"denied: the directory {closed_dir} is owned by root with mode 0700; run the "
                    "command as root (e.g. with sudo)"), line
    # Only a token that is not there at all means the daemon never ran.
    line = one_error_line(as_nobody(tmp_path / "missing"))
    assert "No such file or directory" in line and "drawbridge serve" in line, line


def test_errors_are_the_daemons_words_in_one_format(st):
    d = st.daemon
    status, body = d.api("GET", "/v1/apps/ghost/ips")
    assert status == 404, (status, body)
    api_error = json.loads(body)["error"]
    for args in (("ips", "list", "-a", "ghost"), ("status", "-a", "ghost"),
                 ("status", "-a", "ghost", "--json"), ("machines", "list", "-a", "ghost"),
                 ("config", "show", "-a", "ghost")):
        p = d.cli(*args, check=False)
        assert one_error_line(p) == f"Error: {api_error}", (args, p.stderr)
        assert p.stderr == f"Error: {api_error}\n", (args, p.stderr)
        assert p.stdout == "", (args, p.stdout)


def test_release_v4_refuses_new_connections(st):
    d = st.daemon
    v4 = st.need("v4", "test_allocate_v4_with_yes_and_v6")
    assert st.deployed, "needs test_deploy_with_image"
    assert_tls13(v4, st.public_port)
    p = d.cli("ips", "release", v4, "-a", APP)
    assert p.stdout == f"Released {v4} from {APP}\n", p.stdout
    listed = {i["address"] for i in json.loads(d.cli("ips", "list", "-a", APP, "--json").stdout)}
    assert v4 not in listed

    def refused():
        return psql(v4, st.public_port, "-c", "SELECT 1", check=False).returncode != 0

    wait_until(refused, 10, interval=0.1, what=f"a new connection to released {v4} to fail")
    # And it stays refused.
    assert psql(v4, st.public_port, "-c", "SELECT 1", check=False).returncode != 0
    # The app's other address keeps serving.
    if st.v6_deliverable:
        assert_tls13(st.v6, st.public_port)


# ------------------------------------------------------------------------------ machines' health

HEALTH_APP = "healthdb"
DEAD_MACHINE = "127.0.0.213"  # nothing listens there: Postgres listens on 127.0.0.1 and ::1


def machine_rows(d, app: str) -> dict[str, list[str]]:
    """machines list as {address: [ID, ADDRESS, HEALTH, ROLE, SESSIONS, LAST CHECK, ...]}."""
    p = d.cli("machines", "list", "-a", app)
    assert p.stdout.splitlines()[0].split() == ["ID", "ADDRESS", "HEALTH", "ROLE", "SESSIONS",
                                                "LAST", "CHECK", "REGION", "CREATED", "AT"], \
        p.stdout
    return {r[1]: r for r in table_rows(p.stdout)}


def test_machines_list_and_status_show_health_role_and_sessions(st):
    """A real Postgres machine and an address where nothing listens, checked every second:
    machines list and status -a say healthy/unhealthy, the role the edge learned from a login
    (in_hot_standby), the sessions open now and the last check; --json carries the fields."""
    import psycopg
    d = st.daemon
    d.cli("apps", "create", HEALTH_APP)
    try:
        d.cli("machines", "add", "127.0.0.1", "-a", HEALTH_APP)
        d.cli("machines", "add", DEAD_MACHINE, "-a", HEALTH_APP)
        port = free_port()
        fly = d.workdir / "health.toml"
        fly.write_text(harness.pg_tls_fly_toml(st.pg.port, port, app=HEALTH_APP) +
                       '\n[[services.tcp_checks]]\n  interval = "1s"\n  timeout = "500ms"\n'
                       '  grace_period = "1s"\n')
        p = d.cli("deploy", "-c", str(fly), "-a", HEALTH_APP)
        assert re.fullmatch(r"Release v\d+ created\n", p.stdout), p.stdout + p.stderr
        assert "tcp_checks" not in p.stderr, p.stderr  # acted on: no "not acted on" warning
        ip = json.loads(d.cli("ips", "allocate-v4", "--yes", "-a", HEALTH_APP, "--json").stdout)
        v4 = ip[0]["address"] if isinstance(ip, list) else ip["address"]

        def checked():
            rows = machine_rows(d, HEALTH_APP)
            live, dead = rows.get("127.0.0.1"), rows.get(DEAD_MACHINE)
            if not live or not dead:
                return None
            if live[2] == "healthy" and live[5].startswith("passing (") and \
                    dead[2] == "unhealthy" and dead[5].startswith("failing: "):
                return rows
            return None

        # Grace 1 s, then a check every second: well within 10 s.
        rows = wait_until(checked, 10, interval=0.2,
                          what="the checks to find 127.0.0.1 healthy and the dead address not")
        assert rows[DEAD_MACHINE][3] == "unknown" and rows[DEAD_MACHINE][4] == "0", rows

        # A session through the edge: the login tells the edge the machine is a primary, and the
        # machine counts it while it is open.
        session = psycopg.connect(dsn(sslmode="require", host=v4, port=port, dbname="app",
                                      user="alice", password="alice-secret"), connect_timeout=10)
        try:
            assert session.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False

            def learned():
                r = machine_rows(d, HEALTH_APP)["127.0.0.1"]
                return r if r[3] == "primary" and r[4] == "1" else None

            wait_until(learned, 5, interval=0.1, what="role primary and 1 session on 127.0.0.1")

            p = d.cli("status", "-a", HEALTH_APP)
            lines = on_terminal(p.stdout)
            assert "Machines" in lines, lines
            live = [ln.split() for ln in lines if "127.0.0.1" in ln.split()]
            dead = [ln.split() for ln in lines if DEAD_MACHINE in ln.split()]
            assert len(live) == 1 and live[0][1:5] == ["127.0.0.1", "healthy", "primary", "1"], \
                lines
            assert live[0][5] == "passing", lines
            assert len(dead) == 1 and dead[0][1:4] == [DEAD_MACHINE, "unhealthy", "unknown"], \
                lines
            assert dead[0][5] == "failing:", lines

            doc = json.loads(d.cli("status", "-a", HEALTH_APP, "--json").stdout)
            by_address = {m["address"]: m for m in doc["machines"]}
            m = by_address["127.0.0.1"]
            assert (m["health"], m["role"], m["sessions"], m["last_check"]) == \
                ("healthy", "primary", 1, "passing"), m
            assert m["services"] and m["services"][0]["port"] == st.pg.port, m
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["last_check_at"]), m
            dead_doc = by_address[DEAD_MACHINE]
            assert dead_doc["health"] == "unhealthy", dead_doc
            assert dead_doc["last_check"].startswith("failing: "), dead_doc
            listed = json.loads(d.cli("machines", "list", "-a", HEALTH_APP, "--json").stdout)
            assert {x["address"]: x["health"] for x in listed} == {
                "127.0.0.1": "healthy", DEAD_MACHINE: "unhealthy"}, listed

            # /metrics has the health board's and admission control's series besides the
            # edge's counters.
            code, text = d.api("GET", "/metrics")
            assert code == 200, text
            lines = set(text.splitlines())
            live_labels = f'app="{HEALTH_APP}",machine="127.0.0.1:{st.pg.port}"'
            dead_labels = f'app="{HEALTH_APP}",machine="{DEAD_MACHINE}:{st.pg.port}"'
            assert f"drawbridge_machine_healthy{{{live_labels}}} 1" in lines, text
            assert f"drawbridge_machine_healthy{{{dead_labels}}} 0" in lines, text
            assert f"drawbridge_machine_sessions{{{live_labels}}} 1" in lines, text
            refusals = 'drawbridge_admission_refusals_total{reason="max_connections"} '
            assert any(ln.startswith(refusals) for ln in lines), text
            assert "drawbridge_connections_accepted_total" in text, text
        finally:
            session.close()
        # The session's end is counted down.
        wait_until(lambda: machine_rows(d, HEALTH_APP)["127.0.0.1"][4] == "0", 5, interval=0.1,
                   what="the session count to go back to 0")
    finally:
        d.cli("apps", "destroy", HEALTH_APP, "--yes", check=False)


def test_serve_refuses_admission_flags_out_of_range(st, tmp_path):
    """Each new serve flag: shown in --help with its default; a negative or absurd value is
    refused before anything starts, with the flag named, as other bad serve flags are."""
    binary = str(st.daemon.bin)
    help_text = run([binary, "serve", "--help"], timeout=30).stdout
    for flag, default in [("--max-connections", "100000"), ("--max-handshakes-in-flight", "4096"),
                          ("--max-connections-per-source", "1000"),
                          ("--tls-handshakes-per-second-per-source", "500"),
                          ("--cancels-per-second-per-source", "50"),
                          ("--hard-limit-wait-ms", "2000")]:
        assert re.search(rf"{re.escape(flag)} [^\n]*=({default})\n", help_text), (flag, help_text)
    bad_threads = run([binary, "serve", "--threads", "0"], timeout=30, check=False)
    for flag, value in [("--max-connections", "-1"), ("--max-connections", "0"),
                        ("--max-handshakes-in-flight", "-5"),
                        ("--max-connections-per-source", "-1"),
                        ("--tls-handshakes-per-second-per-source", "-2"),
                        ("--tls-handshakes-per-second-per-source", "nan"),
                        ("--cancels-per-second-per-source", "1e12"),
                        ("--hard-limit-wait-ms", "-1"), ("--hard-limit-wait-ms", "99999999")]:
        # The data dir is never created: the flags are refused before anything starts.
        p = run([binary, "serve", "--data-dir", str(tmp_path / "never"), flag, value], timeout=30,
                check=False)
        assert p.returncode == bad_threads.returncode != 0, (flag, value, p.returncode, p.stderr)
        assert f"{flag}: Value {value} not in range" in p.stderr, (flag, value, p.stderr)
        assert not (tmp_path / "never").exists()


def test_apps_destroy(st):
    d = st.daemon
    p = d.cli("apps", "destroy", APP, "--yes")
    assert p.stdout == f"Destroyed app {APP}\n", p.stdout
    assert json.loads(d.cli("apps", "list", "--json").stdout) == []
    line = one_error_line(d.cli("ips", "list", "-a", APP, check=False))
    assert APP in line, line
