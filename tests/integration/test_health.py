"""Machines the edge can trust (issue 14): health checks, passive health, "no healthy machine",
Fly's concurrency limits, and roles learned from `in_hot_standby` (docs/fly-toml.md,
docs/connection.md).

Against the real daemon (`drawbridge serve` in control-plane mode), driven through its CLI and
admin API, in front of real PostgreSQL 15 clusters on loopback addresses of their own
(pg_cluster.py): two independent clusters on 127.0.0.23 and 127.0.0.24, a primary on 127.0.0.21
with a streaming standby on 127.0.0.22 (`pg_basebackup -R`), and 127.0.0.25 where nothing
listens. Every machine of a service listens on its internal_port, so the clusters of a pair
share one port. Clients: psql (the message a user sees), psycopg, and the byte-level client of
pgwire.py where the SQLSTATE or the timing matters. Which cluster served a session is what it
says itself: `inet_server_addr()`.

One daemon for the module (each test deploys an app of its own); each test leaves the clusters
running as it found them. Nothing here skips.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      tests/integration/test_health.py
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from pathlib import Path

import pytest

import harness
import pg_cluster
import pgwire as w
from harness import dsn, free_port, libpq_env, run, wait_until

DOMAIN = "drawbridge.test"
V4_POOL, V6_POOL = "127.0.140.0/24", "fd00:db:140::/64"
PRIMARY_HOST, STANDBY_HOST = "127.0.0.21", "127.0.0.22"
HOST_A, HOST_B = "127.0.0.23", "127.0.0.24"
DEAD_HOST = "127.0.0.25"  # nothing listens there

# The checks of every service that has any: Fly's spelling, 1 s apart.
CHECK_INTERVAL = 1.0
TCP_CHECKS = """  [[services.tcp_checks]]
    interval = "1s"
    timeout = "500ms"
    grace_period = "1s"
"""
# How long after a machine stops (or starts) the edge must have seen it: one interval, the
# check's timeout, and slack for a loaded CI machine.
NOTICE_S = 3.0


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pair():
    """Two independent clusters on HOST_A and HOST_B, one port."""
    port = free_port()
    a = pg_cluster.init_cluster("health-a", HOST_A, port)
    try:
        b = pg_cluster.init_cluster("health-b", HOST_B, port)
    except BaseException:
        pg_cluster.destroy(a)
        raise
    try:
        yield a, b
    finally:
        pg_cluster.destroy(a)
        pg_cluster.destroy(b)


@pytest.fixture(scope="module")
def replicated():
    """A primary on PRIMARY_HOST and its streaming standby on STANDBY_HOST, one port."""
    primary = pg_cluster.init_cluster("health-primary", PRIMARY_HOST, free_port())
    try:
        standby = pg_cluster.standby_of(primary, "health-standby", STANDBY_HOST)
    except BaseException:
        pg_cluster.destroy(primary)
        raise
    try:
        yield primary, standby
    finally:
        pg_cluster.destroy(primary)
        pg_cluster.destroy(standby)


@pytest.fixture(scope="module")
def daemon():
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-health-"))
    d = harness.DrawbridgeDaemon(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN)
    with harness.running(d):
        yield d


@pytest.fixture
def restart_when_done(pair):
    """Whatever a test stopped of `pair` runs again after it."""
    yield
    for node in pair:
        if not node.running():
            node.start()


# ------------------------------------------------------------------------------ helpers


def service(internal_port: int, port: int, checks: bool = True, soft: int | None = None,
            hard: int | None = None, target: str | None = None) -> str:
    out = f"""[[services]]
  internal_port = {internal_port}
  protocol = "tcp"
  [[services.ports]]
    handlers = ["pg_tls"]
    port = {port}
"""
    if checks:
        out += TCP_CHECKS
    if soft is not None or hard is not None:
        out += '  [services.concurrency]\n    type = "connections"\n'
        if soft is not None:
            out += f"    soft_limit = {soft}\n"
        if hard is not None:
            out += f"    hard_limit = {hard}\n"
    if target is not None:
        out += f'  [services.drawbridge]\n    target_session_attrs = "{target}"\n'
    return out


def app_toml(app: str, *services: str) -> str:
    return f'app = "{app}"\nprimary_region = "local"\n\n' + "\n".join(services)


def deploy(d: harness.DrawbridgeDaemon, app: str, machines: list[str], toml: str,
           create: bool = True) -> str:
    """Creates `app` (unless not `create`) with `machines`, deploys `toml`, allocates a
    dedicated IPv4: returns it."""
    if create:
        d.cli("apps", "create", app)
    for m in machines:
        d.cli("machines", "add", m, "-a", app)
    path = d.workdir / f"{app}.toml"
    path.write_text(toml)
    d.cli("deploy", "-c", str(path), "-a", app)
    p = d.cli("ips", "allocate-v4", "--yes", "-a", app, "--json")
    return json.loads(p.stdout)["address"]


def conninfo(ip: str, port: int, **kw) -> str:
    base = dict(host=ip, port=port, sslmode="require", user="alice", password="alice-secret",
                dbname="app")
    base.update(kw)
    return dsn(**base)


def psql(ip: str, port: int, sql: str, check: bool = True):
    return run([harness.PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo(ip, port),
                "-c", sql], check=check, env=libpq_env(), timeout=30)


def served_by(ip: str, port: int) -> str:
    """The address of the cluster a new psql session through the edge lands on."""
    return psql(ip, port, "SELECT host(inet_server_addr())").stdout.strip()


class Session:
    """A logged-in pg_tls session through the edge (pgwire, user probe), and where it landed."""

    def __init__(self, ip: str, port: int, name: str | None = None, timeout: float = 10):
        self.name = name or harness.marker("hs")
        self.conn = w.ssl_request_tls(ip, port, timeout=timeout)
        try:
            self.login = w.login_trust(self.conn, "probe", "app",
                                       {"application_name": self.name}, timeout=timeout)
            self.host = self.query("SELECT host(inet_server_addr())")[0][0]
        except BaseException:
            self.conn.close()
            raise

    def query(self, sql: str) -> list[list[str]]:
        return w.simple_query(self.conn, sql)

    def close(self) -> None:
        try:
            self.conn.send(w.TERMINATE)
        except OSError:
            pass
        self.conn.close()


def login_answer(ip: str, port: int, timeout: float = 10) -> tuple[dict[str, str] | None, float]:
    """A pgwire login attempt: (None, s) when it reached ReadyForQuery, else (the error's
    fields, s), s being the seconds from the StartupMessage to the answer."""
    with w.ssl_request_tls(ip, port, timeout=timeout) as c:
        c.send(w.startup_message({"user": "probe", "database": "app",
                                  "application_name": harness.marker("la")}))
        t0 = time.monotonic()
        msgs = c.read_until(b"Z", timeout)
        elapsed = time.monotonic() - t0
        if msgs[-1][0] == b"E":
            return w.parse_error_fields(msgs[-1][1]), elapsed
        return None, elapsed


def lines(d: harness.DrawbridgeDaemon, needle: str, since: int = 0) -> list[str]:
    return [ln for ln in d.log()[since:].splitlines() if needle in ln]


def unreachable(d, app: str, host: str, port: int, since: int = 0) -> list[str]:
    return lines(d, f"app {app}: machine {host} port {port} unreachable", since)


def metrics(d: harness.DrawbridgeDaemon) -> list[tuple[str, dict[str, str], float]]:
    """/metrics as (name, labels, value) triples."""
    status, text = d.api("GET", "/metrics")
    assert status == 200, text
    out = []
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", ln)
        assert m, f"not a Prometheus sample line: {ln!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(samples, name: str, **labels) -> float | None:
    found = [v for n, lb, v in samples if n == name and all(lb.get(k) == v2
                                                             for k, v2 in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def machine_rows(d: harness.DrawbridgeDaemon, app: str) -> dict[str, list[str]]:
    """`machines list -a APP`: the words of the row of each address."""
    out = d.cli("machines", "list", "-a", app).stdout
    rows = {}
    for ln in out.splitlines():
        words = ln.split()
        for addr in words:
            if re.fullmatch(r"127\.0\.0\.\d+", addr):
                rows[addr] = words
    return rows


def status_rows(d: harness.DrawbridgeDaemon, app: str) -> dict[str, list[str]]:
    """`status -a APP`: the words of the line of each machine address."""
    out = d.cli("status", "-a", app).stdout
    rows = {}
    for ln in out.splitlines():
        words = ln.split()
        for addr in words:
            if re.fullmatch(r"127\.0\.0\.\d+", addr):
                assert addr not in rows, f"two lines for {addr}:\n{out}"
                rows[addr] = words
    return rows


def api_machines(d: harness.DrawbridgeDaemon, app: str) -> dict[str, dict]:
    status, body = d.api("GET", f"/v1/apps/{app}/machines")
    assert status == 200, body
    doc = json.loads(body)
    items = doc if isinstance(doc, list) else doc.get("machines", doc)
    return {m["address"]: m for m in items}


def sleep_until(t: float) -> None:
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


# ------------------------------------------------------------------------------ health


def test_a_stopped_machine_gets_no_new_connections_and_comes_back(daemon, pair,
                                                                  restart_when_done):
    d = daemon
    a, b = pair
    app, port = "health", free_port()
    ip = deploy(d, app, [a.host, b.host], app_toml(app, service(a.port, port)))
    assert {served_by(ip, port) for _ in range(6)} == {a.host, b.host}
    # One session on each machine (two sessions, least loaded first).
    sessions = [Session(ip, port), Session(ip, port)]
    try:
        assert sorted(s.host for s in sessions) == [a.host, b.host]
        on_b = next(s for s in sessions if s.host == b.host)

        a.stop_fast()
        stopped = time.monotonic()
        sleep_until(stopped + NOTICE_S)
        mark = len(d.log())
        landed = [served_by(ip, port) for _ in range(10)]
        assert landed == [b.host] * 10, landed
        # No new connection was even tried on the stopped machine: the check had seen it.
        assert unreachable(d, app, a.host, a.port, mark) == [], d.log()[mark:]
        # Its state change is logged once, not once per probe.
        down = lines(d, f"app {app}: machine {a.host} port {a.port} unhealthy")
        assert len(down) == 1, down
        # The session on the live machine is untouched.
        assert on_b.query("SELECT 'still here'") == [["still here"]]

        m = metrics(d)
        assert metric(m, "drawbridge_machine_healthy", app=app, machine=a.address) == 0, m
        assert metric(m, "drawbridge_machine_healthy", app=app, machine=b.address) == 1, m
        # The session that was on the stopped machine has ended; the one on b counts.
        wait_until(lambda: metric(metrics(d), "drawbridge_machine_sessions", app=app,
                                  machine=b.address) == 1, 5,
                   what=f"one session counted on {b.address}")
        rows = machine_rows(d, app)
        assert "unhealthy" in rows[a.host] and "healthy" in rows[b.host], rows
        rows = status_rows(d, app)
        assert "unhealthy" in rows[a.host] and "healthy" in rows[b.host], rows
        api = api_machines(d, app)
        assert api[a.host]["health"] == "unhealthy", api
        assert api[b.host]["health"] == "healthy", api
        assert api[b.host]["sessions"] == 1, api

        a.start()
        started = time.monotonic()
        sleep_until(started + NOTICE_S)
        # b still holds the session above, so a (none) is the least loaded: it gets them all.
        landed = [served_by(ip, port) for _ in range(10)]
        assert landed == [a.host] * 10, landed
        assert len(lines(d, f"app {app}: machine {a.host} port {a.port} healthy again")) == 1, \
            d.log()[-3000:]
        assert "unhealthy" not in machine_rows(d, app)[a.host]
    finally:
        for s in sessions:
            s.close()


def test_no_healthy_machine_is_57P03_naming_the_app(daemon, pair, restart_when_done):
    d = daemon
    a, b = pair
    app, port = "allgone", free_port()
    ip = deploy(d, app, [a.host, b.host], app_toml(app, service(a.port, port)))
    assert served_by(ip, port) in (a.host, b.host)
    a.stop_fast()
    b.stop_fast()
    sleep_until(time.monotonic() + NOTICE_S)
    mark = len(d.log())
    fields, _ = login_answer(ip, port)
    assert fields is not None, "logged in with every machine stopped"
    harness.fatal(fields, "57P03")
    assert fields["M"] == f'app "{app}" has no healthy machine', fields
    text = " ".join(fields.values())
    assert "127.0.0." not in text and str(a.port) not in text, fields
    p = psql(ip, port, "SELECT 1", check=False)
    assert p.returncode != 0
    assert f'FATAL:  app "{app}" has no healthy machine' in p.stderr, p.stderr
    assert "127.0.0.2" not in p.stderr and f":{a.port}" not in p.stderr, p.stderr
    # No connect was attempted for these clients.
    assert unreachable(d, app, a.host, a.port, mark) == []
    assert unreachable(d, app, b.host, b.port, mark) == []
    assert (metric(metrics(d), "drawbridge_failures_total", reason="no_healthy_machine")
            or 0) >= 2
    a.start()
    b.start()
    sleep_until(time.monotonic() + NOTICE_S)
    assert served_by(ip, port) in (a.host, b.host)


def test_a_dead_machine_costs_one_failed_attempt(daemon, pair):
    """Passive health: a connect that fails marks the machine down at once (no tcp_checks
    configured: Fly's defaults, a check every 15 s)."""
    d = daemon
    a, _ = pair
    app, port = "passive", free_port()
    ip = deploy(d, app, [a.host, DEAD_HOST], app_toml(app, service(a.port, port, checks=False)))
    mark = len(d.log())
    landed = [served_by(ip, port) for _ in range(10)]
    assert landed == [a.host] * 10, landed
    failed = unreachable(d, app, DEAD_HOST, a.port, mark)
    assert len(failed) <= 1, failed
    m = metrics(d)
    assert (metric(m, "drawbridge_machine_connect_failures_total", app=app,
                   machine=f"{DEAD_HOST}:{a.port}") or 0) <= 1, m

    # An app whose only machine is dead: one failed connect, then "no healthy machine" at
    # once for the next clients (the backoff), without trying it again.
    app, port = "lonely", free_port()
    ip = deploy(d, app, [DEAD_HOST], app_toml(app, service(a.port, port, checks=False)))
    mark = len(d.log())
    answers = [login_answer(ip, port)[0] for _ in range(5)]
    assert all(f is not None for f in answers), answers
    assert all(f["C"] in ("08006", "57P03") for f in answers), answers
    assert [f["C"] for f in answers[1:]] == ["57P03"] * 4, answers
    assert answers[-1]["M"] == f'app "{app}" has no healthy machine', answers
    assert len(unreachable(d, app, DEAD_HOST, a.port, mark)) <= 1, d.log()[mark:]


# ------------------------------------------------------------------------------ concurrency


def test_concurrency_limits_spread_wait_and_refuse(daemon, pair):
    d = daemon
    a, b = pair
    app, port = "conc", free_port()
    ip = deploy(d, app, [a.host, b.host],
                app_toml(app, service(a.port, port, soft=1, hard=2)))
    sessions: list[Session] = []
    try:
        sessions += [Session(ip, port), Session(ip, port)]
        assert sorted(s.host for s in sessions) == [a.host, b.host], \
            "two sessions did not go one per machine (least loaded)"
        sessions += [Session(ip, port), Session(ip, port)]
        hosts = [s.host for s in sessions]
        assert hosts.count(a.host) == 2 and hosts.count(b.host) == 2, hosts

        # Every machine at its hard limit: the fifth waits (2 s by default), then 53300.
        fields, waited = login_answer(ip, port)
        assert fields is not None, "a fifth session got in past hard_limit = 2 on both machines"
        harness.fatal(fields, "53300")
        assert f'app "{app}"' in fields["M"] and "too many connections" in fields["M"], fields
        assert 1.5 <= waited < 5.0, waited
        assert "127.0.0." not in " ".join(fields.values()), fields
        m = metrics(d)
        assert (metric(m, "drawbridge_failures_total", reason="machine_hard_limit") or 0) >= 1
        for node in (a, b):
            assert metric(m, "drawbridge_machine_sessions", app=app, machine=node.address) == 2

        # A session that ends during the wait lets the waiter in, on the machine it left.
        result: dict = {}

        def waiter():
            try:
                t0 = time.monotonic()
                s = Session(ip, port)
                result["session"], result["s"] = s, time.monotonic() - t0
            except Exception as exc:  # reported by the main thread
                result["error"] = exc
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        time.sleep(0.5)
        leaving = sessions.pop(0)
        leaving.close()
        t.join(10)
        assert not t.is_alive(), "the waiting client never got an answer"
        assert "error" not in result, result
        sessions.append(result["session"])
        assert result["session"].host == leaving.host, (result["session"].host, leaving.host)
        assert result["s"] < 2.5, result
    finally:
        for s in sessions:
            s.close()


# ------------------------------------------------------------------------------ roles


def test_roles_primary_standby_and_promotion(daemon, replicated):
    d = daemon
    primary, standby = replicated
    app, rw, ro = "roles", free_port(), free_port()
    toml = app_toml(app, service(primary.port, rw, target="read-write"),
                    service(primary.port, ro, target="read-only"))
    d.cli("apps", "create", app)
    path = d.workdir / "roles-validate.toml"
    path.write_text(toml)
    p = d.cli("config", "validate", "-c", str(path))
    assert "Configuration is valid" in p.stdout, p.stdout
    # Only primary_region may warn (kept, not acted on): nothing about the services' keys.
    warnings = [ln for ln in (p.stdout + p.stderr).splitlines() if "Warning" in ln]
    assert all(":2: primary_region:" in ln for ln in warnings), warnings
    bad = toml.replace('"read-only"', '"writable"')
    path.write_text(bad)
    p = d.cli("config", "validate", "-c", str(path), check=False)
    assert p.returncode != 0, p.stdout
    assert "target_session_attrs" in p.stdout + p.stderr, p.stdout + p.stderr

    ip = deploy(d, app, [primary.host, standby.host], toml, create=False)
    # The roles are learned from logins: a read-write client that lands on a machine still of
    # unknown role which turns out to be the standby is told so (57P03) and the role is kept.
    mark = len(d.log())
    outcomes = []
    for _ in range(3):
        p = psql(ip, rw, "SELECT host(inet_server_addr()), pg_is_in_recovery()", check=False)
        outcomes.append((p.returncode, p.stdout.strip(), p.stderr.strip()))
        if p.returncode == 0:
            break
        assert f'FATAL:  app "{app}" has no primary machine available now' in p.stderr, outcomes
        assert "127.0.0." not in p.stderr, p.stderr
    assert outcomes[-1][:2] == (0, f"{primary.host}|f"), outcomes
    assert len(outcomes) <= 2, outcomes
    landed = [psql(ip, rw, "SELECT host(inet_server_addr()) || ' ' || pg_is_in_recovery()")
              .stdout.strip() for _ in range(10)]
    assert landed == [f"{primary.host} false"] * 10, landed
    landed = [psql(ip, ro, "SELECT host(inet_server_addr()) || ' ' || pg_is_in_recovery()")
              .stdout.strip() for _ in range(10)]
    assert landed == [f"{standby.host} true"] * 10, landed
    assert len(unreachable(d, app, primary.host, primary.port, mark)) == 0
    psql(ip, rw, "CREATE TABLE IF NOT EXISTS written(n int); INSERT INTO written VALUES (1)")

    rows = machine_rows(d, app)
    assert "primary" in rows[primary.host] and "healthy" in rows[primary.host], rows
    assert "standby" in rows[standby.host] and "healthy" in rows[standby.host], rows
    rows = status_rows(d, app)
    assert "primary" in rows[primary.host] and "standby" in rows[standby.host], rows
    m = metrics(d)
    assert metric(m, "drawbridge_machine_role", app=app, machine=primary.address,
                  role="primary") == 1, m
    assert metric(m, "drawbridge_machine_role", app=app, machine=standby.address,
                  role="standby") == 1, m

    # A session on the standby stays open across the promotion.
    on_standby = Session(ip, ro)
    try:
        assert on_standby.host == standby.host
        primary.stop_fast()
        standby.promote()
        promoted = time.monotonic()
        assert not standby.in_recovery()
        # Within one check interval (and slack) a read-write client reaches the new primary
        # and writes.
        deadline = promoted + CHECK_INTERVAL + NOTICE_S
        tries = []
        while True:
            p = psql(ip, rw, "WITH i AS (INSERT INTO written VALUES (2) RETURNING 1) "
                             "SELECT host(inet_server_addr()) FROM i", check=False)
            tries.append((round(time.monotonic() - promoted, 2), p.returncode,
                          p.stdout.strip() or p.stderr.strip()))
            if p.returncode == 0 or time.monotonic() > deadline or len(tries) >= 40:
                break
            time.sleep(0.1)
        assert tries[-1][1:] == (0, standby.host), tries
        assert on_standby.query("SELECT pg_is_in_recovery()") == [["f"]]
        wait_until(lambda: "primary" in machine_rows(d, app)[standby.host], NOTICE_S,
                   what="machines list showing the promoted standby as primary")
        rows = machine_rows(d, app)
        assert "unhealthy" in rows[primary.host], rows
    finally:
        on_standby.close()


def test_histograms_and_per_machine_series_are_served(daemon, pair):
    """After the tests above (or on their own: one session here), /metrics has the new
    histograms and per-app series."""
    d = daemon
    a, b = pair
    app, port = "metered", free_port()
    ip = deploy(d, app, [a.host, b.host], app_toml(app, service(a.port, port)))
    s = Session(ip, port)
    s.close()
    names = set()

    def seen() -> bool:
        names.clear()
        names.update(n for n, _, _ in metrics(d))
        return "drawbridge_session_seconds_count" in names
    wait_until(seen, 10, what="drawbridge_session_seconds in /metrics")
    for h in ("drawbridge_tls_handshake_seconds", "drawbridge_machine_connect_seconds",
              "drawbridge_session_seconds"):
        assert {f"{h}_bucket", f"{h}_sum", f"{h}_count"} <= names, (h, sorted(names))
    m = metrics(d)
    for h in ("drawbridge_tls_handshake_seconds", "drawbridge_machine_connect_seconds",
              "drawbridge_session_seconds"):
        assert metric(m, f"{h}_count") >= 1, h
        assert metric(m, f"{h}_bucket", le="+Inf") == metric(m, f"{h}_count"), h
        assert all("app" not in lb for n, lb, _ in m if n.startswith(h)), h
    assert (metric(m, "drawbridge_app_connections_total", app=app) or 0) >= 1, m
    # The board lists a deployed machine once the checker has read the new route table
    # (about every 250 ms).
    wait_until(lambda: metric(metrics(d), "drawbridge_machine_healthy", app=app,
                              machine=a.address) == 1, 2,
               what=f"drawbridge_machine_healthy of {a.address}")
    wait_until(lambda: metric(metrics(d), "drawbridge_machine_sessions", app=app,
                              machine=f"{s.host}:{a.port}") == 0, 10,
               what="the closed session no longer counted on its machine")
