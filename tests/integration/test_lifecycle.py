"""Process lifecycle of `drawbridge serve`: SIGTERM exit code, SIGHUP reload of fly.toml and
certificates. Each test runs its own short-lived edge instance."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

import harness
import pgwire as w
from harness import (EdgeProcess, fatal, fd_count, free_port, fly_toml, start_own_edge, stop_own_edge,
                     wait_fds_back, wait_until)


@pytest.fixture
def private_edge(pg, certs):
    """Factory for an edge of its own, with its own copies of the certificate files."""
    made: list[EdgeProcess] = []
    dirs: list[Path] = []

    def make(ports: dict[str, int]) -> EdgeProcess:
        d = Path(tempfile.mkdtemp(prefix="drawbridge-it-private-"))
        dirs.append(d)
        own = replace(certs, server_cert=d / "mydb.pem", server_key=d / "mydb.key",
                      other_cert=d / "other.pem", other_key=d / "other.key")
        for src, dst in ((certs.server_cert, own.server_cert), (certs.server_key, own.server_key),
                         (certs.other_cert, own.other_cert), (certs.other_key, own.other_key)):
            shutil.copy(src, dst)
        e = EdgeProcess(d, toml_for(pg, ports), own, ports)
        made.append(e)
        e.start()
        return e

    yield make
    bad = []
    for e in made:
        rc = e.stop(timeout=45)
        if rc != 0:
            bad.append(f"exit code {rc} after SIGTERM\n{e.log_text()[-3000:]}")
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    assert not bad, bad


def pg_tls_services(machine, ports: dict[str, int]) -> list[dict]:
    """A pg_tls service on each public port to `machine` (Postgres or a stand-in: its .port)."""
    return [dict(internal_port=machine.port, port=p, handlers=["pg_tls"]) for p in ports.values()]


def toml_for(pg, ports: dict[str, int]) -> str:
    return fly_toml(pg_tls_services(pg, ports))


def answers_S(port: int) -> bool:
    try:
        with w.connect("127.0.0.1", port, timeout=2) as c:
            c.send(w.SSL_REQUEST)
            return c.recv_exact(1, 2) == b"S"
    except (OSError, w.PgWireError):
        return False


def test_sigterm_exits_zero(private_edge):
    port = free_port()
    e = private_edge({"a": port})
    assert answers_S(port)
    rc = e.stop(timeout=20)
    assert rc == 0, f"exit code {rc} after SIGTERM\n{e.log_text()[-3000:]}"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_sighup_reloads_fly_toml_without_dropping_sessions(private_edge, pg):
    a, b = free_port(), free_port()
    e = private_edge({"a": a})
    assert not answers_S(b)
    with w.ssl_request_tls("127.0.0.1", a) as t:
        w.login_trust(t, "probe", "app")
        e.config.write_text(toml_for(pg, {"a": a, "b": b}))
        e.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: answers_S(b), 10, what="the new port to be served after SIGHUP")
        assert e.alive()
        assert answers_S(a)
        # The session opened before the reload still works.
        assert w.simple_query(t, "SELECT 'survived'") == [["survived"]]
    with w.ssl_request_tls("127.0.0.1", b) as t:
        w.login_trust(t, "probe", "app")


def test_sighup_reloads_certificates(private_edge):
    port = free_port()
    e = private_edge({"a": port})
    fresh = harness.make_certs()  # a new CA and new leaves for the same names
    try:
        def served_der() -> bytes:
            with w.ssl_request_tls("127.0.0.1", port, server_hostname="mydb.drawbridge.test") as t:
                return t.sock.getpeercert(binary_form=True)

        old = ssl.PEM_cert_to_DER_cert(e.certs.server_cert.read_text())
        new = ssl.PEM_cert_to_DER_cert(fresh.server_cert.read_text())
        assert served_der() == old
        shutil.copy(fresh.server_key, e.certs.server_key)
        shutil.copy(fresh.server_cert, e.certs.server_cert)
        e.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: served_der() == new, 10, what="the rotated certificate to be served")
        assert e.alive()
    finally:
        shutil.rmtree(fresh.dir, ignore_errors=True)


@pytest.mark.parametrize("bad", ["toml_syntax", "unknown_handler", "port_zero", "cert_key_mismatch",
                                 "cert_missing"])
def test_sighup_with_a_bad_file_keeps_the_old_state_serving(private_edge, pg, bad):
    """T38 (docs/reliability-coverage.md): a reload that fails changes nothing: the edge stays
    up, the old ports and the old certificate keep serving, the log says what was wrong (file
    and line for a fly.toml), and the next good reload applies."""
    a, b = free_port(), free_port()
    e = private_edge({"a": a})
    good_toml = e.config.read_text()
    old_cert = ssl.PEM_cert_to_DER_cert(e.certs.server_cert.read_text())
    cert_text, key_text = e.certs.server_cert.read_text(), e.certs.server_key.read_text()

    def served_der() -> bytes:
        with w.ssl_request_tls("127.0.0.1", a, server_hostname="mydb.drawbridge.test") as t:
            return t.sock.getpeercert(binary_form=True)

    if bad == "toml_syntax":
        e.config.write_text(toml_for(pg, {"a": a, "b": b}) + "\n[[services\n")
        expect = "routes not reloaded"
    elif bad == "unknown_handler":
        e.config.write_text(toml_for(pg, {"a": a, "b": b}).replace('"pg_tls"', '"pgtls"', 1))
        expect = "routes not reloaded"
    elif bad == "port_zero":
        e.config.write_text(toml_for(pg, {"a": a, "b": 0}))
        expect = "routes not reloaded"
    elif bad == "cert_key_mismatch":
        e.certs.server_key.write_text(e.certs.other_key.read_text())
        expect = "certificates not reloaded"
    else:
        e.certs.server_cert.unlink()
        expect = "certificates not reloaded"
    e.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: expect in e.log_text(), 10, what=f"'{expect}' in the log")
    line = [ln for ln in e.log_text().splitlines() if expect in ln][-1]
    if not bad.startswith("cert"):
        assert re.search(r"fly\.toml:\d+: ", line), line
    said = {"toml_syntax": "expected ']'", "unknown_handler": 'unknown handler "pgtls"',
            "port_zero": "services[1].ports[0].port", "cert_key_mismatch": "mydb.key",
            "cert_missing": "mydb.pem"}[bad]
    assert said in line, line
    assert e.alive()
    assert answers_S(a) and not answers_S(b)
    assert served_der() == old_cert
    with w.ssl_request_tls("127.0.0.1", a) as t:
        w.login_trust(t, "probe", "app")
        assert w.simple_query(t, "SELECT 'old state'") == [["old state"]]
    # Put the good files back: the next reload applies (with port b this time).
    e.certs.server_cert.write_text(cert_text)
    e.certs.server_key.write_text(key_text)
    e.config.write_text(toml_for(pg, {"a": a, "b": b}))
    e.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: answers_S(b), 10, what="the good reload to open port b")
    assert served_der() == old_cert
    assert good_toml != e.config.read_text()


def test_sessions_open_past_the_drain_timeout_are_closed_and_logged(pg, certs):
    """SIGTERM lets open sessions run until the drain timeout, then the edge closes them: a
    client waiting between two messages gets FATAL 57P01 (as from PostgreSQL at a fast
    shutdown) and its connection ends, the edge exits 0 and logs the session with
    reason=relay_stopped (counted as closed, not left active)."""
    port = free_port()
    e = start_own_edge("drain", pg_tls_services(pg, {"a": port}), certs, {"a": port},
                       extra_args=("--drain-timeout-ms", "500"))
    try:
        with w.ssl_request_tls("127.0.0.1", port) as t:
            w.login_trust(t, "probe", "app")
            rc = e.stop(timeout=20)
            assert rc == 0, f"exit code {rc} after SIGTERM\n{e.log_text()[-3000:]}"
            fields = t.read_error_then_eof(10)
            fatal(fields, "57P01")
        stopped = [ln for ln in e.conn_lines() if "reason=relay_stopped" in ln]
        assert len(stopped) == 1, e.log_text()[-3000:]
        counters = [ln for ln in e.log_text().splitlines() if "counters accepted=" in ln]
        assert counters and " active=0 " in counters[-1], counters
    finally:
        stop_own_edge(e)


def test_drain_ends_when_the_last_session_closes(pg, certs):
    """The drain waits for the open connections themselves, not a timer: once the last session
    ends the edge exits, long before the drain timeout."""
    port = free_port()
    e = start_own_edge("drain-early", pg_tls_services(pg, {"a": port}), certs, {"a": port},
                       extra_args=("--drain-timeout-ms", "60000"))
    try:
        with w.ssl_request_tls("127.0.0.1", port) as t:
            w.login_trust(t, "probe", "app")
            e.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "stopping: no new connections; draining 1 open" in e.log_text(),
                       10, what="the edge to start draining with one session")
            assert w.simple_query(t, "SELECT 'still here'") == [["still here"]]
            t.send(w.TERMINATE)
        rc = e.proc.wait(15)  # the session's end, not the 60 s timeout, ends the drain
        assert rc == 0, f"exit code {rc}\n{e.log_text()[-3000:]}"
        lines = e.conn_lines()
        assert len(lines) == 1 and "reason=client_closed" in lines[0], e.log_text()[-3000:]
    finally:
        stop_own_edge(e)


def test_a_connection_still_negotiating_at_the_end_is_logged(pg, certs):
    """A client that was answered 'S' but never starts its TLS handshake is still negotiating
    when the drain ends: it is closed, counted and logged (reason=edge_stopped), not lost."""
    port = free_port()
    e = start_own_edge("drain-parked", pg_tls_services(pg, {"a": port}), certs, {"a": port},
                       extra_args=("--drain-timeout-ms", "300"))
    try:
        with w.connect("127.0.0.1", port, timeout=5) as idle:
            idle.send(w.SSL_REQUEST)
            assert idle.recv_exact(1, 5) == b"S"  # accepted, and negotiating
            rc = e.stop(timeout=20)
            assert rc == 0, f"exit code {rc}\n{e.log_text()[-3000:]}"
            data, how = idle.read_to_eof(5)
            assert (data, how) == (b"", "eof"), (data, how)
        stopped = [ln for ln in e.conn_lines() if "reason=edge_stopped" in ln]
        assert len(stopped) == 1, e.log_text()[-3000:]
        counters = [ln for ln in e.log_text().splitlines() if "counters accepted=" in ln]
        assert counters and " active=0 " in counters[-1] and " closed=1 " in counters[-1], counters
    finally:
        stop_own_edge(e)


def test_second_sigterm_ends_the_drain_at_once(pg, certs):
    """T42 (docs/reliability-coverage.md): after SIGTERM the listeners close at once while open
    sessions keep working; a second SIGTERM closes them (FATAL 57P01) without waiting out the
    drain timeout, and the edge exits 0."""
    port = free_port()
    e = start_own_edge("sigterm2", pg_tls_services(pg, {"a": port}), certs, {"a": port},
                       extra_args=("--drain-timeout-ms", "60000"))
    try:
        with w.ssl_request_tls("127.0.0.1", port) as t:
            w.login_trust(t, "probe", "app")
            e.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "stopping: no new connections" in e.log_text(), 10,
                       what="the edge to start draining")
            assert not answers_S(port)
            assert w.simple_query(t, "SELECT 'still here'") == [["still here"]]
            assert e.alive()
            e.proc.send_signal(signal.SIGTERM)
            fields = t.read_error_then_eof(10)
            fatal(fields, "57P01")
            rc = e.proc.wait(10)  # well before the 60 s drain timeout
            assert rc == 0, f"exit code {rc}\n{e.log_text()[-3000:]}"
        assert "second SIGTERM: closing 1 open connections now" in e.log_text(), e.log_text()
        assert [ln for ln in e.conn_lines() if "reason=relay_stopped" in ln], e.log_text()
    finally:
        stop_own_edge(e)


def test_blackholed_machine_gets_fatal_08006_and_leaves_nothing_behind(certs):
    """T23/T24 (docs/reliability-coverage.md): a machine whose packets are dropped. A client
    that waits gets FATAL 08006 (no address) once the connect attempt times out; clients that
    leave while the edge is still connecting leave no descriptor behind; the edge keeps
    running."""
    hole = harness.BlackholeMachine()
    port = free_port()
    startup = w.startup_message({"user": "probe", "database": "app"})
    e = None
    try:
        e = start_own_edge("blackhole", pg_tls_services(hole, {"a": port}), certs, {"a": port},
                           extra_args=("--connect-timeout-ms", "1000"))
        fds_before = fd_count(e.pid)
        # Bounded well below the kernel's own SYN retries (over a minute) by the read timeout.
        with w.ssl_request_tls("127.0.0.1", port) as t:
            t.send(startup)
            fields = t.read_error_then_eof(15)
        fatal(fields, "08006")
        assert "127.0.0.1" not in str(fields) and str(hole.port) not in str(fields), fields
        for _ in range(20):
            t = w.ssl_request_tls("127.0.0.1", port)
            t.send(startup)
            t.close()
        wait_until(lambda: len(e.conn_lines()) >= 21, 15, what="21 connections logged")
        wait_fds_back(e, fds_before)
        assert e.alive()
    finally:
        hole.stop()
        if e is not None:
            was_alive = e.alive()
            rc, tail = stop_own_edge(e)
            assert not was_alive or rc == 0, f"exit code {rc}\n{tail}"


@pytest.mark.parametrize("flag,value", [("--handshake-timeout-ms", "0"),
                                        ("--connect-timeout-ms", "-5"),
                                        ("--drain-timeout-ms", "99999999999"),
                                        ("--threads", "0"), ("--threads", "many")])
def test_out_of_range_flags_are_refused_by_name(flag, value):
    """A timeout of 0 would close every connection at once: the edge refuses to start, and
    says which flag and why, instead of serving badly."""
    p = harness.run([str(harness.drawbridge_bin()), "serve", "-c", "/dev/null", flag, value],
                    check=False, timeout=20)
    assert p.returncode != 0, p
    assert flag in p.stderr + p.stdout, p
