"""Small PostgreSQL wire-protocol helpers for the integration tests.

Byte constants follow docs/protocol.md, "Byte constants". Everything here is
blocking, with socket timeouts, so a misbehaving edge makes a test fail instead of hang.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

SSL_REQUEST = bytes.fromhex("0000000804d2162f")
GSSENC_REQUEST = bytes.fromhex("0000000804d21630")
CANCEL_CODE = 80877102
PROTO_30 = 196608  # 3.0
PROTO_32 = 196610  # 3.2

DEFAULT_TIMEOUT = 10.0


class PgWireError(AssertionError):
    """The peer did something the test did not expect (EOF, timeout, bad framing)."""


# ---------------------------------------------------------------------------- encoders


def startup_message(params: dict[str, str], version: int = PROTO_30) -> bytes:
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def padded_startup_message(params: dict[str, str], total_len: int,
                           pad_key: str = "application_name") -> bytes:
    """A StartupMessage of exactly total_len bytes, padded through one parameter value."""
    base = startup_message({**params, pad_key: ""})
    pad = total_len - len(base)
    assert pad >= 0, "total_len too small"
    msg = startup_message({**params, pad_key: "p" * pad})
    assert len(msg) == total_len
    return msg


def cancel_request(pid: int, key: bytes) -> bytes:
    return struct.pack("!III", 12 + len(key), CANCEL_CODE, pid) + key


def query_message(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


TERMINATE = b"X\x00\x00\x00\x04"


# ---------------------------------------------------------------------------- decoders


def parse_error_fields(payload: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse body (after type byte and length).

    Raises if the layout is not `(code string\\0)* \\0` exactly.
    """
    fields: dict[str, str] = {}
    i = 0
    while True:
        if i >= len(payload):
            raise PgWireError(f"ErrorResponse not terminated: {payload!r}")
        code = payload[i:i + 1]
        if code == b"\0":
            if i + 1 != len(payload):
                raise PgWireError(f"bytes after ErrorResponse terminator: {payload!r}")
            return fields
        end = payload.index(b"\0", i + 1)
        fields[code.decode()] = payload[i + 1:end].decode("utf-8", "replace")
        i = end + 1


def parse_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a byte string of complete backend messages into (type, payload) pairs."""
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 5:
            raise PgWireError(f"truncated message header at {i}: {data[i:]!r}")
        t = data[i:i + 1]
        (n,) = struct.unpack("!I", data[i + 1:i + 5])
        if n < 4 or i + 1 + n > len(data):
            raise PgWireError(f"bad/truncated message {t!r} len {n} at {i}")
        out.append((t, data[i + 5:i + 1 + n]))
        i += 1 + n
    return out


def parse_npv(payload: bytes) -> tuple[int, list[str]]:
    """NegotiateProtocolVersion body -> (newest minor version code, unrecognised options)."""
    newest, n = struct.unpack("!II", payload[:8])
    names = payload[8:].split(b"\0")[:n]
    return newest, [x.decode() for x in names]


# ---------------------------------------------------------------------------- connections


class WireConn:
    """A plaintext or TLS socket with exact reads and message framing."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    # -- raw I/O
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, timeout: float) -> bool:
        """Read more bytes into buf. Returns False on EOF. Raises PgWireError on timeout."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise PgWireError(f"timed out after {timeout}s waiting for data "
                              f"(buffered {self.buf!r:.200})") from None
        if not chunk:
            return False
        self.buf += chunk
        return True

    def recv_exact(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(max(left, 0.01)):
                raise PgWireError(f"EOF/timeout after {len(self.buf)} of {n} bytes: "
                                  f"{self.buf!r:.200}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_message(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[bytes, bytes]:
        hdr = self.recv_exact(5, timeout)
        (n,) = struct.unpack("!I", hdr[1:])
        if n < 4 or n > 64 * 1024 * 1024:
            raise PgWireError(f"implausible message length {n} for type {hdr[:1]!r}")
        return hdr[:1], self.recv_exact(n - 4, timeout)

    def read_until(self, mtype: bytes, timeout: float = DEFAULT_TIMEOUT
                   ) -> list[tuple[bytes, bytes]]:
        """Read messages up to and including the first of type mtype (or an 'E')."""
        deadline = time.monotonic() + timeout
        msgs = []
        while True:
            t, p = self.read_message(max(deadline - time.monotonic(), 0.01))
            msgs.append((t, p))
            if t == mtype or t == b"E":
                return msgs

    def read_to_eof(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[bytes, str]:
        """Everything until the peer closes. Returns (bytes, how), how being one of 'eof',
        'eof-without-close-notify', 'reset', 'tls-error: ...'. Raises PgWireError if the
        peer has not closed within timeout."""
        deadline = time.monotonic() + timeout
        data, self.buf = self.buf, b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PgWireError(f"peer did not close within {timeout}s; got {data!r:.300}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except ssl.SSLZeroReturnError:
                return data, "eof"
            except ssl.SSLEOFError:
                return data, "eof-without-close-notify"
            except ssl.SSLError as e:
                return data, f"tls-error: {e}"
            except (ConnectionResetError, BrokenPipeError):
                return data, "reset"
            if not chunk:
                return data, "eof"
            data += chunk

    def read_error_then_eof(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
        """Expect exactly one ErrorResponse followed by the connection closing."""
        data, how = self.read_to_eof(timeout)
        msgs = parse_messages(data)
        types = [t for t, _ in msgs]
        if types != [b"E"]:
            raise PgWireError(f"expected exactly one ErrorResponse then close, got {types} "
                              f"({data!r:.300}, close={how})")
        return parse_error_fields(msgs[0][1])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
            rcvbuf: int | None = None) -> WireConn:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return WireConn(s)


def client_context(alpn: list[str] | None = None, cafile: str | None = None,
                   min_version: ssl.TLSVersion | None = None,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client TLS context. Without cafile no verification is done (sslmode=require)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls11_max_context() -> ssl.SSLContext:
    """A client that offers at most TLS 1.1 (and really can: SECLEVEL=0 re-enables the
    SHA-1 suites TLS 1.1 needs; test_harness.py proves it completes a 1.1 handshake)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = client_context(min_version=ssl.TLSVersion.TLSv1,
                             max_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def start_tls(conn: WireConn, ctx: ssl.SSLContext, server_hostname: str | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> WireConn:
    """TLS handshake on an already-connected socket (after 'S', or for direct TLS)."""
    assert conn.buf == b"", f"unexpected plaintext bytes before TLS: {conn.buf!r}"
    conn.sock.settimeout(timeout)
    tls = ctx.wrap_socket(conn.sock, server_hostname=server_hostname)
    return WireConn(tls)


def ssl_request_tls(host: str, port: int, ctx: ssl.SSLContext | None = None,
                    server_hostname: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> WireConn:
    """Classic negotiation: SSLRequest, exactly b'S', then the TLS handshake."""
    conn = connect(host, port, timeout)
    try:
        conn.send(SSL_REQUEST)
        answer = conn.recv_exact(1, timeout)
        if answer != b"S":
            raise PgWireError(f"SSLRequest answered {answer!r}, expected b'S'")
        return start_tls(conn, ctx or client_context(), server_hostname, timeout)
    except BaseException:
        conn.close()
        raise


def direct_tls(host: str, port: int, alpn: list[str] | None = ("postgresql",),
               ctx: ssl.SSLContext | None = None, server_hostname: str | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> WireConn:
    """PostgreSQL 17 style direct TLS: ClientHello as the very first bytes."""
    conn = connect(host, port, timeout)
    try:
        return start_tls(conn, ctx or client_context(list(alpn) if alpn else None),
                         server_hostname, timeout)
    except BaseException:
        conn.close()
        raise


def login_trust(conn: WireConn, user: str, database: str, extra: dict[str, str] | None = None,
                version: int = PROTO_30, timeout: float = DEFAULT_TIMEOUT
                ) -> list[tuple[bytes, bytes]]:
    """Send a StartupMessage for a trust-authenticated user and read to ReadyForQuery."""
    conn.send(startup_message({"user": user, "database": database, **(extra or {})}, version))
    msgs = conn.read_until(b"Z", timeout)
    if msgs[-1][0] != b"Z":
        raise PgWireError(f"login failed: {parse_error_fields(msgs[-1][1])}")
    return msgs


def backend_key(msgs: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    for t, p in msgs:
        if t == b"K":
            return struct.unpack("!I", p[:4])[0], p[4:]
    raise PgWireError(f"no BackendKeyData among {[t for t, _ in msgs]}")


def simple_query(conn: WireConn, sql: str, timeout: float = DEFAULT_TIMEOUT) -> list[list[str]]:
    """Run one simple query; return rows of text values (None for NULL)."""
    conn.send(query_message(sql))
    rows = []
    err = None
    deadline = time.monotonic() + timeout
    while True:
        t, p = conn.read_message(max(deadline - time.monotonic(), 0.01))
        if t == b"D":
            (ncol,) = struct.unpack("!H", p[:2])
            i, row = 2, []
            for _ in range(ncol):
                (n,) = struct.unpack("!i", p[i:i + 4])
                i += 4
                if n < 0:
                    row.append(None)
                else:
                    row.append(p[i:i + n].decode())
                    i += n
            rows.append(row)
        elif t == b"E":
            err = parse_error_fields(p)
        elif t == b"Z":
            if err:
                raise PgWireError(f"query failed: {err}")
            return rows


def cancel_no_reply(host: str, port: int, packet: bytes, tls: bool = False,
                    timeout: float = 5.0) -> tuple[bytes, str]:
    """Send a CancelRequest (plaintext first packet, or inside SSLRequest-TLS) and return
    whatever came back before the close, with how it closed."""
    conn = ssl_request_tls(host, port) if tls else connect(host, port)
    with conn:
        conn.send(packet)
        return conn.read_to_eof(timeout)
