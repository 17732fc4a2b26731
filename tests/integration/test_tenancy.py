"""Tenancy of public addresses (docs/connection.md, "Released addresses and destroyed apps";
docs/cli.md, `ips release`): an address taken from an app ends the sessions that came to it,
and is not handed to the next tenant until its quarantine is over; an app without machines says
so to its clients.

Against the real daemon (`drawbridge serve`), driven through its CLI and admin API, with a real
PostgreSQL 15 as every app's machine, and real clients: psycopg, psql, pg_isready, and the
byte-level client of pgwire.py where the exact ErrorResponse matters. Each test starts its own
daemon on a /29 v4 pool (.1 shared, .2-.6 dedicated) so that allocations are predictable.
Nothing here skips.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      tests/integration/test_tenancy.py
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest

import harness
import pgwire as w
from harness import PG_BIN, PSQL, dsn, free_port, libpq_env, run, wait_until

DOMAIN = "drawbridge.test"


@contextlib.contextmanager
def daemon(n: int, *extra_args: str):
    """A daemon of its own: v4 pool 127.0.70.<8n>/29, v6 pool fd00:db:7<n>::/64."""
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-tenancy-"))
    d = harness.DrawbridgeDaemon(workdir, v4_pool=f"127.0.70.{8 * n}/29",
                                 v6_pool=f"fd00:db:7{n}::/64", domain=DOMAIN,
                                 extra_args=extra_args)
    with harness.running(d):
        yield d
        harness.fail_if_dead(d)


def deploy(d: harness.DrawbridgeDaemon, app: str, pg, ports: dict[str, int],
           machine: bool = True) -> None:
    """Creates `app` with the test Postgres as its machine (unless not `machine`) and deploys
    a pg_tls port (ports["pg_tls"]) and, if given, a raw TCP port (ports["raw"]) to it."""
    d.cli("apps", "create", app)
    if machine:
        d.cli("machines", "add", "127.0.0.1", "-a", app)
    services = [dict(internal_port=pg.port, port=ports["pg_tls"], handlers=["pg_tls"])]
    if "raw" in ports:
        services.append(dict(internal_port=pg.port, port=ports["raw"], handlers=[]))
    toml = harness.fly_toml(services).replace('app = "mydb"', f'app = "{app}"')
    path = d.workdir / f"{app}.toml"
    path.write_text(toml)
    d.cli("deploy", "-c", str(path), "-a", app)


def allocate_v4(d: harness.DrawbridgeDaemon, app: str, check: bool = True):
    p = d.cli("ips", "allocate-v4", "--yes", "-a", app, "--json", check=check)
    return json.loads(p.stdout)["address"] if p.returncode == 0 else p


def error_line(p) -> str:
    assert p.returncode == 1, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("Error: ")]
    assert lines, p.stderr
    return lines[-1]


def pg_session(host: str, port: int) -> w.WireConn:
    """A logged-in pg_tls session (no SNI, as a client that connects by address)."""
    t = w.ssl_request_tls(host, port)
    w.login_trust(t, "probe", "app")
    assert w.simple_query(t, "SELECT 'in'") == [["in"]]
    return t


def psycopg_session(host: str, port: int) -> psycopg.Connection:
    conn = psycopg.connect(dsn(host=host, port=port, sslmode="require", user="alice",
                               password="alice-secret", dbname="app", connect_timeout=10),
                           autocommit=True)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    return conn


def assert_psycopg_told(conn: psycopg.Connection, message: str) -> None:
    """The edge's FATAL reaches a psycopg client: it arrives unasked (bounded wait for the
    socket to turn readable), and the next query fails with its text. (libpq reads an error
    that comes while no query runs as the connection's last words: psycopg reports it with the
    connection's loss and no SQLSTATE, as after a PostgreSQL server's fast shutdown; the
    SQLSTATE itself is checked byte for byte with pgwire.)"""
    readable, _, _ = select.select([conn.fileno()], [], [], 10)
    assert readable, "nothing arrived on the psycopg connection within 10 s"
    with pytest.raises(psycopg.OperationalError) as err:
        conn.execute("SELECT 1")
    assert message in str(err.value), repr(err.value)
    assert err.value.sqlstate in (None, "57P01"), repr(err.value)
    assert conn.closed
    conn.close()


def assert_raw_closed(s: socket.socket) -> None:
    s.settimeout(10)
    try:
        assert s.recv(1) == b"", "a raw TCP session got bytes instead of its end"
    except ConnectionResetError:
        pass  # closed all the same
    s.close()


def conn_lines(d: harness.DrawbridgeDaemon, reason: str) -> list[str]:
    return [ln for ln in d.log().splitlines() if " conn client=" in ln and f"reason={reason}" in ln]


def revoked_counter(d: harness.DrawbridgeDaemon) -> int:
    status, text = d.api("GET", "/metrics")
    assert status == 200, text
    m = re.search(r"^drawbridge_connections_revoked_total (\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def test_release_ends_the_sessions_of_that_address(pg):
    ports = {"pg_tls": free_port(), "raw": free_port()}
    with daemon(0) as d:
        deploy(d, "alpha", pg, ports)
        x = allocate_v4(d, "alpha")
        y = allocate_v4(d, "alpha")
        assert (x, y) == ("127.0.70.2", "127.0.70.3")
        on_x, on_y = pg_session(x, ports["pg_tls"]), pg_session(y, ports["pg_tls"])
        client = psycopg_session(x, ports["pg_tls"])
        raw = socket.create_connection((x, ports["raw"]), timeout=10)
        # A client between its TLS handshake and its StartupMessage: still negotiating.
        negotiating = w.ssl_request_tls(x, ports["pg_tls"])

        p = d.cli("ips", "release", x, "-a", "alpha")
        assert p.stdout == f"Released {x} from alpha\n", p.stdout
        told = f'terminating connection: address {x} was released from app "alpha"'
        fields = on_x.read_error_then_eof(10)
        harness.fatal(fields, "57P01")
        assert fields["M"] == told, fields
        assert_psycopg_told(client, told)
        assert_raw_closed(raw)
        negotiating.send(w.startup_message({"user": "probe", "database": "app"}))
        fields = negotiating.read_error_then_eof(10)
        harness.fatal(fields, "57P01")
        assert fields["M"] == told, fields
        # The app's other address is untouched.
        assert w.simple_query(on_y, "SELECT 'still'") == [["still"]]
        on_y.close()
        wait_until(lambda: len(conn_lines(d, "address_released")) == 4, 10,
                   what="four conn lines with reason=address_released")
        assert all(f"local={x}:" in ln and "app=alpha" in ln
                   for ln in conn_lines(d, "address_released"))
        assert revoked_counter(d) == 4
        # And nothing reaches a database through it any more.
        p = run([PSQL, "-X", "-d", dsn(host=x, port=ports["pg_tls"], sslmode="require",
                                       user="alice", password="alice-secret", dbname="app"),
                 "-c", "SELECT 1"], check=False, env=libpq_env())
        assert p.returncode != 0, p.stdout


def test_destroy_ends_the_apps_sessions(pg):
    ports = {"pg_tls": free_port()}
    with daemon(1) as d:
        deploy(d, "gamma", pg, ports)
        x = allocate_v4(d, "gamma")
        assert x == "127.0.70.10"
        session = pg_session(x, ports["pg_tls"])
        client = psycopg_session(x, ports["pg_tls"])
        p = d.cli("apps", "destroy", "gamma", "--yes")
        assert p.stdout == "Destroyed app gamma\n", p.stdout
        told = 'terminating connection: app "gamma" was destroyed'
        fields = session.read_error_then_eof(10)
        harness.fatal(fields, "57P01")
        assert fields["M"] == told, fields
        assert_psycopg_told(client, told)
        wait_until(lambda: len(conn_lines(d, "app_destroyed")) == 2, 10,
                   what="two conn lines with reason=app_destroyed")
        assert revoked_counter(d) == 2


def test_a_released_address_is_not_given_to_the_next_tenant(pg):
    """With the default quarantine (24 h), neither `ips release` nor `apps destroy` hands the
    address to the next allocation; a pool whose free addresses are all in quarantine says so."""
    with daemon(4) as d:  # 127.0.70.32/29: .34-.38 dedicated
        d.cli("apps", "create", "alpha")
        assert [allocate_v4(d, "alpha") for _ in range(2)] == ["127.0.70.34", "127.0.70.35"]
        d.cli("ips", "release", "127.0.70.34", "-a", "alpha")
        d.cli("apps", "create", "gamma")
        assert allocate_v4(d, "gamma") == "127.0.70.36"
        d.cli("apps", "destroy", "alpha", "--yes")
        # A new app, even of the same name, gets neither of alpha's addresses.
        d.cli("apps", "create", "alpha")
        assert [allocate_v4(d, "alpha") for _ in range(2)] == ["127.0.70.37", "127.0.70.38"]
        line = error_line(allocate_v4(d, "gamma", check=False))
        assert re.fullmatch(
            r"Error: the IPv4 pool 127\.0\.70\.32/29 has no free address: 2 released addresses "
            r"are in quarantine, the first until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(drawbridge "
            r"serve --ip-quarantine sets how long\)", line), line
        # The shared address is never quarantined: released, it is there for the taking.
        p = d.cli("ips", "allocate-v4", "--shared", "-a", "gamma", "--json")
        assert json.loads(p.stdout)["address"] == "127.0.70.33"
        d.cli("ips", "release", "127.0.70.33", "-a", "gamma")
        p = d.cli("ips", "allocate-v4", "--shared", "-a", "alpha", "--json")
        assert json.loads(p.stdout)["address"] == "127.0.70.33"


def test_a_zero_quarantine_gives_a_released_address_back_at_once(pg):
    ports = {"pg_tls": free_port()}
    with daemon(2, "--ip-quarantine", "0") as d:
        deploy(d, "alpha", pg, ports)
        x = allocate_v4(d, "alpha")
        session = pg_session(x, ports["pg_tls"])
        d.cli("ips", "release", x, "-a", "alpha")
        harness.fatal(session.read_error_then_eof(10), "57P01")
        deploy(d, "beta", pg, ports)
        assert allocate_v4(d, "beta") == x
        # Its new tenant is served on it.
        after = pg_session(x, ports["pg_tls"])
        after.close()


def test_a_bad_quarantine_flag_is_refused():
    for bad in ("24", "1w", "-1h", "366d", "h"):
        p = run([str(harness.drawbridge_bin()), "serve", "--ip-quarantine", bad],
                check=False, timeout=30)
        assert p.returncode != 0, (bad, p.stdout, p.stderr)
        assert "--ip-quarantine" in p.stdout + p.stderr, (bad, p.stdout, p.stderr)
        assert "expected 0 or a duration like 90s, 30m, 24h or 7d" in p.stdout + p.stderr, \
            (bad, p.stdout, p.stderr)


def test_an_app_without_machines_says_so(pg):
    ports = {"pg_tls": free_port()}
    with daemon(3) as d:
        deploy(d, "empty", pg, ports, machine=False)
        x = allocate_v4(d, "empty")
        with w.ssl_request_tls(x, ports["pg_tls"]) as t:
            t.send(w.startup_message({"user": "probe", "database": "app"}))
            fields = t.read_error_then_eof(10)
        harness.fatal(fields, "57P03")
        assert fields["M"] == 'app "empty" has no machines', fields
        assert fields["H"] == "Add one with: drawbridge machines add <address> -a empty", fields
        conninfo = dsn(host=x, port=ports["pg_tls"], sslmode="require", user="alice",
                       password="alice-secret", dbname="app")
        p = run([PSQL, "-X", "-d", conninfo, "-c", "SELECT 1"], check=False, env=libpq_env())
        assert p.returncode != 0
        assert 'FATAL:  app "empty" has no machines' in p.stderr, p.stderr
        # pg_isready: "rejecting connections" (exit 1), not "accepting connections".
        p = run([str(PG_BIN / "pg_isready"), "-d", conninfo], check=False, env=libpq_env())
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        wait_until(lambda: len(conn_lines(d, "no_machines")) == 3, 10,
                   what="three conn lines with reason=no_machines")
        status, text = d.api("GET", "/metrics")
        assert 'drawbridge_failures_total{reason="no_machines"} 3' in text, text
        # Once it has one, it is served.
        d.cli("machines", "add", "127.0.0.1", "-a", "empty")
        pg_session(x, ports["pg_tls"]).close()
