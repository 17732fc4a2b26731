"""Hostile and unusual clients on the pg_tls handler (docs/reliability-coverage.md, T1, T3, T6,
T11, T15, T17, T31; docs/protocol.md, "SSLRequest" and "Bytes after SSLRequest").

Covers what docs/reliability-coverage.md lists as missing for those cases: plaintext sent 50 ms
after an SSLRequest and a ClientHello pipelined with it (T1); a second StartupMessage or
SSLRequest after login or during authentication (T3); a drip-fed SSLRequest, ClientHello and
StartupMessage under a 1 s pre-auth deadline (T6); random bytes and an SSH banner as first bytes
(T11); malformed SNI values through `openssl s_client` and through hand-made ClientHellos (T15);
a ClientHello one byte per TCP segment and one TLS record carrying 100 queries (T17); Terminate
and a TCP half-close while the server is still sending, checked with `ss` (T31).

Most tests use the shared `edge` fixture; the T6 tests run an edge of their own with
`--handshake-timeout-ms 1000`. The byte-level client logs in as `probe`, a trust role.

Run from tests/integration:
    DRAWBRIDGE_BIN=$PWD/../../build/src/drawbridge timeout 900 /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider test_hostile_clients.py
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

import pgwire as w
from harness import (EdgeProcess, assert_edge_serves, conn_line, fatal, fd_count, free_port,
                     log_field, marker, start_own_edge, stop_own_edge, wait_fds_back,
                     wait_until)

H4 = "127.0.0.1"
MAX_TLS_PLAINTEXT = 16384  # one TLS record carries at most 2^14 bytes of plaintext


# ------------------------------------------------------------------------------ helpers


def pg_tcp_connections(pg) -> int:
    """TCP connections Postgres has accepted so far (log_connections=on logs each one as soon as
    it is accepted, before any startup packet); the tests' own psycopg/psql connections use the
    Unix socket and are logged as host=[local]."""
    return len(re.findall(r"connection received: host=(?!\[local\])", pg.log_text()))


def assert_no_backend_contact(pg, before: int, wait: float = 0.5) -> None:
    time.sleep(wait)  # a connect the edge made would be logged by now
    after = pg_tcp_connections(pg)
    assert after == before, f"Postgres accepted {after - before} TCP connection(s) meanwhile"


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in `data`, which must hold whole records."""
    out, i = [], 0
    while i < len(data):
        assert len(data) - i >= 5, f"truncated TLS record header at {i}"
        (n,) = struct.unpack("!H", data[i + 3:i + 5])
        assert i + 5 + n <= len(data), f"truncated TLS record at {i}"
        out.append((data[i], n))
        i += 5 + n
    return out


class BioSocket:
    """A TLS client over a plain TCP socket through ssl.MemoryBIO, so that the test decides how
    the ciphertext is cut into TCP segments and can half-close the TCP socket under a live TLS
    session (SSLSocket.shutdown() would drop the TLS layer). It offers what pgwire.WireConn
    uses of a socket: sendall, recv, settimeout, close."""

    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext,
                 server_hostname: str | None = None):
        self.raw = raw
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.timeout = w.DEFAULT_TIMEOUT

    def client_hello(self) -> bytes:
        """The ClientHello flight, not yet sent."""
        with pytest.raises(ssl.SSLWantReadError):
            self.obj.do_handshake()
        hello = self.outgoing.read()
        assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
        return hello

    def finish_handshake(self, timeout: float = w.DEFAULT_TIMEOUT) -> None:
        """Sends what the TLS object has to send and feeds it the server's bytes until the
        handshake is done."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
            left = deadline - time.monotonic()
            if left <= 0:
                raise w.PgWireError(f"TLS handshake not done within {timeout}s")
            self.raw.settimeout(left)
            chunk = self.raw.recv(65536)
            if not chunk:
                raise w.PgWireError("the edge closed during the TLS handshake")
            self.incoming.write(chunk)

    def encrypt(self, data: bytes) -> bytes:
        """The TLS records for `data`, not sent."""
        self.obj.write(data)
        return self.outgoing.read()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out:
            self.raw.sendall(out)

    # -- the socket interface WireConn uses
    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        self.raw.sendall(self.encrypt(data))

    def recv(self, n: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self.raw.settimeout(left)
            chunk = self.raw.recv(65536)
            if chunk:
                self.incoming.write(chunk)
            else:
                self.incoming.write_eof()

    def close(self) -> None:
        self.raw.close()


def raw_connect(port: int, timeout: float = w.DEFAULT_TIMEOUT) -> socket.socket:
    s = socket.create_connection((H4, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def bio_tls(port: int) -> BioSocket:
    """SSLRequest, 'S', and a TLS handshake through a BioSocket."""
    raw = raw_connect(port)
    try:
        raw.sendall(w.SSL_REQUEST)
        assert raw.recv(1) == b"S"
        b = BioSocket(raw, w.client_context())
        b.finish_handshake()
        return b
    except BaseException:
        raw.close()
        raise


def client_hello(server_hostname: str | None = None) -> bytes:
    """A real ClientHello (one record) from Python's TLS client, never sent by it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = w.client_context().wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def client_hello_with_sni(name: bytes) -> bytes:
    """A ClientHello whose server_name extension carries `name` verbatim, lengths fixed up: for
    names no TLS client library will send (longer than 255 bytes, an embedded NUL)."""
    hello = bytearray(client_hello("placeholder.invalid"))
    assert hello[0] == 0x16 and hello[5] == 0x01, hello[:8]
    # record(5) | type(1) len(3) | version(2) random(32) | session id | suites | compression
    i = 5 + 4 + 2 + 32
    i += 1 + hello[i]
    i += 2 + struct.unpack("!H", hello[i:i + 2])[0]
    i += 1 + hello[i]
    ext_len_at = i
    (ext_total,) = struct.unpack("!H", hello[i:i + 2])
    i += 2
    end = i + ext_total
    while i < end:
        etype, elen = struct.unpack("!HH", hello[i:i + 4])
        if etype == 0:  # server_name
            data = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
            delta = len(data) - elen
            hello[i:i + 4 + elen] = struct.pack("!HH", 0, len(data)) + data
            struct.pack_into("!H", hello, ext_len_at, ext_total + delta)
            hs_len = int.from_bytes(hello[6:9], "big") + delta
            hello[6:9] = hs_len.to_bytes(3, "big")
            struct.pack_into("!H", hello, 3, hs_len + 4)
            return bytes(hello)
        i += 4 + elen
    raise AssertionError("no server_name extension in the ClientHello")


# ------------------------------------------------------------------------------ T1


def test_plaintext_50ms_after_ssl_request_goes_to_tls_and_is_refused(edge, pg):
    """T1, 50 ms variant: the SSLRequest arrives alone, so the edge has answered
    'S' and handed the socket to TLS before the plaintext StartupMessage arrives. It cannot tell
    these bytes from a slow client's, so they are not refused as 'unencrypted data after SSL
    request' (the same-segment case's FATAL 08P01) but fed to the TLS engine, which rejects them
    as not TLS: the client sees 'S' and then the close, without an ErrorResponse (PostgreSQL
    does the same); they are never parsed as PostgreSQL protocol, nothing reaches Postgres."""
    mark = marker("gap50")
    startup = w.startup_message({"user": "probe", "database": "app", "application_name": mark})
    before = pg_tcp_connections(pg)
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        port = c.sock.getsockname()[1]
        c.send(w.SSL_REQUEST)
        time.sleep(0.05)  # not reading the 'S': a separate segment, 50 ms later
        t0 = time.monotonic()
        c.send(startup)
        data, how = c.read_to_eof(10)
        elapsed = time.monotonic() - t0
    assert data[:1] == b"S", f"expected the 'S' answer first, got {data!r} ({how})"
    rest = data[1:]
    assert rest == b"" or rest[:1] == b"\x15", \
        f"after 'S' only a TLS alert may come, not {rest!r} (an ErrorResponse would mean the " \
        "plaintext was parsed as PostgreSQL protocol)"
    # Well under the 10 s pre-auth deadline: the edge closed on its own account (not a speed
    # test; generous for a loaded or ASan machine).
    assert elapsed < 5.0, f"closed {elapsed:.2f}s after the plaintext arrived"
    line = conn_line(edge, port)
    assert log_field(line, "reason") == "tls_handshake_failed", line
    assert log_field(line, "bytes_in") == "0", line
    assert_no_backend_contact(pg, before)
    assert mark not in pg.log_text(), "the plaintext StartupMessage reached Postgres"
    assert_edge_serves(edge)


def test_client_hello_pipelined_with_ssl_request_is_refused(edge, pg):
    """T1, pipelined ClientHello (docs/protocol.md, "Bytes after SSLRequest": the strict model): the
    SSLRequest and a ClientHello in one segment. src/pg/startup.cc refuses any byte buffered
    after the SSLRequest, as PostgreSQL does since CVE-2021-23214: a plaintext FATAL 08P01
    "received unencrypted data after SSL request", no 'S', no handshake, no backend contact."""
    before = pg_tcp_connections(pg)
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        port = c.sock.getsockname()[1]
        c.send(w.SSL_REQUEST + client_hello("mydb.drawbridge.test"))
        f = c.read_error_then_eof(10)  # a plaintext ErrorResponse, then the close
    fatal(f, "08P01")
    assert f["M"] == "received unencrypted data after SSL request", f
    line = conn_line(edge, port)
    # T1 suggests the reason unencrypted_data_after_sslrequest; the edge's name:
    assert log_field(line, "reason") == "unencrypted_after_ssl_request", line
    assert log_field(line, "tls") == "-", line
    assert_no_backend_contact(pg, before)
    assert_edge_serves(edge)


# ------------------------------------------------------------------------------ T3


@pytest.mark.parametrize("second", ["startup_message", "ssl_request"])
def test_second_negotiation_after_login_is_a_protocol_violation(edge, pg, second):
    """T3 after login: the session is relayed, so a second StartupMessage (for
    another user and database) or a second SSLRequest reaches Postgres as a message of type 0,
    which it refuses with FATAL 08P01 and closes. The second StartupMessage never opens a
    session as its user; the backend goes away; the edge serves on."""
    app, app2 = marker("second1"), marker("second2")
    packet = (w.startup_message({"user": "postgres", "database": "postgres",
                                 "application_name": app2})
              if second == "startup_message" else w.SSL_REQUEST)
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        w.login_trust(t, "probe", "app", {"application_name": app})
        assert len(pg.activity(app)) == 1
        t.send(packet)
        data, how = t.read_to_eof(10)
    msgs = w.parse_messages(data)
    assert [m for m, _ in msgs] == [b"E"], (data, how)
    f = w.parse_error_fields(msgs[0][1])
    fatal(f, "08P01")
    assert "invalid frontend message type 0" in f["M"], f  # Postgres's own words
    wait_until(lambda: not pg.activity(app), 5, what=f"the backend of {app} to end")
    assert not pg.activity(app2)
    assert app2 not in pg.log_text(), "the second StartupMessage opened a session"
    assert_edge_serves(edge)


def test_startup_message_during_scram_authentication_is_refused(edge, pg):
    """T3 during auth: alice (SCRAM) gets AuthenticationSASL and answers with a
    second StartupMessage instead of SASLInitialResponse: FATAL 08P01 from Postgres, the close,
    no session as the second user."""
    app2 = marker("duringauth")
    with w.ssl_request_tls(H4, edge.ports["pg_tls"]) as t:
        t.send(w.startup_message({"user": "alice", "database": "app"}))
        typ, payload = t.read_message()
        assert typ == b"R" and struct.unpack("!I", payload[:4])[0] == 10, (typ, payload)
        t.send(w.startup_message({"user": "probe", "database": "app", "application_name": app2}))
        data, how = t.read_to_eof(10)
    msgs = w.parse_messages(data)
    assert [m for m, _ in msgs] == [b"E"], (data, how)
    fatal(w.parse_error_fields(msgs[0][1]), "08P01")
    assert not pg.activity(app2)
    assert app2 not in pg.log_text()
    assert_edge_serves(edge)


# ------------------------------------------------------------------------------ T6


def start_slow_edge(pg, certs) -> EdgeProcess:
    """An edge of the test's own, with a 1 s pre-auth deadline, in front of real Postgres."""
    port = free_port()
    return start_own_edge("hostile", [dict(internal_port=pg.port, port=port, handlers=["pg_tls"])],
                          certs, {"pg_tls": port}, extra_args=("--handshake-timeout-ms", "1000"))


def drip(raw: socket.socket, data: bytes, wrap, gap: float, limit: float
         ) -> tuple[float | None, int, bytes]:
    """Sends `data` one byte at a time (each through `wrap`, e.g. into its own TLS record),
    `gap` seconds apart, watching for the edge's close in between. Returns (when the edge
    closed, as time.monotonic(), or None; bytes sent; bytes the edge sent meanwhile)."""
    got = b""
    deadline = time.monotonic() + limit
    for i in range(len(data)):
        if time.monotonic() > deadline:
            return None, i, got
        try:
            raw.sendall(wrap(data[i:i + 1]))
        except OSError:
            return time.monotonic(), i, got  # already closed (and reset by our bytes)
        ready, _, _ = select.select([raw], [], [], gap)
        if ready:
            try:
                chunk = raw.recv(65536)
            except OSError:
                return time.monotonic(), i + 1, got
            if not chunk:
                return time.monotonic(), i + 1, got
            got += chunk
    return None, len(data), got


@pytest.mark.parametrize("phase", ["ssl_request", "client_hello", "startup_in_tls"])
def test_drip_fed_negotiation_is_cut_by_the_total_deadline(pg, certs, phase):
    """T6 with --handshake-timeout-ms 1000: a client that keeps sending, one
    byte every 300 ms (SSLRequest) or 200 ms (ClientHello after 'S'; StartupMessage inside TLS,
    one record per byte), is closed about 1 s after it connected, long before its packet is
    complete: the deadline counts the total time, not the idle time between bytes. The log says
    reason=handshake_timeout, the edge keeps no descriptor (the slot is freed), and its exit
    counters count one failed_handshake_timeout."""
    e = start_slow_edge(pg, certs)
    try:
        baseline = fd_count(e.pid)
        raw = raw_connect(e.ports["pg_tls"])
        try:
            t0 = time.monotonic()
            port = raw.getsockname()[1]
            if phase == "ssl_request":
                data, wrap, gap = w.SSL_REQUEST, bytes, 0.5
            else:
                raw.sendall(w.SSL_REQUEST)
                assert raw.recv(1) == b"S"
                b = BioSocket(raw, w.client_context())
                if phase == "client_hello":
                    data, wrap, gap = b.client_hello(), bytes, 0.2
                else:
                    b.finish_handshake(0.8)
                    data = w.startup_message({"user": "probe", "database": "app"})
                    wrap, gap = b.encrypt, 0.2
            closed_at, sent, got = drip(raw, data, wrap, gap, limit=6.0)
        finally:
            raw.close()
        assert closed_at is not None, \
            f"{phase}: still open after dripping {sent} of {len(data)} bytes ({got!r})"
        elapsed = closed_at - t0
        # Not a speed test: the bound only has to tell "about 1 s" from "never" on a loaded
        # (or ASan) machine; that the packet was cut short is the real check, below.
        assert 0.8 <= elapsed < 3.5, f"{phase}: closed {elapsed:.2f}s after connecting"
        assert sent < len(data), f"{phase}: the whole packet went out before the close"
        assert got == b"", f"{phase}: the edge answered {got!r}"
        line = conn_line(e, port)
        assert log_field(line, "reason") == "handshake_timeout", line
        wait_fds_back(e, baseline)
        assert e.alive(), f"drawbridge died (exit code {e.proc.returncode})"
    finally:
        rc, tail = stop_own_edge(e)
    assert rc == 0, f"exit code {rc}\n{tail}"
    counters = [ln for ln in tail.splitlines() if "counters accepted=" in ln]
    assert counters and " failed_handshake_timeout=1" in counters[-1], counters


# ------------------------------------------------------------------------------ T11


def random_first_bytes() -> bytes:
    """64 KiB of os.urandom whose first byte is neither 0x16 (a TLS record: direct TLS) nor 0
    (a length that might pass as a startup packet's): the bytes of a peer that speaks something
    else entirely."""
    for _ in range(100):
        data = os.urandom(64 * 1024)
        if data[0] not in (0x00, 0x16):
            return data
    raise AssertionError("os.urandom kept starting with 0x00 or 0x16")


@pytest.mark.parametrize("kind", ["random_64k", "random_64k_after_0x16", "ssh_banner"])
def test_non_postgres_first_bytes_are_closed_without_backend_contact(edge, pg, kind):
    """T11 (the HTTP request is test_protocol's): 64 KiB of random bytes, the
    same after a TLS handshake record type (so they go to the TLS engine as direct TLS), and an
    SSH banner. Each is closed at once: no answer (at most a TLS alert for the TLS-looking
    bytes), no TCP connection to Postgres, nothing forwarded; the edge serves next."""
    payload = {"random_64k": random_first_bytes,
               "random_64k_after_0x16": lambda: b"\x16" + os.urandom(64 * 1024 - 1),
               "ssh_banner": lambda: b"SSH-2.0-OpenSSH_9.6\r\n"}[kind]()
    before = pg_tcp_connections(pg)
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        port = c.sock.getsockname()[1]
        t0 = time.monotonic()
        try:
            c.send(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before it took everything: fine
        data, how = c.read_to_eof(10)
        elapsed = time.monotonic() - t0
    assert elapsed < 5.0, f"closed {elapsed:.2f}s after the bytes ({how})"  # deadline: 10 s
    line = conn_line(edge, port)
    if kind == "random_64k_after_0x16":
        assert data == b"" or tls_records(data)[0][0] == 0x15, f"answered {data!r}"
        assert log_field(line, "reason") == "tls_handshake_failed", line
    else:
        assert data == b"", f"expected a silent close, got {data!r}"
        assert log_field(line, "reason") == "bad_startup_length", line
    assert log_field(line, "bytes_in") == "0" and log_field(line, "bytes_out") == "0", line
    assert_no_backend_contact(pg, before)
    assert_edge_serves(edge)
    # The count does see the edge's connections: the check above could fail.
    wait_until(lambda: pg_tcp_connections(pg) > before, 5, what="the login to be logged")


def test_a_flood_of_non_postgres_bytes_is_read_only_up_to_a_cap(edge, pg):
    """T11, "the number of bytes read is capped": a peer that keeps writing
    random bytes (up to 64 MiB) is cut off: the edge refuses the first packet, drains at most
    64 KiB (RefuseAndClose) and closes, so the peer's writes fail (reset) long before 64 MiB
    went out, instead of the edge reading all of it."""
    total = 64 * 1024 * 1024
    chunk = random_first_bytes()
    before = pg_tcp_connections(pg)
    sent, error = 0, None
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        port = c.sock.getsockname()[1]
        c.sock.settimeout(5)
        deadline = time.monotonic() + 10
        while sent < total and time.monotonic() < deadline:
            try:
                c.sock.sendall(chunk)
            except (socket.timeout, TimeoutError):
                error = "timeout"  # the edge stopped reading and did not close
                break
            except OSError as exc:
                error = repr(exc)
                break
            sent += len(chunk)
    assert error is not None and error != "timeout", \
        f"sent {sent} bytes without the edge closing ({error})"
    assert sent < total // 4, f"the edge took {sent} bytes before closing"
    line = conn_line(edge, port)
    assert log_field(line, "reason") == "bad_startup_length", line
    assert_no_backend_contact(pg, before)
    assert_edge_serves(edge)


# ------------------------------------------------------------------------------ T15


def der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def s_client(port: int, servername: str) -> tuple[str, bytes | str]:
    """`openssl s_client -starttls postgres -servername NAME`: ("cert", DER of the certificate
    served) if the handshake completed, ("alert", what s_client said) if it did not."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"{H4}:{port}", "-starttls",
                        "postgres", "-servername", servername],
                       input="", capture_output=True, text=True, timeout=20)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", p.stdout, re.S)
    if p.returncode == 0 and m:
        return "cert", ssl.PEM_cert_to_DER_cert(m.group(0))
    return "alert", f"rc={p.returncode} {p.stderr[-400:]}"


LABEL63 = "a" * 63 + "." + "b" * 63 + "." + "c" * 63
NAME255 = ".".join(ch * 63 for ch in "abcd")


@pytest.mark.parametrize("name,which", [
    ("MYDB.DRAWBRIDGE.TEST", "server"),
    ("mydb.drawbridge.test.", "server"),
    ("OTHER.DRAWBRIDGE.TEST", "other"),     # normalised, or the default would be served
    ("other.drawbridge.test.", "other"),
    ("xn--mdb-0na.drawbridge.test", "server"),
    ("*.drawbridge.test", "server"),
    ("a..b", "server"),
    (LABEL63, "server"),
    (NAME255, "server"),
], ids=["mixed_case", "trailing_dot", "other_mixed_case", "other_trailing_dot", "punycode",
        "wildcard", "empty_label", "63_byte_labels", "255_bytes"])
def test_malformed_sni_via_s_client(edge, certs, name, which):
    """T15 with `openssl s_client -starttls postgres`: every name completes the
    handshake (none ends in an alert). A name that differs from a certificate's only in case
    or a trailing dot gets that certificate (CertSet::Find lower-cases and strips the dot), so
    OTHER.DRAWBRIDGE.TEST gets other's; names no certificate covers (punycode, `*.x`, `a..b`,
    63-byte labels, 255 bytes) keep the address's certificate, mydb's. The edge stays up and
    serves. (s_client refuses a 256-byte name: see the hand-made ClientHellos below.)"""
    if name == NAME255:
        assert len(name) == 255
    outcome, detail = s_client(edge.ports["pg_tls"], name)
    assert outcome == "cert", f"{name!r}: the handshake failed: {detail}"
    served = {der(certs.server_cert): "server", der(certs.other_cert): "other"}.get(detail)
    assert served == which, f"{name!r}: served the {served or 'unknown'} certificate, " \
                            f"want {which}"
    assert_edge_serves(edge)


@pytest.mark.parametrize("name", ["mixed_case", "trailing_dot"])
def test_sni_case_and_trailing_dot_route_like_the_plain_name(edge, name):
    """T15: a full login with SNI MYDB.DRAWBRIDGE.TEST or mydb.drawbridge.test.
    is routed to the app as the plain name is (ChooseRoute's SameHost), not refused as a foreign
    name of the zone."""
    sni = {"mixed_case": "MYDB.DRAWBRIDGE.TEST", "trailing_dot": "mydb.drawbridge.test."}[name]
    with w.ssl_request_tls(H4, edge.ports["pg_tls"], server_hostname=sni) as t:
        w.login_trust(t, "probe", "app")
        assert w.simple_query(t, "SELECT 'routed'") == [["routed"]]


@pytest.mark.parametrize("kind", ["256_bytes", "embedded_nul", "utf8"])
def test_malformed_sni_in_hand_made_client_hello(edge, pg, kind):
    """T15 for names no client library sends: a 256-byte name and one with an
    embedded NUL get a fatal unrecognized_name alert (OpenSSL's server-side check, RFC 6066
    allows at most 255 bytes and no NUL), logged as tls_handshake_failed; raw UTF-8 gets a
    ServerHello. No crash; the edge serves."""
    name = {"256_bytes": b"x" * 251 + b".test",
            "embedded_nul": b"mydb.drawbridge.test\x00.evil.test",
            "utf8": "mÿdb.drawbridge.test".encode()}[kind]
    if kind == "256_bytes":
        assert len(name) == 256
    before = pg_tcp_connections(pg)
    with w.connect(H4, edge.ports["pg_tls"]) as c:
        port = c.sock.getsockname()[1]
        c.send(w.SSL_REQUEST)
        assert c.recv_exact(1) == b"S"
        c.send(client_hello_with_sni(name))
        if kind == "utf8":
            hdr = c.recv_exact(6)
            assert hdr[0] == 0x16 and hdr[5] == 0x02, f"expected a ServerHello, got {hdr!r}"
            c.close()
        else:
            data, how = c.read_to_eof(10)
    if kind != "utf8":
        recs = tls_records(data)
        assert recs and recs[0] == (0x15, 2), f"expected one alert record, got {data!r} ({how})"
        level, desc = data[5], data[6]
        assert (level, desc) == (2, 112), f"alert {level}/{desc}, want fatal unrecognized_name"
        assert log_field(conn_line(edge, port), "reason") == "tls_handshake_failed"
    assert_no_backend_contact(pg, before)
    assert_edge_serves(edge)


# ------------------------------------------------------------------------------ T17


def segments_sent(s: socket.socket) -> int:
    """tcpi_segs_out of the socket's struct tcp_info (Linux 4.2+; offset 136)."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 144)
    assert len(info) >= 144, "struct tcp_info without tcpi_segs_out"
    return struct.unpack_from("I", info, 136)[0]


def test_client_hello_one_byte_per_segment_then_login(edge):
    """T17: the ClientHello sent one byte per TCP segment (TCP_NODELAY, ~1 ms
    apart), the handshake finished through the same TLS object, then a login and SELECT 1.
    The edge answers the last byte at once (no stall) and the session works."""
    raw = raw_connect(edge.ports["pg_tls"])
    try:
        raw.sendall(w.SSL_REQUEST)
        assert raw.recv(1) == b"S"
        b = BioSocket(raw, w.client_context(), server_hostname="mydb.drawbridge.test")
        hello = b.client_hello()
        segs_before = segments_sent(raw)
        deadline = time.monotonic() + 20
        for i in range(len(hello)):
            assert time.monotonic() < deadline, f"only {i} of {len(hello)} bytes sent in 20 s"
            raw.sendall(hello[i:i + 1])
            time.sleep(0.001)
        segs = segments_sent(raw) - segs_before
        assert segs >= len(hello), f"{len(hello)} bytes went out in {segs} segments"
        t_last = time.monotonic()
        raw.settimeout(5)
        first = raw.recv(65536)  # the server's flight, after the last byte
        stall = time.monotonic() - t_last
        assert first[:1] == b"\x16", first[:16]
        b.incoming.write(first)
        b.finish_handshake()
        assert stall < 5.0, f"the edge answered the last ClientHello byte after {stall:.2f}s"
        conn = w.WireConn(b)
        w.login_trust(conn, "probe", "app")
        assert w.simple_query(conn, "SELECT 1") == [["1"]]
    finally:
        raw.close()
    assert_edge_serves(edge)


def test_one_tls_record_with_100_pipelined_queries(edge):
    """T17: after login, one TLS record (16,000 bytes of plaintext) carrying 100
    Query messages 'SELECT n'; all 100 answers arrive, in order, without a stall."""
    b = bio_tls(edge.ports["pg_tls"])
    try:
        conn = w.WireConn(b)
        w.login_trust(conn, "probe", "app")
        queries = b""
        for n in range(1, 101):
            sql = f"SELECT {n} AS n /* "
            queries += w.query_message(sql + "p" * (160 - 6 - len(sql) - 3) + " */")
        assert len(queries) == 16000 <= MAX_TLS_PLAINTEXT
        ct = b.encrypt(queries)
        assert [t for t, _ in tls_records(ct)] == [0x17], "not exactly one TLS record"
        b.raw.sendall(ct)
        deadline = time.monotonic() + 15
        for n in range(1, 101):
            msgs = conn.read_until(b"Z", max(deadline - time.monotonic(), 0.01))
            kinds = [m for m, _ in msgs]
            assert kinds == [b"T", b"D", b"C", b"Z"], (n, msgs)
            value = msgs[1][1][6:].decode()  # column count (2), length (4), value
            assert value == str(n), f"answer {n} was {value!r}: out of order"
        with pytest.raises(w.PgWireError, match="timed out"):  # exactly 100 answers
            conn.read_message(0.3)
    finally:
        b.close()


# ------------------------------------------------------------------------------ T31


@pytest.fixture(scope="module")
def t31_edge(pg, certs):
    """An edge of these tests' own: the shared one may hold other tests' sockets half-closed
    on purpose (a refusal lingers 2 s reading what the client still sends), which the
    socket-state checks below would take for this test's."""
    port = free_port()
    e = start_own_edge("t31", [dict(internal_port=pg.port, port=port, handlers=["pg_tls"])],
                       certs, {"pg_tls": port})
    yield e
    rc, tail = stop_own_edge(e)
    assert rc == 0, f"exit code {rc}\n{tail}"


def edge_sockets_in(pid: int, states: tuple[str, ...]) -> list[str]:
    """`ss -tanp` lines of sockets that process `pid` holds, in one of `states`."""
    out = subprocess.run(["ss", "-tanp"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return [ln for ln in out.splitlines()
            if ln.split()[:1] and ln.split()[0] in states and f"pid={pid}," in ln]


def sockets_with_port(port: int) -> list[str]:
    """`ss -tan` lines of every TCP socket with `port` at either end, whatever owns it."""
    out = subprocess.run(["ss", "-tan"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return [ln for ln in out.splitlines()[1:]
            if any(col.endswith(f":{port}") for col in ln.split()[3:5])]


NOTICES = 2000
T31_SQL = ("SELECT pg_sleep(0.2); "
           f"DO $$BEGIN FOR i IN 1..{NOTICES} LOOP RAISE NOTICE '%', repeat('n', 500); "
           "END LOOP; END$$; "
           "SELECT repeat('x', 1000000)")


@pytest.mark.parametrize("close", ["fin", "close_notify_then_fin"])
def test_terminate_and_half_close_while_the_server_sends(t31_edge, pg, close):
    """T31: after login the client sends a query whose answer starts 0.2 s
    later (pg_sleep, then 2,000 NOTICEs of 500 bytes, then a 1 MB row), Terminate, and a TCP
    FIN (bare, or after its TLS close_notify), in that order, while Postgres is still busy.
    Everything Postgres sends is flushed to the client, then the close (close_notify and FIN);
    the backend ends; 2 s later no socket of the edge is in CLOSE-WAIT or FIN-WAIT-2, the
    client's connection is gone on the edge's side, and the edge holds no more descriptors."""
    app = marker("halfclose")
    baseline = fd_count(t31_edge.pid)
    b = bio_tls(t31_edge.ports["pg_tls"])
    try:
        port = b.raw.getsockname()[1]
        conn = w.WireConn(b)
        w.login_trust(conn, "probe", "app", {"application_name": app})
        b.sendall(w.query_message(T31_SQL) + w.TERMINATE)
        if close == "close_notify_then_fin":
            with pytest.raises(ssl.SSLWantReadError):
                b.obj.unwrap()  # writes close_notify; the server's is still to come
            notify = b.outgoing.read()
            assert len(tls_records(notify)) == 1, notify  # the (encrypted) alert
            b.raw.sendall(notify)
        b.raw.shutdown(socket.SHUT_WR)
        data, how = conn.read_to_eof(15)
    finally:
        b.close()
    msgs = w.parse_messages(data)
    kinds = [m for m, _ in msgs]
    want = [b"T", b"D", b"C"] + [b"N"] * NOTICES + [b"C", b"T", b"D", b"C", b"Z"]
    assert kinds == want, (f"{len(kinds)} messages: {kinds[:6]}...{kinds[-6:]}", how)
    assert msgs[-3][1][6:] == b"x" * 1000000, "the 1 MB row arrived incomplete"
    assert how == "eof", f"the edge closed with {how}, not close_notify and FIN"
    wait_until(lambda: not pg.activity(app), 5, what=f"the backend of {app} to end")
    line = conn_line(t31_edge, port)
    assert log_field(line, "reason") == "client_closed", line
    assert int(log_field(line, "bytes_out")) > 1000000 + NOTICES * 500, line
    time.sleep(2.0)
    stuck = edge_sockets_in(t31_edge.pid, ("CLOSE-WAIT", "FIN-WAIT-2"))
    assert stuck == [], "edge sockets left half-closed:\n" + "\n".join(stuck)
    left = [ln for ln in sockets_with_port(port) if not ln.startswith("TIME-WAIT")]
    assert left == [], "the client's connection is still there:\n" + "\n".join(left)
    wait_fds_back(t31_edge, baseline)
    assert_edge_serves(t31_edge)


def test_backend_fin_while_the_client_is_still_sending(t31_edge, pg):
    """T31, the other direction: the client streams COPY FROM STDIN data and
    Postgres ends the session meanwhile (pg_terminate_backend: FATAL 57P01, then its FIN). The
    client's connection ends while it is still sending; the backend is gone, and 2 s
    later the edge holds no socket in CLOSE-WAIT or FIN-WAIT-2 and no more descriptors."""
    app = marker("backendfin")
    baseline = fd_count(t31_edge.pid)
    row = b"y" * 8191 + b"\n"
    copy_data = b"d" + struct.pack("!I", 4 + len(row)) + row
    got, ended, sent = b"", None, 0
    t = w.ssl_request_tls(H4, t31_edge.ports["pg_tls"])
    try:
        port = t.sock.getsockname()[1]
        w.login_trust(t, "probe", "app", {"application_name": app})
        assert w.simple_query(t, "CREATE TEMP TABLE sink (v text)") == []
        t.send(w.query_message("COPY sink FROM STDIN"))
        assert t.read_message()[0] == b"G"  # CopyInResponse
        t.sock.settimeout(5)
        deadline = time.monotonic() + 10
        while sent < 5000 and time.monotonic() < deadline:
            if sent == 200:
                pg.terminate(app)  # returns once the backend has been signalled
            try:
                t.sock.sendall(copy_data)
                sent += 1
                while t.sock.pending() or select.select([t.sock], [], [], 0)[0]:
                    chunk = t.sock.recv(65536)
                    if not chunk:
                        raise EOFError
                    got += chunk
            except (EOFError, OSError) as exc:  # ssl.SSLError is an OSError
                ended = repr(exc)
                break
    finally:
        t.close()
    assert ended is not None, f"still sending after {sent} CopyData messages, got {got!r:.200}"
    assert sent >= 200, f"the connection ended after {sent} messages, before the termination"
    # The edge closes the client's socket once Postgres has closed, as PgBouncer does and as
    # the backend's own exit would: a client still sending then gets a reset, which may
    # reach it before it has read the FATAL (libpq reads what arrived after a failed send;
    # Python's ssl module cannot). So: the FATAL, or nothing, but never anything else.
    msgs = w.parse_messages(got)
    assert [m for m, _ in msgs] in ([b"E"], []), (msgs, ended)
    if msgs:
        fatal(w.parse_error_fields(msgs[0][1]), "57P01")
    wait_until(lambda: not pg.activity(app), 5, what=f"the backend of {app} to end")
    line = conn_line(t31_edge, port)
    assert log_field(line, "reason").startswith("machine_"), line
    time.sleep(2.0)
    stuck = edge_sockets_in(t31_edge.pid, ("CLOSE-WAIT", "FIN-WAIT-2"))
    assert stuck == [], "edge sockets left half-closed:\n" + "\n".join(stuck)
    wait_fds_back(t31_edge, baseline)
    assert_edge_serves(t31_edge)


def test_backend_fin_frees_the_edge_sockets_even_if_the_client_keeps_its_socket(t31_edge, pg):
    """T31 (backend FIN): Postgres ends an idle session; the client receives
    FATAL 57P01, close_notify and the FIN, but keeps its socket open without sending, as an
    idle pooled connection does until it is next used. The session is over (PostgreSQL itself
    closes its socket when the backend exits), so 3 s later (longer than the 2 s close linger,
    the edge's longest timer after a session) no socket of the edge may be in CLOSE-WAIT or
    FIN-WAIT-2."""
    app = marker("keepsock")
    t = w.ssl_request_tls(H4, t31_edge.ports["pg_tls"])
    try:
        w.login_trust(t, "probe", "app", {"application_name": app})
        pg.terminate(app)
        data, how = t.read_to_eof(10)
        msgs = w.parse_messages(data)
        assert [m for m, _ in msgs] == [b"E"], (data, how)
        fatal(w.parse_error_fields(msgs[0][1]), "57P01")
        assert how == "eof", how
        wait_until(lambda: not pg.activity(app), 5, what=f"the backend of {app} to end")
        time.sleep(3.0)
        stuck = edge_sockets_in(t31_edge.pid, ("CLOSE-WAIT", "FIN-WAIT-2"))
        assert stuck == [], "edge sockets left half-closed while the client keeps its " \
                            "socket:\n" + "\n".join(stuck)
    finally:
        t.close()
