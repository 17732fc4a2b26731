"""An edge the internet cannot drown (issue 14): admission control before any expensive work,
and the per-app source allowlist (docs/connection.md, docs/fly-toml.md, README's serve flags).

Against the real daemon (`drawbridge serve`, control-plane mode, one daemon per test with the
flags under test), the real PostgreSQL 15 of the session (conftest `pg`) as the app's machine.
Clients come from chosen loopback sources (a socket bound to 127.0.0.2, .3, ... before it
connects), so "one source floods, another connects" is two addresses on one host; they speak
the byte-level protocol of pgwire.py (the SQLSTATE and the exact answer matter), and psql or
psycopg where a real client's view is the point (those connect from 127.0.0.1). Floods are
bounded in count and in time. Nothing here skips.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      tests/integration/test_admission.py
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

import harness
import pgwire as w
from harness import dsn, free_port, libpq_env, run, wait_until

DOMAIN = "drawbridge.test"
V4_POOL, V6_POOL = "127.0.141.0/24", "fd00:db:141::/64"
TLS_RATE_TEXT = "too many TLS handshakes from this address; try again later"
REASONS = ("max_connections", "max_handshakes", "per_source_connections", "tls_handshake_rate",
           "cancel_rate")


# ------------------------------------------------------------------------------ daemon, app


@contextlib.contextmanager
def daemon(*extra_args: str):
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-admission-"))
    d = harness.DrawbridgeDaemon(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN,
                                 extra_args=extra_args)
    with harness.running(d):
        yield d
        harness.fail_if_dead(d)


def deploy(d: harness.DrawbridgeDaemon, app: str, pg, port: int, top: str = "") -> str:
    """`app` with the session's Postgres as its machine, one pg_tls port, and `top` (TOML
    tables) before its services; returns its dedicated IPv4."""
    d.cli("apps", "create", app)
    d.cli("machines", "add", "127.0.0.1", "-a", app)
    toml = (f'app = "{app}"\n\n{top}\n' + harness.fly_toml(
        [dict(internal_port=pg.port, port=port, handlers=["pg_tls"])]).split("\n", 2)[2])
    path = d.workdir / f"{app}.toml"
    path.write_text(toml)
    d.cli("deploy", "-c", str(path), "-a", app)
    return json.loads(d.cli("ips", "allocate-v4", "--yes", "-a", app, "--json").stdout)["address"]


def refusals(d: harness.DrawbridgeDaemon) -> dict[str, int]:
    status, text = d.api("GET", "/metrics")
    assert status == 200, text
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(
        r'^drawbridge_admission_refusals_total\{reason="([a-z_]+)"\} (\S+)$', text, re.M)}


def failures(d: harness.DrawbridgeDaemon, reason: str) -> int:
    status, text = d.api("GET", "/metrics")
    m = re.search(rf'^drawbridge_failures_total\{{reason="{reason}"\}} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def sample(d: harness.DrawbridgeDaemon, name: str) -> float | None:
    status, text = d.api("GET", "/metrics")
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


# ------------------------------------------------------------------------------ clients


def connect_from(src: str, ip: str, port: int, timeout: float = 10) -> w.WireConn:
    """A TCP connection from loopback address `src`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect((ip, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    return w.WireConn(s)


def tls_from(src: str, ip: str, port: int, timeout: float = 10) -> w.WireConn:
    c = connect_from(src, ip, port, timeout)
    try:
        c.send(w.SSL_REQUEST)
        answer = c.recv_exact(1, timeout)
        if answer != b"S":
            raise w.PgWireError(f"SSLRequest from {src} answered {answer!r}{c.buf!r:.200}")
        return w.start_tls(c, w.client_context(), None, timeout)
    except BaseException:
        c.close()
        raise


class Session:
    """A logged-in pg_tls session (user probe, trust) from loopback address `src`."""

    def __init__(self, src: str, ip: str, port: int, name: str | None = None,
                 timeout: float = 10):
        self.name = name or harness.marker("adm")
        self.conn = tls_from(src, ip, port, timeout)
        try:
            self.login = w.login_trust(self.conn, "probe", "app",
                                       {"application_name": self.name}, timeout=timeout)
            assert w.simple_query(self.conn, "SELECT 1", timeout) == [["1"]]
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        try:
            self.conn.send(w.TERMINATE)
        except OSError:
            pass
        self.conn.close()


def refused_at_accept(src: str, ip: str, port: int) -> dict[str, str]:
    """Connects from `src` and sends nothing: the edge's plain-text ErrorResponse, then EOF."""
    with connect_from(src, ip, port) as c:
        return c.read_error_then_eof(5)


def send_cancel(src: str, ip: str, port: int, pid: int, key: bytes) -> None:
    """One plaintext CancelRequest from `src`; waits (bounded) for the edge to close."""
    with connect_from(src, ip, port) as c:
        c.send(w.cancel_request(pid, key))
        data, _ = c.read_to_eof(5)
        assert data == b"", data


def session_works_soon(src: str, ip: str, port: int, timeout: float = 5) -> "Session":
    """A session from `src`, tried every 0.2 s for up to `timeout` (the edge notices a closed
    client asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Session(src, ip, port, timeout=5)
        except (OSError, w.PgWireError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ------------------------------------------------------------------------------ tests


def test_bad_admission_flags_are_refused():
    """A negative value is refused before anything starts, exactly as the older serve flags
    refuse a value out of their range (same exit code, the flag named)."""
    bin_ = str(harness.drawbridge_bin())
    usual = run([bin_, "serve", "--threads", "-1"], check=False, timeout=30)
    assert usual.returncode not in (0, 1), usual
    for flag in ("--max-connections", "--max-handshakes-in-flight", "--max-connections-per-source",
                 "--tls-handshakes-per-second-per-source", "--cancels-per-second-per-source",
                 "--hard-limit-wait-ms"):
        p = run([bin_, "serve", flag, "-1"], check=False, timeout=30)
        assert p.returncode == usual.returncode, (flag, p.returncode, p.stdout, p.stderr)
        assert f"{flag}: Value -1 not in range" in p.stdout + p.stderr, (flag, p.stdout, p.stderr)


def test_per_source_cap(pg):
    port = free_port()
    with daemon("--max-connections-per-source", "5") as d:
        assert set(refusals(d)) >= set(REASONS), refusals(d)
        ip = deploy(d, "capped", pg, port)
        held = [Session("127.0.0.2", ip, port) for _ in range(5)]
        try:
            fields = refused_at_accept("127.0.0.2", ip, port)
            harness.fatal(fields, "53300")
            # Another source is not affected.
            Session("127.0.0.3", ip, port).close()
            assert refusals(d)["per_source_connections"] == 1, refusals(d)
            # A source under its cap again connects again.
            held.pop().close()
            held.append(session_works_soon("127.0.0.2", ip, port))
        finally:
            for s in held:
                s.close()


def test_tls_handshake_rate_per_source_and_a_bystander_still_connects(pg):
    port = free_port()
    with daemon("--tls-handshakes-per-second-per-source", "5") as d:
        ip = deploy(d, "flooded", pg, port)
        lock = threading.Lock()
        granted: list[float] = []
        refused: list[dict[str, str]] = []
        odd: list[str] = []
        stop_at = time.monotonic() + 3.0

        def flooder():
            for _ in range(60):  # bounded: at most 4 x 60 SSLRequests, for at most 3 s
                if time.monotonic() > stop_at:
                    return
                time.sleep(0.04)
                try:
                    with connect_from("127.0.0.2", ip, port, timeout=5) as c:
                        c.send(w.SSL_REQUEST)
                        first = c.recv_exact(1, 5)
                        if first == b"S":
                            with lock:
                                granted.append(time.monotonic())
                            continue
                        if first != b"E":
                            raise w.PgWireError(f"SSLRequest answered {first!r}")
                        (n,) = struct.unpack("!I", c.recv_exact(4, 5))
                        fields = w.parse_error_fields(c.recv_exact(n - 4, 5))
                        with lock:
                            refused.append(fields)
                except (OSError, w.PgWireError) as exc:
                    with lock:
                        odd.append(repr(exc))

        started = time.monotonic()
        threads = [threading.Thread(target=flooder, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        # During the flood: a byte-level login from 127.0.0.3 and psycopg from 127.0.0.1.
        t0 = time.monotonic()
        Session("127.0.0.3", ip, port).close()
        bystander_s = time.monotonic() - t0
        t0 = time.monotonic()
        with psycopg.connect(dsn(host=ip, port=port, sslmode="require", user="probe",
                                 dbname="app", connect_timeout=5), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        psycopg_s = time.monotonic() - t0
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
        flood_s = time.monotonic() - started

        assert odd == [], odd[:5]
        assert bystander_s < 1.0, bystander_s
        assert psycopg_s < 1.0, psycopg_s
        assert refused, f"no SSLRequest refused; {len(granted)} granted"
        for f in refused:
            harness.fatal(f, "53300")
            assert f["M"] == TLS_RATE_TEXT, f
        # A burst of one second's worth, then 5 per second.
        assert len(granted) <= 5 + 5 * flood_s + 2, (len(granted), flood_s)
        assert refusals(d)["tls_handshake_rate"] == len(refused), (refusals(d), len(refused))


def test_cancel_rate_per_source(pg):
    port = free_port()
    with daemon("--cancels-per-second-per-source", "2") as d:
        ip = deploy(d, "cancelled", pg, port)
        s = Session("127.0.0.2", ip, port)
        try:
            pid, key = w.backend_key(s.login)
            s.conn.send(w.query_message("SELECT pg_sleep(30)"))
            wait_until(lambda: any(r[1] == "active" for r in pg.activity(s.name)), 10,
                       what="the sleeping query running")
            for i in range(20):  # a bounded flood of cancels with keys nobody holds
                send_cancel("127.0.0.2", ip, port, 1 + i, os.urandom(4))
            # The real key from the flooding source is over the rate now: dropped.
            send_cancel("127.0.0.2", ip, port, pid, key)
            with pytest.raises(w.PgWireError):
                s.conn.read_message(timeout=1.0)
            assert any(r[1] == "active" for r in pg.activity(s.name)), pg.activity(s.name)
            assert refusals(d)["cancel_rate"] >= 18, refusals(d)
            # From another source it goes through at once.
            send_cancel("127.0.0.3", ip, port, pid, key)
            msgs = s.conn.read_until(b"Z", 5)
            errors = [w.parse_error_fields(p) for t, p in msgs if t == b"E"]
            assert [e["C"] for e in errors] == ["57014"], msgs
        finally:
            s.close()


def test_allowed_sources_refuse_others_before_any_machine_is_contacted(pg):
    port = free_port()
    with daemon() as d:
        d.cli("apps", "create", "fenced")
        # A bad CIDR is a config error at its line.
        bad = d.workdir / "bad.toml"
        bad.write_text('app = "fenced"\n\n[drawbridge]\n  allowed_sources = ["10.0.0.0/33"]\n')
        p = d.cli("config", "validate", "-c", str(bad), check=False)
        assert p.returncode != 0, p.stdout
        assert f"{bad}:4" in p.stdout + p.stderr and "allowed_sources" in p.stdout + p.stderr, \
            p.stdout + p.stderr
        good = d.workdir / "good.toml"
        good.write_text('app = "fenced"\n\n[drawbridge]\n  allowed_sources = ["127.0.0.3/32"]\n')
        p = d.cli("config", "validate", "-c", str(good))
        assert "allowed_sources" not in p.stdout + p.stderr, p.stdout + p.stderr
        d.cli("apps", "destroy", "fenced", "--yes")

        ip = deploy(d, "fenced", pg, port,
                    top='[drawbridge]\n  allowed_sources = ["127.0.0.3/32"]\n')
        Session("127.0.0.3", ip, port).close()  # the machine is reachable from allowed sources
        connects = sample(d, "drawbridge_machine_connect_seconds_count")
        assert connects is not None, "no drawbridge_machine_connect_seconds in /metrics"
        denied = harness.marker("denied")
        with tls_from("127.0.0.2", ip, port) as c:
            c.send(w.startup_message({"user": "probe", "database": "app",
                                      "application_name": denied}))
            fields = c.read_error_then_eof(5)
        harness.fatal(fields, "28000")
        assert fields["M"] == 'source address not allowed for app "fenced"', fields
        # psql from 127.0.0.1, not on the list either.
        p = run([harness.PSQL, "-X", "-d", dsn(host=ip, port=port, sslmode="require",
                                               user="probe", dbname="app",
                                               application_name=denied),
                 "-c", "SELECT 1"], check=False, env=libpq_env())
        assert p.returncode != 0
        assert 'FATAL:  source address not allowed for app "fenced"' in p.stderr, p.stderr
        # Allowed: served, and Postgres logs that login.
        allowed = Session("127.0.0.3", ip, port)
        allowed.close()
        wait_until(lambda: allowed.name in pg.log_text(), 10, what="the allowed login logged")
        # The refused ones never reached it: no login, no session, no machine connect.
        assert denied not in pg.log_text()
        assert pg.activity(denied) == []
        assert sample(d, "drawbridge_machine_connect_seconds_count") == connects + 1
        assert failures(d, "source_not_allowed") == 2


def test_global_caps(pg):
    port = free_port()
    with daemon("--max-connections", "3", "--max-handshakes-in-flight", "2") as d:
        ip = deploy(d, "global", pg, port)
        # Two connections still negotiating (nothing sent yet) fill the handshake cap.
        idle = [connect_from("127.0.0.2", ip, port), connect_from("127.0.0.3", ip, port)]
        try:
            wait_until(lambda: sample(d, "drawbridge_connections_handshaking") == 2, 5,
                       what="two connections in the handshake")
            harness.fatal(refused_at_accept("127.0.0.4", ip, port), "53300")
            assert refusals(d)["max_handshakes"] == 1, refusals(d)
        finally:
            for c in idle:
                c.close()
        wait_until(lambda: sample(d, "drawbridge_connections_handshaking") == 0, 10,
                   what="the idle connections gone")
        # Three logged-in sessions fill the global cap: the fourth is refused at accept.
        held = [session_works_soon(src, ip, port)
                for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4")]
        try:
            harness.fatal(refused_at_accept("127.0.0.5", ip, port), "53300")
            assert refusals(d)["max_connections"] == 1, refusals(d)
            held.pop().close()
            held.append(session_works_soon("127.0.0.5", ip, port))
        finally:
            for s in held:
                s.close()
