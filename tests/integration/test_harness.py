"""Self-checks of the test harness against Postgres directly (no edge involved).

They show that the observations the edge tests rely on can come out both ways: the wire
helpers parse what a real server sends, the Postgres log does record a forwarded marker, the
TLS 1.1 client really can speak TLS 1.1, and the fake machine records bytes.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
import uuid
import warnings

import pgwire as w
from harness import FakeMachine, wait_until


def test_wire_helpers_against_postgres(pg):
    mark = f"harness_{uuid.uuid4().hex[:10]}"
    with w.ssl_request_tls("127.0.0.1", pg.port) as t:
        t.send(w.startup_message({"user": "probe", "database": "app", "application_name": mark,
                                  "_pq_.foo": "bar"}, version=w.PROTO_32))
        msgs = t.read_until(b"Z")
        assert msgs[0][0] == b"v" and w.parse_npv(msgs[0][1]) == (w.PROTO_30, ["_pq_.foo"])
        pid, key = w.backend_key(msgs)
        # Postgres itself hands out its real pid: the edge's rewrite check can fail.
        assert int(w.simple_query(t, "SELECT pg_backend_pid()")[0][0]) == pid
    # A StartupMessage that reaches Postgres leaves its marker in the log.
    wait_until(lambda: mark in pg.log_text(), 5, what="the marker in the Postgres log")

    with w.ssl_request_tls("127.0.0.1", pg.port) as t:
        t.send(w.startup_message({"user": "probe"}, version=4 << 16))
        f = t.read_error_then_eof()
        assert f["S"] == "FATAL" and f["C"] == "0A000", f

    with w.connect("127.0.0.1", pg.port) as c:
        c.send(struct.pack("!I", 10005) + struct.pack("!I", w.PROTO_30))
        assert c.read_to_eof(5)[0] == b""

    with w.ssl_request_tls("127.0.0.1", pg.port) as t:
        t.send(w.padded_startup_message({"user": "probe", "database": "app"}, 10004))
        assert t.read_until(b"Z")[-1][0] == b"Z"


def test_tls11_client_really_speaks_tls11(certs):
    """test_tls_1_1_is_refused is meaningful only if this client can complete TLS 1.1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.load_cert_chain(certs.server_cert, certs.server_key)
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(10)
    port = lsock.getsockname()[1]
    result = {}

    def serve():
        try:
            conn, _ = lsock.accept()
            with sctx.wrap_socket(conn, server_side=True) as s:
                result["server"] = s.version()
                s.sendall(b"ok")
        except Exception as e:  # noqa: BLE001
            result["server"] = e

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with w.tls11_max_context().wrap_socket(raw) as c:
                assert c.version() == "TLSv1.1"
                assert c.recv(2) == b"ok"
    finally:
        th.join(10)
        lsock.close()
    assert result["server"] == "TLSv1.1", result


def test_fake_machine_records_bytes():
    m = FakeMachine()
    try:
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            s.sendall(b"abc")
            time.sleep(0.05)
            s.sendall(b"def")
            assert m.wait_for(lambda d: d == b"abcdef", 5) == b"abcdef"
    finally:
        m.stop()
