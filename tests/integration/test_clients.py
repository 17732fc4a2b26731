"""Real clients (psql, pgbench, psycopg 3, asyncpg) through the edge to a real Postgres 15."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import ssl
import struct
import subprocess
import threading
import time
import uuid

import pytest

import pgwire as w
from harness import PGBENCH, PSQL, libpq_env, run, run_psql, wait_until

COPY_1GB = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 1000000)) TO STDOUT"


def app_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------- psql


def test_psql_sslmode_require_uses_tls13(edge):
    r = run_psql(edge.dsn(sslmode="require"), "-c", r"\conninfo",
                 "-c", "SELECT current_user || '@' || current_database()")
    assert "SSL connection (protocol: TLSv1.3" in r.stdout, r.stdout
    assert "alice@app" in r.stdout, r.stdout


def test_psql_sslmode_prefer_gets_tls(edge):
    r = run_psql(edge.dsn(sslmode="prefer"), "-c", r"\conninfo")
    assert "SSL connection (protocol: TLSv1.3" in r.stdout, r.stdout


@pytest.mark.parametrize("hostaddr", ["127.0.0.1", "::1"])
def test_psql_verify_full(edge, certs, hostaddr):
    r = run_psql(edge.dsn(host="mydb.drawbridge.test", hostaddr=hostaddr, sslmode="verify-full",
                          sslrootcert=certs.ca),
                 "-c", r"\conninfo", "-c", "SELECT 'verified'")
    assert "SSL connection (protocol: TLSv1.3" in r.stdout, r.stdout
    assert "verified" in r.stdout


def test_psql_verify_full_other_host_uses_sni_cert(edge, certs):
    # libpq (>= 14) sends SNI; only the second certificate carries this name.
    r = run_psql(edge.dsn(host="other.drawbridge.test", hostaddr="127.0.0.1",
                          sslmode="verify-full", sslrootcert=certs.ca), "-c", "SELECT 'sni'")
    assert "sni" in r.stdout


def test_psql_verify_full_wrong_host_name_fails(edge, certs):
    r = run_psql(edge.dsn(host="wrong.drawbridge.test", hostaddr="127.0.0.1",
                          sslmode="verify-full", sslrootcert=certs.ca), "-c", "SELECT 1",
                 check=False)
    assert r.returncode != 0, r.stdout
    assert "does not match host name" in r.stderr, r.stderr


def test_psql_sslmode_disable_gets_tls_required_error(edge):
    r = run_psql(edge.dsn(sslmode="disable"), "-c", "SELECT 1", check=False)
    assert r.returncode != 0, r.stdout
    assert "SSL/TLS is required" in r.stderr, r.stderr
    assert "sslmode=require" in r.stderr, r.stderr
    assert "server closed the connection unexpectedly" not in r.stderr, r.stderr


def test_psql_over_ipv6(edge):
    r = run_psql(edge.dsn(host="::1", sslmode="require"), "-c", r"\conninfo",
                 "-c", "SELECT inet_server_addr() IS NOT NULL")
    assert "SSL connection (protocol: TLSv1.3" in r.stdout, r.stdout


def test_psql_ipv6_sslmode_disable_gets_tls_required_error(edge):
    r = run_psql(edge.dsn(host="::1", sslmode="disable"), "-c", "SELECT 1", check=False)
    assert r.returncode != 0
    assert "SSL/TLS is required" in r.stderr, r.stderr


def test_psql_wrong_password_gets_postgres_error(edge):
    r = run_psql(edge.dsn(password="not-the-password"), "-c", "SELECT 1", check=False)
    assert r.returncode != 0
    assert 'password authentication failed for user "alice"' in r.stderr, r.stderr


# ------------------------------------------------------------------------- pgbench


@pytest.mark.slow
def test_pgbench_select_only_through_edge(edge, pg):
    env = libpq_env(PGPASSWORD="alice-secret")
    run([PGBENCH, "-i", "-s", "1", "-q", "-h", pg.host, "-p", str(pg.port), "-U", "alice", "app"],
        timeout=120, env=env)
    env["PGSSLMODE"] = "require"
    r = run([PGBENCH, "-S", "-T", "5", "-c", "4", "-j", "2", "-h", "127.0.0.1",
             "-p", str(edge.ports["pg_tls"]), "-U", "alice", "app"], timeout=60, env=env)
    m = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    assert m and int(m.group(1)) > 0, r.stdout
    m = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert m and int(m.group(1)) == 0, r.stdout
    assert "error" not in r.stderr.lower(), r.stderr


# ------------------------------------------------------------------------- bulk data


def psql_output_digest(conninfo: str, sql: str, timeout: float = 300) -> tuple[str, int]:
    """sha256 and length of psql's stdout, streamed (never held in memory)."""
    p = subprocess.Popen([PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=libpq_env())
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    try:
        h, n = hashlib.sha256(), 0
        while chunk := p.stdout.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        err = p.stderr.read().decode(errors="replace")
        rc = p.wait(10)
    finally:
        killer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert rc == 0, f"psql failed rc={rc} (timeout {timeout}s?): {err}"
    return h.hexdigest(), n


@pytest.mark.slow
def test_copy_1gb_is_byte_identical(edge, pg):
    via_edge = psql_output_digest(edge.dsn(sslmode="require"), COPY_1GB)
    direct = psql_output_digest(pg.direct_dsn(sslmode="disable"), COPY_1GB)
    assert via_edge[1] == 1001 * 1_000_000, via_edge
    assert via_edge == direct


# ------------------------------------------------------------------------- cancel


def sleeping(pg, app) -> bool:
    return any(st == "active" and "pg_sleep" in q for _, st, q, _ in pg.activity(app))


def test_psql_ctrl_c_cancels_through_edge(edge, pg):
    app = app_name("psqlcancel")
    p = subprocess.Popen([PSQL, "-X", "-d", edge.dsn(application_name=app),
                          "-c", "SELECT pg_sleep(60)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=libpq_env())
    try:
        wait_until(lambda: sleeping(pg, app) or p.poll() is not None, 15,
                   what="pg_sleep to be active")
        assert p.poll() is None, p.communicate(timeout=5)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)  # psql's handler sends a plaintext CancelRequest
        out, err = p.communicate(timeout=10)
        elapsed = time.monotonic() - t0
        assert "canceling statement due to user request" in err, (out, err)
        assert p.returncode != 0
        assert elapsed < 5, f"cancel took {elapsed:.1f}s"
        wait_until(lambda: not sleeping(pg, app), 1.0, what="the backend to stop sleeping")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        pg.terminate(app)


def psycopg_connect(edge, **kw):
    import psycopg
    params = dict(host="127.0.0.1", port=edge.ports["pg_tls"], user="alice",
                  password="alice-secret", dbname="app", sslmode="require", connect_timeout=10)
    params.update(kw)
    return psycopg.connect(**params)


def test_psycopg_connects_and_queries(edge):
    with psycopg_connect(edge) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)


def test_psycopg_sees_rewritten_backend_pid(edge):
    with psycopg_connect(edge) as conn:
        real = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert conn.info.backend_pid != real, "BackendKeyData was not rewritten by the edge"


def run_sleep_in_thread(conn, seconds: int = 60):
    result = {}

    def target():
        t0 = time.monotonic()
        try:
            conn.execute(f"SELECT pg_sleep({seconds})")
            result["outcome"] = "completed"
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            result["outcome"] = e
        result["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, result


def test_psycopg_cancel(edge, pg):
    import psycopg
    app = app_name("psycopgcancel")
    try:
        with psycopg_connect(edge, application_name=app, autocommit=True) as conn:
            th, result = run_sleep_in_thread(conn)
            wait_until(lambda: sleeping(pg, app), 15, what="pg_sleep to be active")
            t0 = time.monotonic()
            conn.cancel()
            th.join(10)
            assert not th.is_alive(), "query still running 10 s after conn.cancel()"
            assert isinstance(result.get("outcome"), psycopg.errors.QueryCanceled), result
            assert time.monotonic() - t0 < 5
            wait_until(lambda: not sleeping(pg, app), 1.0, what="the backend to stop sleeping")
            assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
    finally:
        pg.terminate(app)


def test_cancel_with_wrong_key_cancels_nothing(edge, pg):
    import psycopg
    app = app_name("wrongkey")
    try:
        with psycopg_connect(edge, application_name=app, autocommit=True) as conn:
            client_pid = conn.info.backend_pid
            th, result = run_sleep_in_thread(conn)
            wait_until(lambda: sleeping(pg, app), 15, what="pg_sleep to be active")
            real_pid = pg.activity(app)[0][0]
            for pid in (client_pid, real_pid):
                for _ in range(3):
                    reply, _ = w.cancel_no_reply("127.0.0.1", edge.ports["pg_tls"],
                                                 w.cancel_request(pid, os.urandom(4)))
                    assert reply == b""
            time.sleep(1.5)
            assert sleeping(pg, app), "a CancelRequest with a wrong key cancelled the query"
            assert th.is_alive() and "outcome" not in result, result
            conn.cancel()  # the real key works: the check above is meaningful
            th.join(10)
            assert isinstance(result.get("outcome"), psycopg.errors.QueryCanceled), result
    finally:
        pg.terminate(app)


def test_asyncpg_connects_and_queries(edge):
    import asyncpg

    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=edge.ports["pg_tls"], user="alice",
                                     password="alice-secret", database="app", ssl="require",
                                     timeout=10)
        try:
            v = await conn.fetchval("SELECT $1::int * 2", 21)
            rows = await conn.fetch("SELECT g FROM generate_series(1, 1000) g")
            return v, len(rows)
        finally:
            await conn.close(timeout=5)

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (42, 1000)


# ------------------------------------------------------------------------- raw and tls ports


def test_raw_port_relays_plaintext_postgres(edge):
    r = run_psql(edge.dsn("raw", sslmode="disable"), "-c", r"\conninfo", "-c", "SELECT 'raw'")
    assert "SSL connection" not in r.stdout, r.stdout
    assert "raw" in r.stdout


def test_raw_port_relays_postgres_own_tls(edge, pg):
    """The raw relay does not interpret SSLRequest: Postgres answers with its own cert."""
    with w.ssl_request_tls("127.0.0.1", edge.ports["raw"]) as t:
        got = t.sock.getpeercert(binary_form=True)
    assert got == ssl.PEM_cert_to_DER_cert((pg.datadir / "server.crt").read_text())


def test_tls_port_carries_plaintext_postgres_inside_tls(edge, certs):
    ctx = w.client_context(cafile=str(certs.ca))
    with w.direct_tls("127.0.0.1", edge.ports["tls"], ctx=ctx,
                      server_hostname="mydb.drawbridge.test") as t:
        t.send(w.startup_message({"user": "alice", "database": "app"}))
        typ, payload = t.read_message()
    assert typ == b"R", (typ, payload)
    assert struct.unpack("!I", payload[:4])[0] == 10, "expected AuthenticationSASL"
    assert b"SCRAM-SHA-256\0" in payload[4:]


# ------------------------------------------------------------------------- connection log


def test_closed_connection_is_logged(edge):
    with w.ssl_request_tls("127.0.0.1", edge.ports["pg_tls"]) as t:
        sport = t.sock.getsockname()[1]
        w.login_trust(t, "probe", "app")
        w.simple_query(t, "SELECT 1")
        t.send(w.TERMINATE)
        t.read_to_eof(10)

    def line():
        for ln in edge.conn_lines():
            client = re.search(r"\bclient=(\S+)", ln)
            if client and client.group(1).strip('"').endswith(f":{sport}"):
                return ln
        return None

    ln = wait_until(line, 5, what=f"a 'conn ' log line for client port {sport}")
    kv = parse_logfmt(ln[len("conn "):])
    for key in ("client", "handler", "tls", "bytes_in", "bytes_out", "duration_ms", "reason"):
        assert key in kv, (key, ln)
    assert "pg_tls" in kv["handler"], ln
    assert "1.3" in kv["tls"], ln
    assert int(kv["bytes_in"]) > 0 and int(kv["bytes_out"]) > 0, ln
    float(kv["duration_ms"])
    assert kv["reason"], ln


def test_client_chosen_names_cannot_forge_log_lines(edge):
    """T9 (docs/reliability-coverage.md): a user name, database or server name is the client's
    to choose; control characters in it are escaped, so it cannot start a log line of its own."""
    forged = "x\nconn client=6.6.6.6:1 local=- reason=forged"
    with w.ssl_request_tls("127.0.0.1", edge.ports["pg_tls"]) as t:
        sport = t.sock.getsockname()[1]
        t.send(w.startup_message({"user": forged, "database": "app\r\x1b[2Jx"}))
        # Postgres asks a role it does not know for a password all the same (SCRAM here).
        assert t.read_message()[0] in (b"R", b"E")

    def line():
        for ln in edge.conn_lines():
            if re.search(rf"\bclient=\S+:{sport}\b", ln):
                return ln
        return None

    ln = wait_until(line, 5, what=f"a 'conn ' log line for client port {sport}")
    kv = parse_logfmt(ln[len("conn "):])
    assert kv["user"] == "x\\nconn client=6.6.6.6:1 local=- reason=forged", ln
    assert kv["database"] == "app\\r\\x1b[2Jx", ln
    assert not [x for x in edge.conn_lines() if "6.6.6.6" in x.split()[1]], edge.conn_lines()
    for x in edge.conn_lines():
        parse_logfmt(x[len("conn "):])


LOGFMT_PAIR = re.compile(r'\s*([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def parse_logfmt(text: str) -> dict[str, str]:
    """Strict logfmt: the whole text is key=value pairs; values with spaces are quoted."""
    out, pos = {}, 0
    text = text.rstrip()
    while pos < len(text):
        m = LOGFMT_PAIR.match(text, pos)
        assert m and m.end() > pos, f"not logfmt at {text[pos:]!r} in {text!r}"
        k, v = m.group(1), m.group(2)
        out[k] = v[1:-1] if v.startswith('"') else v
        pos = m.end()
    return out
