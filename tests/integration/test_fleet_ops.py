"""Operating a fleet (issue 13): the serve flags of fleet mode, what `status`, `nodes list` and
/metrics say about each node and its store (also while etcd is down), writes refused at once
with the store named while etcd is down, Idempotency-Key, and public ports shared between the
nodes of one fleet on one host but never with another process.

Everything runs against real etcd (Debian's etcd-server, members on loopback started here by
tests/integration/etcd_cluster.py) and the real daemon, driven through its CLI and admin API.
Each test keeps its fleet under an etcd prefix of its own. Nothing here skips: a missing
binary, etcd or Postgres fails.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \\
      tests/integration/test_fleet_ops.py
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import harness
from etcd_cluster import EtcdCluster, etcd  # noqa: F401  (the module's 3-member cluster)
from harness import PSQL, dsn, free_port, libpq_env, run, wait_until

DOMAIN = "drawbridge.test"
# Pools of this suite only (other suites use 127.0.10/40/50/60/61.x and fd00:db:1/2/40/50/60/61::).
V4_POOL, V6_POOL = "127.0.72.0/24", "fd00:db:72::/64"
# How long a port may take to be picked up: the edge retries every 5 s, a node's record is
# written every 2 s.
RETRY_WAIT_S = 25
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ------------------------------------------------------------------------------ helpers


def make_secret(d: Path, name: str = "fleet.secret") -> Path:
    """A fleet secret as the docs say to make one: 32 random bytes, base64, mode 0600."""
    path = d / name
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(path, 0o600)
    return path


class Fleet:
    """The nodes of one fleet: one etcd prefix, one secret, one pool; each node its own data
    dir, admin API port and name."""

    def __init__(self, cluster: EtcdCluster, workdir: Path):
        self.cluster = cluster
        self.workdir = workdir
        self.prefix = f"/it-ops-{uuid.uuid4().hex[:10]}/"
        self.secret = make_secret(workdir)
        self.nodes: list[harness.DrawbridgeDaemon] = []

    def node(self, name: str, secret: Path | None = None) -> harness.DrawbridgeDaemon:
        d = self.workdir / name
        d.mkdir()
        args = ("--store", self.cluster.url, "--node", name, "--fleet-secret-file",
                str(secret or self.secret), "--etcd-prefix", self.prefix)
        n = harness.DrawbridgeDaemon(d, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN,
                                     extra_args=args)
        self.nodes.append(n)
        return n

    def start(self, name: str) -> harness.DrawbridgeDaemon:
        n = self.node(name)
        n.start()
        return n

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="drawbridge-it-fleet-ops-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fleet(etcd, workdir):  # noqa: F811
    f = Fleet(etcd, workdir)
    try:
        yield f
    finally:
        f.stop()


def status(n: harness.DrawbridgeDaemon) -> dict:
    return json.loads(n.cli("status", "--json", timeout=10).stdout)


def metrics(n: harness.DrawbridgeDaemon) -> dict[str, float]:
    code, body = n.api("GET", "/metrics")
    assert code == 200, body
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def nodes_json(n: harness.DrawbridgeDaemon) -> list[dict]:
    return json.loads(n.cli("nodes", "list", "--json", timeout=10).stdout)


def api_with_key(n: harness.DrawbridgeDaemon, method: str, path: str, body: dict | None,
                 key: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {n.token()}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    req = urllib.request.Request(
        f"http://127.0.0.1:{n.api_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(), headers=headers)
    try:
        with _NO_PROXY.open(req, timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def serve_outcome(args: list[str], cwd: Path, timeout: float = 30.0) -> tuple[str, str, int | None]:
    """Runs `drawbridge serve ARGS`: ("exited", log, rc) or ("ready", log, None) (then stopped)."""
    log = cwd / f"serve-{uuid.uuid4().hex[:8]}.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([str(harness.drawbridge_bin()), "serve", *args], stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if p.poll() is not None:
                return "exited", log.read_text(errors="replace"), p.returncode
            if "drawbridge: ready" in log.read_text(errors="replace"):
                return "ready", log.read_text(errors="replace"), None
            time.sleep(0.05)
        raise AssertionError(f"serve {args} neither exited nor got ready in {timeout}s\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
    finally:
        if p.poll() is None:
            harness.stop_pid(p.pid)
            p.wait(10)


def add_app(n: harness.DrawbridgeDaemon, app: str) -> str:
    """An app with the session's Postgres as its machine and a dedicated IPv4: the address."""
    n.cli("apps", "create", app)
    n.cli("machines", "add", "127.0.0.1", "-a", app)
    return json.loads(n.cli("ips", "allocate-v4", "--yes", "-a", app, "--json").stdout)["address"]


def deploy(n: harness.DrawbridgeDaemon, app: str, pg_port: int,
           public_port: int) -> subprocess.CompletedProcess:
    path = n.workdir / f"{app}.toml"
    path.write_text(harness.pg_tls_fly_toml(pg_port, public_port, app=app))
    return n.cli("deploy", "-a", app, "-c", str(path), check=False)


def listener(n: harness.DrawbridgeDaemon, port: int) -> dict | None:
    for entry in status(n).get("listeners", []):
        if entry.get("port") == port:
            return entry
    return None


def wait_listening(n: harness.DrawbridgeDaemon, port: int) -> None:
    def listening():
        entry = listener(n, port)
        return entry is not None and entry["state"] == "listening"

    wait_until(listening, RETRY_WAIT_S, interval=0.25,
               what=f"port {port} listening on {n.workdir.name} (status: {status(n)})")


def psql_select(host: str, port: int, check: bool = True) -> subprocess.CompletedProcess:
    conninfo = dsn(sslmode="require", host=host, port=port, dbname="app", user="alice",
                   password="alice-secret", connect_timeout=10)
    return run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c",
                "SELECT 40 + 2"], timeout=60, check=check, env=libpq_env())


def reuseport_holder(port: int) -> socket.socket:
    """A plain Python listener on 0.0.0.0:`port` that sets SO_REUSEPORT, as the edge's own
    listeners do: the kernel would let a node join it silently."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    return s


# ------------------------------------------------------------------------------ flags


def test_bad_fleet_flags_exit_1_with_a_message(workdir, etcd):  # noqa: F811
    secret = make_secret(workdir)
    loose = workdir / "loose.secret"
    loose.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(loose, 0o644)
    base = ["--data-dir", str(workdir / "data"), "--api-port", "0", "--dns-port", "0",
            "--v4-pool", V4_POOL, "--v6-pool", V6_POOL]
    cases = [
        (["--store", etcd.url], "needs --fleet-secret-file"),
        (["--store", etcd.url, "--fleet-secret-file", str(secret), "--node", "Bad_Name"],
         "--node \"Bad_Name\" is not a node name"),
        (["--store", "etcd://", "--fleet-secret-file", str(secret)], "--store"),
        (["--store", "etcd://127.0.0.1:notaport", "--fleet-secret-file", str(secret)],
         "--store"),
        (["--store", "postgres://127.0.0.1:5432", "--fleet-secret-file", str(secret)],
         "unknown store"),
        (["--fleet-secret-file", str(secret)], "--fleet-secret-file is for fleet mode"),
        (["--etcd-prefix", "/x/"], "--etcd-prefix is for fleet mode"),
        (["--store", etcd.url, "--fleet-secret-file", str(secret), "--etcd-cert",
          str(secret)], "--etcd-cert and --etcd-key together"),
        (["--store", etcd.url, "--fleet-secret-file", str(secret), "--etcd-user", "root"],
         "--etcd-user and --etcd-password-file together"),
        (["--store", etcd.url, "--fleet-secret-file", str(secret), "--etcd-prefix", "nope"],
         "--etcd-prefix \"nope\""),
        (["--store", etcd.url, "--fleet-secret-file", str(secret), "--peer-listen", "nowhere"],
         "--peer-listen \"nowhere\""),
        (["--store", etcd.url, "--fleet-secret-file", str(loose)], "chmod"),
        (["--store", etcd.url, "--fleet-secret-file", str(workdir / "missing")],
         "openssl rand"),
    ]
    for args, needle in cases:
        outcome, log, rc = serve_outcome(base + args, workdir)
        assert outcome == "exited" and rc == 1, (args, outcome, rc, log)
        assert needle in log, (args, needle, log)
        assert "drawbridge: ready" not in log


def test_a_node_with_another_fleet_secret_is_refused(fleet):
    fleet.start("alpha")
    other = make_secret(fleet.workdir, "other.secret")
    stranger = fleet.node("stranger", secret=other)
    outcome, log, rc = serve_outcome(stranger.args, stranger.workdir)
    assert outcome == "exited" and rc == 1, (outcome, rc, log)
    assert "refusing to join" in log and str(other) in log, log
    # The fleet keeps its one check; alpha is unaffected.
    assert status(fleet.nodes[0])["health"] == "ok"


# ------------------------------------------------------------------------------ status, nodes


def assert_fleet_status(n: harness.DrawbridgeDaemon, name: str, cluster: EtcdCluster,
                        health: str) -> dict:
    s = status(n)
    assert s["node"] == name, s
    assert s["store_kind"] == "etcd", s
    assert s["store"].startswith("etcd://"), s
    assert s["store_endpoints"] == cluster.endpoints, s
    assert s["health"] == health and s["degraded"] is (health == "degraded"), s
    assert isinstance(s["applied_revision"], int) and s["applied_revision"] > 0, s
    assert isinstance(s["node_id"], int) and 1 <= s["node_id"] <= 255, s
    return s


def test_status_nodes_list_and_metrics_of_two_nodes(fleet):
    a = fleet.start("alpha")
    b = fleet.start("bravo")
    sa = assert_fleet_status(a, "alpha", fleet.cluster, "ok")
    sb = assert_fleet_status(b, "bravo", fleet.cluster, "ok")
    assert sa["node_id"] != sb["node_id"]
    assert sa["store_error"] == "" and not sa["degraded"]
    # A change through one node is applied by the other: its revision moves on.
    a.cli("apps", "create", "seen")
    wait_until(lambda: status(b)["applied_revision"] > sb["applied_revision"], 5,
               what="bravo to apply alpha's write")

    for n in (a, b):
        nodes = wait_until(lambda: {x["name"]: x for x in nodes_json(n)}
                           if {"alpha", "bravo"} <= {x["name"] for x in nodes_json(n)} else None,
                           10, interval=0.2, what="both nodes in nodes list")
        for name in ("alpha", "bravo"):
            x = nodes[name]
            assert isinstance(x["applied_revision"], int) and x["store_healthy"] is True, x
            assert x["last_seen"] > 0 and x["id"] >= 1, x
        table = n.cli("nodes", "list").stdout
        header = table.splitlines()[0]
        for column in ("NAME", "ID", "LAST SEEN", "REVISION", "STORE", "PORT ERRORS"):
            assert column in header, table
        assert re.search(r"^alpha\s", table, re.M) and re.search(r"^bravo\s", table, re.M), table

    m = metrics(a)
    assert m["drawbridge_store_healthy"] == 1, m
    assert m["drawbridge_store_applied_revision"] > 0, m
    text = a.cli("status").stdout
    assert "Health" in text and "ok" in text and "Applied Revision" in text, text


def test_etcd_down_status_answers_degraded_and_writes_fail_at_once(workdir):
    # A cluster of this test's own: all of it is killed.
    with EtcdCluster(3, prefix="drawbridge-it-etcd-down-") as cluster:
        f = Fleet(cluster, workdir)
        try:
            a = f.start("alpha")
            b = f.start("bravo")
            a.cli("apps", "create", "before")
            wait_until(lambda: any(x["name"] == "before" for x in
                                   json.loads(b.cli("apps", "list", "--json").stdout)),
                       5, what="bravo to see the app")
            before = assert_fleet_status(b, "bravo", cluster, "ok")
            wait_until(lambda: {"alpha", "bravo"} <= {x["name"] for x in nodes_json(a)}, 10,
                       interval=0.2, what="both nodes listed")

            cluster.kill_all()
            wait_until(lambda: status(a)["degraded"] and status(b)["degraded"], 10,
                       interval=0.2, what="both nodes to say degraded")
            for n, name in ((a, "alpha"), (b, "bravo")):
                t0 = time.monotonic()
                s = assert_fleet_status(n, name, cluster, "degraded")
                assert time.monotonic() - t0 < 2, "status answers at once"
                assert s["store_error"], s
                assert s["applied_revision"] >= before["applied_revision"], s
                m = metrics(n)
                assert m["drawbridge_store_healthy"] == 0, m
                names = {x["name"]: x for x in nodes_json(n)}
                assert {"alpha", "bravo"} <= set(names), names
                assert names[name]["store_healthy"] is False, names[name]
                # The state last applied is still served.
                assert any(x["name"] == "before"
                           for x in json.loads(n.cli("apps", "list", "--json").stdout))

                # A write: refused at once, the store named.
                t0 = time.monotonic()
                p = n.cli("apps", "create", f"during-{name}", check=False, timeout=30)
                took = time.monotonic() - t0
                assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
                assert "etcd://" in p.stderr and "unreachable" in p.stderr, p.stderr
                assert took < 2, f"the write took {took:.2f}s to fail"
                t0 = time.monotonic()
                code, body = n.api("POST", "/v1/apps", {"name": f"api-{name}"})
                assert time.monotonic() - t0 < 2
                assert code == 503, (code, body)
                assert "etcd://" in json.loads(body)["error"], body
            table = a.cli("status")
            assert "degraded" in table.stdout and "Warning" in table.stderr, table

            cluster.start_all()
            wait_until(lambda: status(a)["health"] == "ok" and status(b)["health"] == "ok", 20,
                       interval=0.25, what="both nodes healthy again")
            a.cli("apps", "create", "after")
            wait_until(lambda: any(x["name"] == "after" for x in
                                   json.loads(b.cli("apps", "list", "--json").stdout)),
                       5, what="bravo to see the write made after etcd came back")
            names = {x["name"] for x in json.loads(a.cli("apps", "list", "--json").stdout)}
            assert not any(n.startswith(("during-", "api-")) for n in names), names
        finally:
            f.stop()


# ------------------------------------------------------------------------------ idempotency


def test_an_idempotency_key_replayed_on_any_node_does_nothing_twice(fleet):
    a = fleet.start("alpha")
    b = fleet.start("bravo")
    a.cli("apps", "create", "idem")
    key = f"it-{uuid.uuid4().hex}"
    first = api_with_key(a, "POST", "/v1/apps/idem/ips", {"type": "v4"}, key)
    assert first[0] == 201, first
    again = api_with_key(a, "POST", "/v1/apps/idem/ips", {"type": "v4"}, key)
    assert again == first, (first, again)
    # The retry lands on the other node: the same answer, still one address.
    other = api_with_key(b, "POST", "/v1/apps/idem/ips", {"type": "v4"}, key)
    assert other == first, (first, other)
    ips = json.loads(a.cli("ips", "list", "-a", "idem", "--json").stdout)
    assert [ip["address"] for ip in ips] == [json.loads(first[1])["address"]], ips
    # The same key on another request is the client's mistake.
    code, body = api_with_key(b, "POST", "/v1/apps/idem/ips", {"type": "v6"}, key)
    assert code == 422 and "another request" in json.loads(body)["error"], (code, body)
    # Without a key, or with another one, it is done again.
    assert api_with_key(a, "POST", "/v1/apps/idem/ips", {"type": "v4"}, None)[0] == 201
    assert api_with_key(a, "POST", "/v1/apps/idem/ips", {"type": "v4"}, key + "-2")[0] == 201
    assert len(json.loads(a.cli("ips", "list", "-a", "idem", "--json").stdout)) == 3

    # The CLI sends a key of its own with each request that changes state: each is recorded.
    records = fleet.cluster.get_prefix(fleet.prefix + "requests/")
    b.cli("apps", "create", "by-cli")
    after = fleet.cluster.get_prefix(fleet.prefix + "requests/")
    new = [v for k, v in after.items() if k not in records]
    assert len(new) == 1 and "POST /v1/apps" in new[0], new


# ------------------------------------------------------------------------------ shared ports


def test_public_ports_are_shared_by_the_fleet_never_with_another_process(fleet, pg):
    port = free_port()
    a = fleet.start("alpha")
    addr = add_app(a, "shared")
    held = reuseport_holder(port)
    try:
        p = deploy(a, "shared", pg.port, port)
        assert p.returncode == 1, p.stdout + p.stderr
        wanted = f"Error: port {port} is not listening: "
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith(wanted)]
        assert lines and "not a node of this fleet" in lines[0], p.stderr
        entry = listener(a, port)
        assert entry["state"] == "failed" and "not a node of this fleet" in entry["error"], entry

        def reported():
            me = [x for x in nodes_json(a) if x["name"] == "alpha"][0]
            return str(port) in me.get("port_errors", {})
        wait_until(reported, 10, interval=0.2, what="the port error in nodes list")
        assert f"{port}: in use by a process that is not a node of this fleet" in \
            a.cli("nodes", "list").stdout
        # Every connection to the port reaches the python listener: no node joined it (with
        # SO_REUSEPORT the kernel would hand a joined node about half of them).
        # The client closes first, so no connection of the python listener's lingers in
        # TIME_WAIT on the port afterwards.
        held.settimeout(5)
        for _ in range(10):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn, _ = held.accept()
            client.close()
            conn.settimeout(5)
            assert conn.recv(1) == b""
            conn.close()
    finally:
        held.close()
    wait_listening(a, port)
    assert psql_select(addr, port).stdout.strip() == "42"

    # A second node of the fleet on this host joins alpha's port.
    b = fleet.start("bravo")
    wait_listening(b, port)
    assert f"port {port}: served by node alpha" in b.log(), b.log()[-3000:]
    for _ in range(8):
        assert psql_select(addr, port).stdout.strip() == "42"
    # With alpha gone, bravo alone serves the port.
    a.stop()
    for _ in range(4):
        assert psql_select(addr, port).stdout.strip() == "42"
