"""Byte-level checks of the pg_tls handler (docs/protocol.md: checklist rows 1-7, the sections
from "Startup packets" to "Closing after a FATAL", and the startup state machine), TLS
settings, SNI, PROXY protocol headers and bounded buffering. Case numbers (T30) are those of
docs/reliability-coverage.md.

The scripted client logs in as `probe`, a trust-authenticated role, so no SCRAM is needed.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time

import pytest

import pgwire as w
from harness import assert_edge_serves, fatal, marker, wait_until

H4 = "127.0.0.1"
H6 = "::1"


def assert_no_more_bytes(conn: w.WireConn, wait: float = 0.5) -> None:
    conn.sock.settimeout(wait)
    try:
        extra = conn.sock.recv(100)
    except (socket.timeout, TimeoutError):
        return
    raise AssertionError(f"unexpected bytes/close after the answer: {extra!r}")


# ------------------------------------------------------------------------- SSLRequest


def test_ssl_request_answered_with_single_S_then_tls_login(edge):
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(w.SSL_REQUEST)
        assert c.recv_exact(1) == b"S"
        assert_no_more_bytes(c)  # exactly one byte, then the server waits for ClientHello
        t = w.start_tls(c, w.client_context())
        msgs = w.login_trust(t, "probe", "app")
        assert msgs[0] == (b"R", struct.pack("!I", 0)), msgs[0]
        assert [m for m, _ in msgs][-1] == b"Z"


@pytest.mark.parametrize("service", ["pg_tls", "proxy_pg_tls"])
def test_ssl_request_with_pipelined_plaintext_is_refused(edge, pg, fake_v1, service):
    mark = marker("pipelined")
    startup = w.startup_message({"user": "probe", "database": "app", "application_name": mark})
    with w.connect(H4, edge.ports[service]) as c:
        c.send(w.SSL_REQUEST + startup)  # one write: the CVE-2021-23214 shape
        f = c.read_error_then_eof(10)  # a plaintext ErrorResponse, then the close
    fatal(f, "08P01")
    assert "received unencrypted data after SSL request" in f["M"], f
    # Postgres (trust role, log_connections=on) and the fake machine must never have seen it.
    time.sleep(1.0)
    assert mark not in pg.log_text(), "the pipelined StartupMessage reached Postgres"
    assert not any(mark.encode() in d for d in fake_v1.snapshot()), \
        "the pipelined StartupMessage reached the machine"


# ------------------------------------------------------------------------- GSSENCRequest


def test_gssenc_refused_then_ssl_request_accepted(edge):
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(w.GSSENC_REQUEST)
        assert c.recv_exact(1) == b"N"
        assert_no_more_bytes(c)
        c.send(w.SSL_REQUEST)
        assert c.recv_exact(1) == b"S"
        t = w.start_tls(c, w.client_context())
        w.login_trust(t, "probe", "app")
        assert w.simple_query(t, "SELECT 'gss-then-ssl'") == [["gss-then-ssl"]]


def test_second_gssenc_request_is_refused(edge):
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(w.GSSENC_REQUEST)
        assert c.recv_exact(1) == b"N"
        c.send(w.GSSENC_REQUEST)
        data, how = c.read_to_eof(10)
    assert data[:1] not in (b"N", b"G"), f"second GSSENCRequest was negotiated again: {data!r}"
    if data:  # an error is fine, a bare close is fine
        msgs = w.parse_messages(data)
        assert [t for t, _ in msgs] == [b"E"], msgs
        assert w.parse_error_fields(msgs[0][1])["S"] == "FATAL"


def test_second_ssl_request_inside_tls_is_protocol_violation(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.SSL_REQUEST)
        fatal(t.read_error_then_eof(), "08P01")


def test_gssenc_request_inside_tls_is_refused(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.GSSENC_REQUEST)
        data, how = t.read_to_eof(10)
    assert data[:1] not in (b"N", b"G"), data
    if data:
        msgs = w.parse_messages(data)
        assert [m for m, _ in msgs] == [b"E"], msgs
        assert w.parse_error_fields(msgs[0][1])["S"] == "FATAL"


# ------------------------------------------------------------------------- direct TLS


def test_direct_tls_with_alpn_postgresql(edge):
    with w.direct_tls(H4, edge.ports["pg_tls"], alpn=["postgresql"]) as t:
        assert t.sock.selected_alpn_protocol() == "postgresql"
        t.send(w.startup_message({"user": "probe", "database": "app"}))
        typ, payload = t.read_message()
        assert typ == b"R", (typ, payload)
        msgs = t.read_until(b"Z")
        assert msgs[-1][0] == b"Z"
        assert w.simple_query(t, "SELECT 'direct'") == [["direct"]]


def test_direct_tls_with_alpn_postgresql_among_others(edge):
    with w.direct_tls(H4, edge.ports["pg_tls"], alpn=["h2", "postgresql"]) as t:
        assert t.sock.selected_alpn_protocol() == "postgresql"


def test_direct_tls_with_foreign_alpn_gets_no_application_protocol_alert(edge):
    with pytest.raises(ssl.SSLError) as ei:
        c = w.direct_tls(H4, edge.ports["pg_tls"], alpn=["h2", "http/1.1"])
        # TLS 1.3: a server-side alert may only surface on the first read.
        c.read_message(5)
    assert "NO APPLICATION PROTOCOL" in str(ei.value).upper().replace("_", " "), ei.value
    assert_edge_serves(edge)


def test_direct_tls_without_alpn_gets_fatal_08P01(edge):
    with w.direct_tls(H4, edge.ports["pg_tls"], alpn=None) as t:
        assert t.sock.selected_alpn_protocol() is None
        try:
            data, how = t.read_to_eof(3)
        except w.PgWireError:
            # The edge may wait for the StartupMessage before refusing.
            t.send(w.startup_message({"user": "probe", "database": "app"}))
            data, how = t.read_to_eof(10)
    msgs = w.parse_messages(data)
    assert [m for m, _ in msgs] == [b"E"], (data, how)
    fatal(w.parse_error_fields(msgs[0][1]), "08P01")


# ------------------------------------------------------------------------- StartupMessage


def test_plaintext_startup_gets_fatal_28000_then_clean_close(edge):
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(w.startup_message({"user": "alice", "database": "app"}))
        data, how = c.read_to_eof(10)
    assert how == "eof", f"expected a clean close after the error, got {how}"
    assert data[:1] == b"E", data
    (n,) = struct.unpack("!I", data[1:5])
    assert n == len(data) - 1, "length field must count itself and the body, not the 'E'"
    msgs = w.parse_messages(data)
    assert len(msgs) == 1, msgs
    f = w.parse_error_fields(msgs[0][1])
    assert {"S", "V", "C", "M"} <= f.keys(), f
    assert f["S"] == "FATAL" and f["V"] == "FATAL", f
    assert f["C"] == "28000", f
    assert "SSL/TLS is required" in f["M"], f
    assert "sslmode=require" in f["M"] or "sslmode=require" in f.get("H", ""), f


@pytest.mark.parametrize("first_bytes", [
    struct.pack("!I", 7) + b"\x00\x03\x00",
    struct.pack("!I", 4),
    struct.pack("!I", 10005) + struct.pack("!I", w.PROTO_30),
    struct.pack("!I", 0x7FFFFFFF) + struct.pack("!I", w.PROTO_30),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["len7", "len4", "len10005", "len2G", "http"])
def test_bad_startup_length_closes_silently(edge, first_bytes):
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(first_bytes)
        data, how = c.read_to_eof(10)
    assert data == b"", f"expected a silent close, got {data!r}"
    assert_edge_serves(edge)


def test_startup_length_10004_inside_tls_is_accepted(edge):
    msg = w.padded_startup_message({"user": "probe", "database": "app"}, 10004)
    assert struct.unpack("!I", msg[:4])[0] == 10004
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(msg)
        msgs = t.read_until(b"Z", 15)
    assert msgs[0][0] == b"R", msgs[0]
    assert msgs[-1][0] == b"Z", [m for m, _ in msgs]


def test_startup_length_10005_inside_tls_is_refused(edge):
    msg = w.padded_startup_message({"user": "probe", "database": "app"}, 10005)
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(msg)
        data, how = t.read_to_eof(10)
    assert data == b"", f"expected a silent close, got {data!r}"


def test_protocol_major_4_gets_fatal_0A000(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.startup_message({"user": "probe", "database": "app"}, version=4 << 16))
        fatal(t.read_error_then_eof(), "0A000")


def test_protocol_3_2_with_pq_option_is_negotiated_not_refused(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.startup_message({"user": "probe", "database": "app", "_pq_.foo": "bar"},
                                 version=w.PROTO_32))
        msgs = t.read_until(b"Z", 15)
    types = [m for m, _ in msgs]
    assert types[0] == b"v", f"expected NegotiateProtocolVersion first, got {types}"
    newest, unknown = w.parse_npv(msgs[0][1])
    assert newest == w.PROTO_30, newest  # Postgres 15 speaks 3.0
    assert unknown == ["_pq_.foo"], unknown
    assert b"E" not in types and types[-1] == b"Z", types


def test_backend_key_data_is_rewritten(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        msgs = w.login_trust(t, "probe", "app")
        pid, key = w.backend_key(msgs)
        real_pid = int(w.simple_query(t, "SELECT pg_backend_pid()")[0][0])
    assert 1 <= len(key) <= 256
    assert pid != real_pid, "the client sees the backend's real pid: BackendKeyData not rewritten"


# ------------------------------------------------------------------------- CancelRequest


class SleepingSession:
    """A probe session through the edge that runs pg_sleep(60) until cancelled."""

    def __init__(self, edge, pg):
        self.pg = pg
        self.app = marker("cancel")
        self.conn = w.ssl_request_tls(H4, edge.ports["pg_tls"])
        msgs = w.login_trust(self.conn, "probe", "app", {"application_name": self.app})
        self.pid, self.key = w.backend_key(msgs)
        self.conn.send(w.query_message("SELECT pg_sleep(60)"))
        wait_until(self.running, 10, what="pg_sleep to be active")
        self.backend_pid = self.pg.activity(self.app)[0][0]

    def running(self) -> bool:
        return any(st == "active" and "pg_sleep" in q for _, st, q, _ in self.pg.activity(self.app))

    def expect_cancelled(self, timeout: float = 5.0) -> None:
        msgs = self.conn.read_until(b"Z", timeout)
        errs = [w.parse_error_fields(p) for t, p in msgs if t == b"E"]
        assert errs and errs[0]["C"] == "57014", msgs
        assert "canceling statement due to user request" in errs[0]["M"], errs

    def close(self) -> None:
        self.conn.close()
        self.pg.terminate(self.app)


@pytest.mark.parametrize("how", ["plaintext", "ssl_request_tls", "direct_tls"])
def test_cancel_request_is_routed_and_gets_no_reply(edge, pg, how):
    s = SleepingSession(edge, pg)
    try:
        pkt = w.cancel_request(s.pid, s.key)
        port = edge.ports["pg_tls"]
        if how == "plaintext":
            c = w.connect(H4, port)
        elif how == "ssl_request_tls":
            c = w.ssl_request_tls(H4, port)
        else:
            c = w.direct_tls(H4, port)
        with c:
            c.send(pkt)
            reply, _ = c.read_to_eof(10)
        assert reply == b"", f"a CancelRequest must never be answered: {reply!r}"
        s.expect_cancelled()
        wait_until(lambda: not s.running(), 1.0, what="pg_sleep to stop")
    finally:
        s.close()


def test_cancel_with_wrong_key_cancels_nothing(edge, pg):
    s = SleepingSession(edge, pg)
    try:
        bad_key = bytes(b ^ 0x5A for b in s.key)
        for pkt in (w.cancel_request(s.pid, bad_key),               # right pid, wrong key
                    w.cancel_request(s.backend_pid, s.key),         # real pid, edge key
                    w.cancel_request(s.backend_pid, os.urandom(4))):
            reply, _ = w.cancel_no_reply(H4, edge.ports["pg_tls"], pkt)
            assert reply == b""
        time.sleep(1.5)
        assert s.running(), "a cancel with a wrong key cancelled the query"
        s.conn.sock.settimeout(0.2)
        with pytest.raises((socket.timeout, TimeoutError)):
            s.conn.sock.recv(1)
        # The right key still works, so the test above can fail for the right reason.
        w.cancel_no_reply(H4, edge.ports["pg_tls"], w.cancel_request(s.pid, s.key))
        s.expect_cancelled()
    finally:
        s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
@pytest.mark.parametrize("key_len", [1, 4, 256, 0, 257])
def test_cancel_request_key_lengths_never_answered(edge, tls, key_len):
    pkt = w.cancel_request(int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF, os.urandom(key_len))
    reply, how = w.cancel_no_reply(H4, edge.ports["pg_tls"], pkt, tls=tls, timeout=10)
    assert reply == b"", f"CancelRequest (key {key_len} bytes) got a reply: {reply!r}"
    assert_edge_serves(edge)


def test_cancel_request_with_trailing_bytes_does_not_crash(edge):
    pkt = w.cancel_request(12345, os.urandom(4)) + w.TERMINATE
    reply, _ = w.cancel_no_reply(H4, edge.ports["pg_tls"], pkt)
    assert reply == b""
    assert_edge_serves(edge)


# ------------------------------------------------------------------------- TLS settings


def test_tls_1_1_is_refused(edge):
    with pytest.raises(ssl.SSLError) as ei:
        w.ssl_request_tls(H4, edge.ports["pg_tls"], w.tls11_max_context())
    # The refusal must come from the server (an alert), not from a client unable to offer 1.1.
    msg = str(ei.value).upper()
    assert "ALERT" in msg or "UNSUPPORTED_PROTOCOL" in msg, ei.value


def test_tls_1_2_is_accepted(edge):
    ctx = w.client_context(max_version=ssl.TLSVersion.TLSv1_2)
    with w.ssl_request_tls(H4, edge.ports["pg_tls"], ctx) as t:
        assert t.sock.version() == "TLSv1.2"
        w.login_trust(t, "probe", "app")


def test_default_negotiates_tls_1_3_without_compression(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        assert t.sock.version() == "TLSv1.3"
        assert t.sock.compression() is None


# ------------------------------------------------------------------------- unreachable machine


def test_unreachable_machine_gets_fatal_08006_without_address(edge, dead_port):
    with w.ssl_request_tls(H4, edge.ports["unreachable"]) as t:
        t.send(w.startup_message({"user": "probe", "database": "app"}))
        data, how = t.read_to_eof(20)
    msgs = w.parse_messages(data)
    assert [m for m, _ in msgs] == [b"E"], (data, how)
    f = w.parse_error_fields(msgs[0][1])
    fatal(f, "08006")
    assert b"127.0.0.1" not in data, f"the machine's address leaked: {f}"
    assert str(dead_port).encode() not in data, f"the machine's port leaked: {f}"


# ------------------------------------------------------------------------- SNI


def der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(open(path).read())


@pytest.mark.parametrize("sni,which", [
    ("other.drawbridge.test", "other"),
    ("mydb.drawbridge.test", "server"),
    (None, "server"),
    ("unknown.drawbridge.test", "server"),
])
@pytest.mark.parametrize("mode", ["ssl_request", "direct"])
def test_sni_selects_certificate(edge, certs, sni, which, mode):
    want = der(certs.other_cert if which == "other" else certs.server_cert)
    port = edge.ports["pg_tls"]
    if mode == "direct":
        t = w.direct_tls(H4, port, server_hostname=sni)
    else:
        t = w.ssl_request_tls(H4, port, server_hostname=sni)
    with t:
        assert t.sock.getpeercert(binary_form=True) == want


def test_sni_other_verifies_against_ca(edge, certs):
    ctx = w.client_context(cafile=str(certs.ca))
    with w.ssl_request_tls(H4, edge.ports["pg_tls"], ctx,
                           server_hostname="other.drawbridge.test") as t:
        w.login_trust(t, "probe", "app")


# ------------------------------------------------------------------------- PROXY protocol

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.mark.parametrize("host,fam", [(H4, "TCP4"), (H6, "TCP6")])
def test_proxy_v1_header_then_plaintext_startup(edge, fake_v1, host, fam):
    port = edge.ports["proxy_pg_tls"]
    mark = marker("proxyv1")
    startup = w.startup_message({"user": "probe", "database": "app", "application_name": mark})
    with w.ssl_request_tls(host, port) as t:
        sport = t.sock.getsockname()[1]
        t.send(startup)
        got = fake_v1.wait_for(lambda d: mark.encode() in d, 10,
                               what="the startup packet at the fake machine")
    header = f"PROXY {fam} {host} {host} {sport} {port}\r\n".encode()
    assert got[:len(header)] == header, got[:120]
    assert got[len(header):len(header) + len(startup)] == startup, got[:400]


@pytest.mark.parametrize("host", [H4, H6])
def test_proxy_v2_header_then_raw_bytes(edge, fake_v2, host):
    port = edge.ports["proxy_v2"]
    payload = b"hello-" + marker("proxyv2").encode()
    with w.connect(host, port) as c:
        sport = c.sock.getsockname()[1]
        c.send(payload)
        got = fake_v2.wait_for(lambda d: payload in d, 10, what="the payload at the fake machine")
    assert got[:12] == V2_SIG, got[:32]
    assert got[12] == 0x21, f"version/command byte {got[12]:#x} (want v2 PROXY)"
    (hlen,) = struct.unpack("!H", got[14:16])
    fam, alen, want_fam = ((socket.AF_INET, 4, 0x11) if host == H4
                           else (socket.AF_INET6, 16, 0x21))  # TCP over IPv4 / IPv6
    assert got[13] == want_fam, f"family byte {got[13]:#x}, want {want_fam:#x}"
    assert hlen >= 2 * alen + 4, hlen
    src = socket.inet_ntop(fam, got[16:16 + alen])
    dst = socket.inet_ntop(fam, got[16 + alen:16 + 2 * alen])
    sp, dp = struct.unpack("!HH", got[16 + 2 * alen:20 + 2 * alen])
    assert (src, dst, sp, dp) == (host, host, sport, port)
    assert got[16 + hlen:] == payload, got[16 + hlen:]


# ------------------------------------------------------------------------- bounded buffers


@pytest.mark.slow
def test_stalled_reader_does_not_grow_edge_memory(edge, pg):
    """T30: a client that stops reading during a 200 MB COPY makes Postgres
    block (the edge stops reading from it), and the edge's RSS grows by less than 1 MiB
    (measured: 110-140 KiB)."""
    app = marker("stall")
    limit_kb = 1024
    t = w.WireConn(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    t.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    t.sock.settimeout(10)
    t.sock.connect((H4, edge.ports["pg_tls"]))
    t.send(w.SSL_REQUEST)
    assert t.recv_exact(1) == b"S"
    t = w.start_tls(t, w.client_context())
    try:
        w.login_trust(t, "probe", "app", {"application_name": app})
        base = edge.rss_kb()
        # ~200 MB of COPY data that the client never reads.
        t.send(w.query_message(
            "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 200000)) TO STDOUT"))
        peak = base
        stalled = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            peak = max(peak, edge.rss_kb())
            rows = pg.activity(app)
            assert rows, "the backend went away"
            _, state, _, wait_event = rows[0]
            if state != "active":
                break  # finished: everything was buffered somewhere
            if wait_event == "ClientWrite":
                stalled = True
                break
            time.sleep(0.1)
        for _ in range(20):  # keep watching a little after the stall
            peak = max(peak, edge.rss_kb())
            time.sleep(0.1)
        assert peak - base < limit_kb, f"edge RSS grew by {peak - base} KiB"
        assert stalled, ("Postgres never blocked writing to the edge: the edge kept reading "
                         "from the machine although the client did not read")
    finally:
        t.close()
        pg.terminate(app)


# ------------------------------------------------------------------------- framing and lifetime


def test_ssl_request_and_startup_in_fragments(edge):
    """Partial input: every byte in its own segment still negotiates and logs in."""
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        for b in w.SSL_REQUEST:
            c.send(bytes([b]))
            time.sleep(0.02)
        assert c.recv_exact(1) == b"S"
        t = w.start_tls(c, w.client_context())
        msg = w.startup_message({"user": "probe", "database": "app"})
        for i in range(0, len(msg), 3):
            t.send(msg[i:i + 3])
            time.sleep(0.01)
        assert t.read_until(b"Z")[-1][0] == b"Z"


def test_silent_clients_are_closed_by_pre_auth_deadline(edge):
    """docs/connection.md, "Deadlines": one covers accept -> TLS -> StartupMessage (10 s), whether
    the client stops before its SSLRequest, before its ClientHello, or after the handshake
    (where the edge parks the connection without a coroutine)."""
    port = edge.ports["pg_tls"]
    silent = w.connect(H4, port)
    after_s = w.connect(H4, port)
    after_tls = w.connect(H4, port)
    before = len([ln for ln in edge.conn_lines() if "reason=handshake_timeout" in ln])
    try:
        after_s.send(w.SSL_REQUEST)
        assert after_s.recv_exact(1) == b"S"  # ...and then never a ClientHello
        after_tls.send(w.SSL_REQUEST)
        assert after_tls.recv_exact(1) == b"S"
        t = w.start_tls(after_tls, w.client_context())  # ...and then never a StartupMessage
        for c in (silent, after_s, t):
            data, how = c.read_to_eof(30)
            assert data == b"", data
        wait_until(lambda: len([ln for ln in edge.conn_lines()
                                if "reason=handshake_timeout" in ln]) >= before + 3,
                   10, what="three handshake_timeout log lines")
    finally:
        silent.close()
        after_s.close()
        after_tls.close()


def test_client_disconnect_ends_backend(edge, pg):
    app = marker("clientgone")
    t = w.ssl_request_tls(H4, edge.ports["pg_tls"])
    try:
        w.login_trust(t, "probe", "app", {"application_name": app})
        assert pg.activity(app)
        t.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        t.close()  # abrupt: no Terminate, RST
    try:
        wait_until(lambda: not pg.activity(app), 5,
                   what="the backend to end after its client vanished")
    finally:
        pg.terminate(app)


def test_backend_termination_reaches_client(edge, pg):
    app = marker("backendgone")
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        w.login_trust(t, "probe", "app", {"application_name": app})
        pg.terminate(app)
        data, how = t.read_to_eof(10)
    msgs = w.parse_messages(data)
    assert [m for m, _ in msgs] == [b"E"], (data, how)
    assert w.parse_error_fields(msgs[0][1])["C"] == "57P01"


def test_machine_answer_and_close_in_one_segment_reach_the_client(edge, closing_machine):
    """The machine's last bytes and its FIN arrive together (one event on the edge's
    edge-triggered relay): the client gets both, not the bytes and then silence."""
    for _ in range(3):
        with w.connect(H4, edge.ports["say_and_close"]) as c:
            c.send(b"hi")
            data, how = c.read_to_eof(10)
            assert data == b"last words", data
            assert how == "eof", how


def test_query_pipelined_with_startup_in_one_record_is_forwarded(edge):
    """Bytes after the StartupMessage in the same TLS record belong to the session."""
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.startup_message({"user": "probe", "database": "app"})
               + w.query_message("SELECT 'pipelined'"))
        assert t.read_until(b"Z")[-1][0] == b"Z"  # after authentication
        msgs = t.read_until(b"Z")                  # after the query
    rows = [p for m, p in msgs if m == b"D"]
    assert len(rows) == 1 and rows[0].endswith(b"pipelined"), msgs


def test_gssenc_refused_then_plaintext_startup_gets_28000(edge):
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(w.GSSENC_REQUEST)
        assert c.recv_exact(1) == b"N"
        c.send(w.startup_message({"user": "alice", "database": "app"}))
        fatal(c.read_error_then_eof(), "28000")


def test_plaintext_unsupported_protocol_gets_fatal_error(edge):
    """docs/protocol.md, "Startup state machine": a non-3.x code in plaintext is refused with a
    FATAL, not a bare close."""
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        c.send(w.startup_message({"user": "alice"}, version=4 << 16))
        f = c.read_error_then_eof()
    assert f["S"] == "FATAL" and f["C"] in ("0A000", "28000"), f


def test_startup_without_user_gets_fatal_28000(edge):
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.startup_message({"database": "app"}))
        fatal(t.read_error_then_eof(), "28000")


def test_startup_without_terminator_gets_fatal_08P01(edge):
    body = struct.pack("!I", w.PROTO_30) + b"user\0probe\0database\0app\0"  # no final NUL
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(struct.pack("!I", len(body) + 4) + body)
        fatal(t.read_error_then_eof(), "08P01")


def raw_startup(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A StartupMessage from raw key/value bytes, repeats and all."""
    body = struct.pack("!I", w.PROTO_30) + b"".join(k + b"\0" + v + b"\0" for k, v in pairs)
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


@pytest.mark.parametrize("case", ["duplicate_database", "2000_parameters", "invalid_utf8",
                                  "control_characters", "options_c_search_path", "9000_bytes"])
def test_hostile_startup_parameters_get_an_answer_and_leave_the_edge_serving(edge, case):
    """T9: each of these ends in a clean answer (the login, or a FATAL from the
    edge or from Postgres, passed through), never a crash or a hang; the edge serves next."""
    base = [(b"user", b"probe"), (b"database", b"app")]
    pairs = {
        "duplicate_database": base + [(b"database", b"postgres")],
        "2000_parameters": base + [(bytes([97 + i // 26, 97 + i % 26]), b"")  # "aa".."zz"
                                   for i in range(26 * 26)] * 3,
        "invalid_utf8": base + [(b"application_name", b"\xff\xfe\xc0\xaf")],
        "control_characters": base + [(b"application_name", b"a\nb\rc\x1b[2J\x7f")],
        "options_c_search_path": base + [(b"options", b"-c search_path=evil")],
        "9000_bytes": base + [(b"application_name", b"v" * 9000)],
    }[case]
    packet = raw_startup(pairs)
    assert len(packet) <= 10004, len(packet)  # longer ones are refused unanswered (tested above)
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(packet)
        msgs = t.read_until(b"Z", 10)
        kinds = [m for m, _ in msgs]
        if kinds[-1] == b"E":
            f = w.parse_error_fields(msgs[-1][1])
            assert f.get("S") == "FATAL" and f.get("C"), f
        else:
            assert kinds[-1] == b"Z", kinds
            assert w.simple_query(t, "SELECT 1") == [["1"]]
    assert_edge_serves(edge)
