"""An operator's first week, items 1, 2 and 6 (issue 12): one daemon per data dir, public ports
that another process serves are reported instead of shared, deploy says which ports it could
not open, and flags that would do something unsafe or false are refused.

Everything runs against the real daemon (`drawbridge serve`), driven through its CLI, with the
session's real PostgreSQL 15 as the machine and psql as the client. What changes a host's
routing table runs in a network namespace the test creates (`ip netns add`) and deletes.
Nothing here skips: a missing binary, Postgres, psql or `ip` fails.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      tests/integration/test_ports_and_locks.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import harness
from harness import PSQL, dsn, free_port, libpq_env, run, wait_until

DOMAIN = "drawbridge.test"
# Pools of this suite only (other suites use 127.0.10/40/50.x and fd00:db:1/2/40/50::).
V4_POOL_A, V6_POOL_A = "127.0.60.0/24", "fd00:db:60::/64"
V4_POOL_B, V6_POOL_B = "127.0.61.0/24", "fd00:db:61::/64"
# How long a freed port may take to be picked up: the daemon retries every 5 s.
RETRY_WAIT_S = 20


# ------------------------------------------------------------------------------ helpers


def new_daemon(prefix: str, v4_pool: str = V4_POOL_A, v6_pool: str = V6_POOL_A,
               extra_args: tuple[str, ...] = ()) -> harness.DrawbridgeDaemon:
    workdir = Path(tempfile.mkdtemp(prefix=f"drawbridge-it-{prefix}-"))
    return harness.DrawbridgeDaemon(workdir, v4_pool=v4_pool, v6_pool=v6_pool, domain=DOMAIN,
                                    extra_args=extra_args)


class Serve:
    """One `drawbridge serve` started by hand (optionally inside a network namespace): either
    it exits (a refused start) or it says it is ready. Stopped by PID."""

    def __init__(self, args: list[str], workdir: Path, netns: str | None = None):
        self.logfile = workdir / f"serve-{uuid.uuid4().hex[:8]}.log"
        cmd = [str(harness.drawbridge_bin()), "serve", *args]
        if netns:
            # `ip netns exec` execs the command in place: the PID is the daemon's.
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.cmd = cmd
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=workdir)

    def log(self) -> str:
        return harness.read_whole_lines(self.logfile)

    def outcome(self, timeout: float = 30.0) -> str:
        """"exited" or "ready", whichever comes first; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "exited"
            if "drawbridge: ready" in self.log():
                return "ready"
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{self.cmd} neither exited nor got ready in {timeout}s\n"
                             f"{self.log()[-3000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            harness.stop_pid(self.proc.pid, signal.SIGTERM, timeout=30)
        return self.proc.wait(10)


def expect_refused(s: Serve, *needles: str, any_code: bool = False) -> str:
    """The daemon must exit 1 (with `any_code`, any failing code: CLI11's for a bad flag)
    before it is ready, its log naming every needle."""
    outcome = s.outcome()
    if outcome == "ready":
        s.stop()
        pytest.fail(f"drawbridge serve started, but should have refused to:\n"
                    f"{s.log()[-3000:]}", pytrace=False)
    if any_code:
        assert s.proc.returncode != 0, (s.proc.returncode, s.log())
    else:
        assert s.proc.returncode == 1, (s.proc.returncode, s.log())
    text = s.log()
    for n in needles:
        assert n in text, f"{n!r} not in the output:\n{text}"
    return text


def psql_select(host: str, port: int, check: bool = True) -> subprocess.CompletedProcess:
    conninfo = dsn(sslmode="require", host=host, port=port, dbname="app", user="alice",
                   password="alice-secret", connect_timeout=10)
    return run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c",
                "SELECT 40 + 2"], timeout=60, check=check, env=libpq_env())


def add_app(d: harness.DrawbridgeDaemon, app: str) -> str:
    """An app with the session's Postgres as its machine and a dedicated IPv4: the address."""
    d.cli("apps", "create", app)
    d.cli("machines", "add", "127.0.0.1", "-a", app)
    ip = json.loads(d.cli("ips", "allocate-v4", "--yes", "-a", app, "--json").stdout)
    return ip["address"]


def deploy(d: harness.DrawbridgeDaemon, app: str, pg_port: int,
           public_port: int) -> subprocess.CompletedProcess:
    """`deploy -c` of the guide's pg_tls service on `public_port`; not checked."""
    path = d.workdir / f"{app}.toml"
    path.write_text(harness.pg_tls_fly_toml(pg_port, public_port, app=app))
    return d.cli("deploy", "-a", app, "-c", str(path), check=False)


def status(d: harness.DrawbridgeDaemon) -> dict:
    return json.loads(d.cli("status", "--json").stdout)


def listener(d: harness.DrawbridgeDaemon, port: int) -> dict | None:
    for entry in status(d).get("listeners", []):
        if entry.get("port") == port:
            return entry
    return None


def assert_port_refused_by_deploy(p: subprocess.CompletedProcess, port: int,
                                  reason: str) -> None:
    """Deploy's contract for a port it could not open: the release is created and said so, the
    port and the reason are named on stderr, and the command fails."""
    assert p.returncode == 1, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert p.stdout.startswith("Release v") and " created\n" in p.stdout, p.stdout
    wanted = f"Error: port {port} is not listening: "
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(wanted)]
    assert lines, f"no {wanted!r} line on stderr:\n{p.stderr}"
    assert reason in lines[0], (reason, lines)


def assert_failed_in_status(d: harness.DrawbridgeDaemon, port: int, reason: str) -> None:
    entry = listener(d, port)
    assert entry is not None and entry["state"] == "failed", status(d)
    assert reason in entry["error"], entry
    assert port in status(d)["ports"]  # the route table still wants it
    table = d.cli("status")
    assert f"Port {port}" in table.stdout and reason in table.stdout, table.stdout
    assert f"port {port} is not listening" in table.stderr, table.stderr


def wait_listening(d: harness.DrawbridgeDaemon, port: int) -> None:
    def listening():
        entry = listener(d, port)
        return entry is not None and entry["state"] == "listening"

    wait_until(listening, RETRY_WAIT_S, interval=0.25,
               what=f"port {port} to be listening again (status: {status(d)})")


def blocker(port: int) -> socket.socket:
    """A plain listener of another process on 127.0.0.1:`port` (no SO_REUSEPORT)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    return s


def ip_cmd(*args: str, netns: str | None = None) -> str:
    cmd = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    return run(cmd, timeout=30).stdout


@pytest.fixture
def netns():
    """A network namespace of this test, with lo up; deleted afterwards."""
    name = f"drawbridge-it-{uuid.uuid4().hex[:10]}"
    run(["ip", "netns", "add", name], timeout=30)
    try:
        ip_cmd("link", "set", "lo", "up", netns=name)
        yield name
    finally:
        run(["ip", "netns", "del", name], timeout=30, check=False)


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="drawbridge-it-ports-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------ item 1


def test_a_second_daemon_on_the_same_data_dir_is_refused_and_the_first_keeps_its_socket(
        workdir):
    with harness.running(new_daemon("lock")) as a:
        sock = a.data / "admin.sock"
        inode = sock.stat().st_ino
        second = Serve(["--data-dir", str(a.data), "--api-port", str(free_port()),
                        "--dns-port", "0", "--v4-pool", V4_POOL_B, "--v6-pool", V6_POOL_B],
                       workdir)
        try:
            expect_refused(second, f"data dir {a.data} is in use by drawbridge pid "
                                   f"{a.proc.pid}")
        finally:
            second.stop()
        # The first's socket is the one it created, and the CLI still reaches the daemon
        # through it.
        assert sock.exists() and sock.stat().st_ino == inode
        assert a.cli("apps", "list", "--api", f"unix:{sock}").returncode == 0
        assert a.alive()


def test_a_live_admin_socket_is_never_replaced(workdir):
    """Another process serving <data-dir>/admin.sock (not a daemon holding the lock): the daemon
    refuses to start rather than delete it; a stale socket file is replaced."""
    data = workdir / "data"
    data.mkdir(mode=0o700)
    path = str(data / "admin.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen(1)
    inode = os.stat(path).st_ino
    args = ["--data-dir", str(data), "--api-port", "0", "--dns-port", "0",
            "--v4-pool", V4_POOL_B, "--v6-pool", V6_POOL_B]
    s = Serve(args, workdir)
    try:
        expect_refused(s, f"{path} is served by another process")
    finally:
        s.stop()
    assert os.stat(path).st_ino == inode
    # Once nobody accepts on it, it is stale: the daemon replaces it and starts.
    live.close()
    s = Serve(args, workdir)
    try:
        assert s.outcome() == "ready", s.log()
        p = run([str(harness.drawbridge_bin()), "apps", "list", "--api", f"unix:{path}",
                 "--data-dir", str(data)], timeout=30, env=harness.cli_env())
        assert p.returncode == 0, p
    finally:
        assert s.stop() == 0, s.log()
    assert not os.path.exists(path)  # its own socket goes with it


def test_a_port_another_daemon_serves_is_reported_not_shared(pg):
    port = free_port()
    with harness.running(new_daemon("first")) as a:
        addr_a = add_app(a, "first")
        p = deploy(a, "first", pg.port, port)
        assert p.returncode == 0, p.stdout + p.stderr
        psql_select(addr_a, port)

        with harness.running(new_daemon("second", V4_POOL_B, V6_POOL_B)) as b:
            addr_b = add_app(b, "second")
            p = deploy(b, "second", pg.port, port)
            assert_port_refused_by_deploy(p, port, "in use by another process")
            assert_failed_in_status(b, port, "in use by another process")
            assert f"port {port}: not listening: in use by another process" in b.log()

            # Every connection to the first daemon's address reaches it: the second did not
            # join the port (with SO_REUSEPORT the kernel would hand it about half of them,
            # which it could not route).
            for _ in range(12):
                r = psql_select(addr_a, port, check=False)
                assert r.returncode == 0 and r.stdout.strip() == "42", r.stdout + r.stderr

            # Once the first daemon is gone, the second takes the port over by itself.
            a.stop()
            wait_listening(b, port)
            assert psql_select(addr_b, port).stdout.strip() == "42"
            assert f"port {port}: listening" in b.log()


# ------------------------------------------------------------------------------ item 2


def test_deploy_names_a_taken_port_and_the_edge_opens_it_once_free(pg):
    port = free_port()
    with harness.running(new_daemon("taken")) as d:
        addr = add_app(d, "taken")
        held = blocker(port)
        try:
            p = deploy(d, "taken", pg.port, port)
            assert_port_refused_by_deploy(p, port, "in use by another process")
            assert_failed_in_status(d, port, "in use by another process")
            # The release was kept.
            code, body = d.api("GET", "/v1/apps/taken/releases")
            assert code == 200 and len(json.loads(body)) == 1, body
        finally:
            held.close()
        wait_listening(d, port)
        assert psql_select(addr, port).stdout.strip() == "42"
        table = d.cli("status")
        assert f"Port {port}" not in table.stdout and table.stderr == "", table


def test_deploy_on_the_admin_api_port_or_postgres_port_is_reported(pg):
    with harness.running(new_daemon("own")) as d:
        add_app(d, "onapi")
        p = deploy(d, "onapi", pg.port, d.api_port)
        assert_port_refused_by_deploy(p, d.api_port, "admin API")
        assert_failed_in_status(d, d.api_port, "admin API")
        # The API itself still answers on its port.
        assert d.api("GET", "/v1/status")[0] == 200

        add_app(d, "onpg")
        p = deploy(d, "onpg", pg.port, pg.port)
        assert_port_refused_by_deploy(p, pg.port, "in use by another process")
        assert_failed_in_status(d, pg.port, "in use by another process")

        # --json: the answer is printed with its port_errors, and the command still fails.
        p = d.cli("deploy", "-a", "onpg", "-c", str(d.workdir / "onpg.toml"), "--json",
                  check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        answer = json.loads(p.stdout)
        assert answer["port_errors"] == [
            {"port": pg.port, "error": "in use by another process"}], answer


# ------------------------------------------------------------------------------ item 6


@pytest.mark.parametrize("flag", ["--api-port", "--dns-port"])
def test_a_port_flag_out_of_range_is_refused(workdir, flag):
    ports = {"--api-port": "0", "--dns-port": "0", flag: "99999"}
    args = ["--data-dir", str(workdir / "data"), "--v4-pool", V4_POOL_B, "--v6-pool", V6_POOL_B,
            *(x for kv in ports.items() for x in kv)]
    s = Serve(args, workdir)
    try:
        expect_refused(s, flag, "99999", any_code=True)
    finally:
        s.stop()


def test_a_non_loopback_v4_pool_is_refused_without_the_flag(workdir, netns):
    """In a namespace of its own: an unfixed daemon would route the pool to lo."""
    s = Serve(["--data-dir", str(workdir / "data"), "--api-port", "0", "--dns-port", "0",
               "--v4-pool", "10.99.0.0/24", "--v6-pool", V6_POOL_B], workdir, netns=netns)
    try:
        expect_refused(s, "--v4-pool 10.99.0.0/24", "--route-v4-pool")
    finally:
        s.stop()
    assert ip_cmd("route", "show", "table", "local", "exact", "10.99.0.0/24",
                  netns=netns).strip() == ""


def test_routes_the_daemon_added_are_removed_at_exit_and_others_left(workdir, netns):
    v4, v6, theirs = "10.99.0.0/24", "fd00:db:62::/64", "fd00:db:63::/64"

    def local_route(prefix: str) -> str:
        family = "-6" if ":" in prefix else "-4"
        return ip_cmd(family, "route", "show", "table", "local", "exact", prefix,
                      netns=netns).strip()

    assert local_route(v4) == "" and local_route(v6) == ""
    args = ["--api-port", "0", "--dns-port", "0", "--route-v4-pool", "--v4-pool", v4]
    s = Serve(["--data-dir", str(workdir / "a"), *args, "--v6-pool", v6], workdir, netns=netns)
    try:
        assert s.outcome() == "ready", s.log()
        assert local_route(v4).startswith(f"local {v4} dev lo"), local_route(v4)
        assert local_route(v6).startswith(f"local {v6} dev lo"), local_route(v6)
    finally:
        assert s.stop() == 0, s.log()
    assert local_route(v4) == "" and local_route(v6) == "", s.log()

    # A route that was there before the daemon is used and left in place.
    ip_cmd("-6", "route", "add", "local", theirs, "dev", "lo", netns=netns)
    s = Serve(["--data-dir", str(workdir / "b"), *args, "--v6-pool", theirs], workdir,
              netns=netns)
    try:
        assert s.outcome() == "ready", s.log()
    finally:
        assert s.stop() == 0, s.log()
    assert local_route(theirs).startswith(f"local {theirs} dev lo"), s.log()
    assert local_route(v4) == "", s.log()
