"""The admin API's defences (docs/admin-api.md; docs/reliability-coverage.md, T44, T45, T46)
against a real `drawbridge serve`: bearer-token checks, Host/Origin checks against browser-borne
requests, body and header size limits, slow clients, bytes that are not HTTP, and many parallel
requests.

After every abusive request the daemon must still be alive and answer `GET /v1/status` (with
the token) with 200, and a refused mutating request must leave `GET /v1/apps` unchanged. Every
error must be JSON `{"error": "..."}`. Every socket has a timeout and every loop a deadline.

Run from tests/integration:
  DRAWBRIDGE_BIN=$PWD/../../build/src/drawbridge /usr/bin/python3 -m pytest -q \
      -p no:cacheprovider test_admin_abuse.py
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness

# Address pools no other test file uses.
V4_POOL = "127.0.50.0/24"
V6_POOL = "fd00:db:50::/64"
DOMAIN = "drawbridge.test"
SEED_APP = "abuse-seed"

MIB = 1 << 20
REQUEST_LIMIT_S = 10.0  # docs/admin-api.md: "requests to 10 s"
CLOSE_BOUND_S = REQUEST_LIMIT_S + 2.5  # the request limit plus scheduling slack
SOCKET_TIMEOUT_S = 15.0  # a hang shows up as a timeout, never as a stuck test


# ------------------------------------------------------------------------------ helpers


@dataclass
class Answer:
    """One HTTP answer, or None fields when the daemon closed without answering."""
    status: int | None
    content_type: str
    body: bytes
    elapsed: float
    closed_without_answer: bool = False


def request(d: harness.DrawbridgeDaemon, method: str, path: str, headers: dict[str, str],
            body: bytes | None = None, timeout: float = SOCKET_TIMEOUT_S) -> Answer:
    """One request with exactly `headers` (no Host, Accept-Encoding or Content-Length added;
    `Connection: close` so the daemon does not hold the connection for its idle limit)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {k.lower() for k in headers}
        for k, v in headers.items():
            conn.putheader(k, v)
        if body is not None and "content-length" not in sent:
            conn.putheader("Content-Length", str(len(body)))
        if "connection" not in sent:
            conn.putheader("Connection", "close")
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Answer(r.status, r.getheader("Content-Type", ""), data, time.monotonic() - t0)
    finally:
        conn.close()


def local_headers(d: harness.DrawbridgeDaemon, **extra: str) -> dict[str, str]:
    """What a legitimate local client sends: a local Host and the right token."""
    h = {"Host": f"127.0.0.1:{d.api_port}", "Authorization": f"Bearer {d.token()}"}
    h.update(extra)
    return h


def assert_json_error(a: Answer, status: int, what: str) -> None:
    """`a` has exactly `status` and a JSON body {"error": "<non-empty string>"}."""
    assert a.status == status, f"{what}: status {a.status} (want {status}), body {a.body[:300]!r}"
    assert a.content_type.startswith("application/json"), \
        f"{what}: Content-Type {a.content_type!r}, body {a.body[:300]!r}"
    try:
        j = json.loads(a.body)
    except ValueError:
        pytest.fail(f"{what}: error body is not JSON: {a.body[:300]!r}")
    assert isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"], \
        f"{what}: no \"error\" string in {j!r}"


def assert_healthy(d: harness.DrawbridgeDaemon, within: float = 5.0) -> None:
    """The daemon is alive and GET /v1/status with the token answers 200 within `within` s."""
    harness.fail_if_dead(d)
    t0 = time.monotonic()
    status, body = d.api("GET", "/v1/status", timeout=within)
    elapsed = time.monotonic() - t0
    assert status == 200, f"GET /v1/status: {status} {body[:300]}"
    assert elapsed < within, f"GET /v1/status took {elapsed:.1f}s"
    assert json.loads(body).get("version"), body


def apps(d: harness.DrawbridgeDaemon) -> list[dict]:
    status, body = d.api("GET", "/v1/apps")
    assert status == 200, f"GET /v1/apps: {status} {body[:300]}"
    return json.loads(body)


def app_names(d: harness.DrawbridgeDaemon) -> list[str]:
    return sorted(a["name"] for a in apps(d))


def connect(d: harness.DrawbridgeDaemon, timeout: float = SOCKET_TIMEOUT_S) -> socket.socket:
    return socket.create_connection(("127.0.0.1", d.api_port), timeout=timeout)


@dataclass
class RawOutcome:
    answer: bytes  # everything the daemon sent before closing (b"" if nothing)
    closed: bool  # the daemon closed (EOF or reset) rather than our timeout firing
    elapsed: float
    send_error: str = ""


def raw_exchange(d: harness.DrawbridgeDaemon, data: bytes,
                 timeout: float = SOCKET_TIMEOUT_S) -> RawOutcome:
    """Sends `data` (from a second thread, so a daemon that answers early and closes while we
    are still sending is still read) and reads until the daemon closes or `timeout` passes."""
    s = connect(d, timeout)
    send_error: list[str] = []

    def sender() -> None:
        try:
            s.sendall(data)
        except OSError as e:  # EPIPE / ECONNRESET once the daemon has answered and closed
            send_error.append(repr(e))

    t0 = time.monotonic()
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    out = bytearray()
    closed = False
    deadline = t0 + timeout
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        elapsed = time.monotonic() - t0
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
        t.join(5)
    return RawOutcome(bytes(out), closed, elapsed, send_error[0] if send_error else "")


def parse_raw(raw: bytes) -> Answer:
    """Status, Content-Type and body of a raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert len(parts) >= 2 and parts[0] == "HTTP/1.1" and parts[1].isdigit(), \
        f"not an HTTP/1.1 status line: {raw[:200]!r}"
    ctype = ""
    length = None
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == "content-type":
            ctype = v.strip()
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is not None:
        body = body[:length]
    return Answer(int(parts[1]), ctype, body, 0.0)


def assert_error_or_close(o: RawOutcome, what: str, status: int | None = None) -> None:
    """The daemon answered with a JSON error (exactly `status`, if given) or closed, within
    the request limit; it never hangs."""
    assert o.closed, (f"{what}: the daemon neither answered-and-closed nor closed within "
                      f"{o.elapsed:.1f}s; got {o.answer[:200]!r}")
    assert o.elapsed < CLOSE_BOUND_S, f"{what}: closed only after {o.elapsed:.1f}s"
    if status is not None or o.answer:
        assert o.answer, f"{what}: closed without an answer (want {status})"
        a = parse_raw(o.answer)
        assert a.status is not None and a.status >= 400, f"{what}: {o.answer[:300]!r}"
        assert_json_error(a, status if status is not None else a.status, what)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def daemon():
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-abuse-"))
    d = harness.DrawbridgeDaemon(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN)
    with harness.running(d):
        status, body = d.api("POST", "/v1/apps", {"name": SEED_APP})
        assert status == 201, f"creating the seed app: {status} {body}"
        yield d


# ------------------------------------------------------------------------------ T44: auth


def test_requests_without_the_right_token_get_401_and_change_nothing(daemon):
    """T44: no token, a wrong token, a same-length wrong token, `Bearer ` with nothing, and the
    Basic scheme all get 401 with a JSON error on GET/POST /v1/apps and GET /metrics; no app is
    created."""
    d = daemon
    token = d.token()
    same_length = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert len(same_length) == len(token) and same_length != token
    wrong = "not-the-token-" + os.urandom(8).hex()
    basic = base64.b64encode(f"admin:{token}".encode()).decode()
    variants: dict[str, str | None] = {
        "no Authorization": None,
        "wrong token": f"Bearer {wrong}",
        "same-length wrong token": f"Bearer {same_length}",
        "Bearer with an empty token": "Bearer ",
        "bare token, no scheme": token,
        "Basic scheme": f"Basic {basic}",
    }
    before = apps(d)
    host = {"Host": f"localhost:{d.api_port}"}
    for label, auth in variants.items():
        h = dict(host)
        if auth is not None:
            h["Authorization"] = auth
        for method, path, body in (("GET", "/v1/apps", None),
                                   ("POST", "/v1/apps", b'{"name": "sneaky-app"}'),
                                   ("GET", "/metrics", None)):
            hh = dict(h)
            if body is not None:
                hh["Content-Type"] = "application/json"
            a = request(d, method, path, hh, body)
            assert_json_error(a, 401, f"{label}: {method} {path}")
            assert_healthy(d)
    assert apps(d) == before


def test_the_token_never_appears_in_the_log(daemon):
    """T44: after the refused requests (and good ones), neither the token nor a wrong token
    sent by a client appears in the daemon's log."""
    d = daemon
    token = d.token()
    wrong = "wrong-token-" + os.urandom(8).hex()
    for auth in (f"Bearer {wrong}", f"Bearer {token}x", f"Basic {token}"):
        a = request(d, "GET", "/v1/apps", {"Host": "localhost", "Authorization": auth})
        assert_json_error(a, 401, f"Authorization: {auth[:20]}...")
    a = request(d, "GET", "/v1/apps", local_headers(d))
    assert a.status == 200, a
    assert_healthy(d)
    log = d.log()
    assert token not in log, "the admin token appears in the daemon log"
    assert wrong not in log, "a client's (wrong) token appears in the daemon log"


# ------------------------------------------------------------------------------ T45: browsers


def test_foreign_host_or_any_origin_gets_403(daemon):
    """T45: DNS rebinding (`Host: evil.example`, with or without a port) and any `Origin`
    header (a page's, or `null`) get 403 with a JSON error even with the right token; a
    cross-site text/plain POST creates nothing."""
    d = daemon
    before = apps(d)
    auth = {"Authorization": f"Bearer {d.token()}"}
    cases: list[tuple[str, dict[str, str]]] = [
        ("Host: evil.example", {"Host": "evil.example"}),
        ("Host: evil.example:4280", {"Host": "evil.example:4280"}),
        ("Host: evil.example:<api port>", {"Host": f"evil.example:{d.api_port}"}),
        ("Host: localhost.evil.example", {"Host": "localhost.evil.example"}),
        ("Host: 127.0.0.1.evil.example", {"Host": "127.0.0.1.evil.example"}),
        ("Origin: http://evil.example", {"Host": "localhost", "Origin": "http://evil.example"}),
        ("Origin: https://evil.example", {"Host": "localhost", "Origin": "https://evil.example"}),
        ("Origin: null", {"Host": "localhost", "Origin": "null"}),
        ("Origin: http://localhost", {"Host": "localhost",
                                      "Origin": f"http://localhost:{d.api_port}"}),
    ]
    for label, h in cases:
        for path in ("/v1/status", "/v1/apps", "/metrics"):
            a = request(d, "GET", path, {**h, **auth})
            assert_json_error(a, 403, f"{label}: GET {path}")
        assert_healthy(d)

    # The classic cross-site form/fetch POST: text/plain (no preflight), a JSON-looking body.
    for origin in ("http://evil.example", "null"):
        a = request(d, "POST", "/v1/apps",
                    {"Host": f"127.0.0.1:{d.api_port}", "Origin": origin,
                     "Content-Type": "text/plain;charset=UTF-8", **auth},
                    b'{"name": "csrf-app"}')
        assert_json_error(a, 403, f"text/plain POST /v1/apps with Origin: {origin}")
        assert_healthy(d)
    # The same through a rebound name, no Origin.
    a = request(d, "POST", "/v1/apps",
                {"Host": "evil.example", "Content-Type": "text/plain", **auth},
                b'{"name": "rebind-app"}')
    assert_json_error(a, 403, "text/plain POST /v1/apps with Host: evil.example")
    assert_healthy(d)
    assert apps(d) == before


def test_local_looking_foreign_hosts_get_403(daemon):
    """T45: a Host that only starts like a local name ('[::1]' or 'localhost:' followed by
    something that is not a port) is a Host other than localhost/127.0.0.1/[::1] (any port):
    403; the local names themselves, with or without a port, pass. Two Host headers, or two
    Authorization headers, get 400 (RFC 9112 section 3.2: which one counts is ambiguous)."""
    d = daemon
    auth = {"Authorization": f"Bearer {d.token()}"}
    failures = []
    for host in ("localhost", "localhost:1", "127.0.0.1", f"127.0.0.1:{d.api_port}",
                 "[::1]", "[::1]:65535"):
        a = request(d, "GET", "/v1/status", {"Host": host, **auth})
        if a.status != 200:
            failures.append(f"Host: {host} -> {a.status} (a local name must pass)")
    for host in ("[::1].evil.example", "[::1]evil.example", "[::1]:80.evil.example",
                 "localhost:evil.example", "127.0.0.1:80@evil.example",
                 "localhost:4280.evil.example", "localhost:", "localhost:123456",
                 "127.0.0.1.evil.example", "localhostevil.example"):
        a = request(d, "GET", "/v1/status", {"Host": host, **auth})
        if a.status != 403:
            failures.append(f"Host: {host} -> {a.status}")
        assert_healthy(d)
    o = raw_exchange(d, (f"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n"
                         f"Authorization: Bearer {d.token()}\r\nConnection: close\r\n\r\n"
                         ).encode())
    status = parse_raw(o.answer).status if o.answer else None
    if status != 400:
        failures.append(f"Host: localhost + Host: evil.example -> {status}")
    o = raw_exchange(d, (f"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n"
                         f"Authorization: Bearer {d.token()}\r\nAuthorization: Bearer x\r\n"
                         f"Connection: close\r\n\r\n").encode())
    status = parse_raw(o.answer).status if o.answer else None
    if status != 400:
        failures.append(f"two Authorization headers -> {status}")
    assert_healthy(d)
    assert not failures, failures


def test_non_json_body_get_on_mutating_path_and_websocket_upgrade(daemon):
    """T45: a non-JSON body gets 400, a GET on a DELETE-only path 405, and `Upgrade:
    websocket` is not switched (no 101); none changes state."""
    d = daemon
    before = apps(d)
    a = request(d, "POST", "/v1/apps", local_headers(d, **{"Content-Type": "text/plain"}),
                b"name=form-app")
    assert_json_error(a, 400, "POST /v1/apps with a form-encoded text/plain body")
    assert_healthy(d)
    a = request(d, "GET", f"/v1/apps/{SEED_APP}", local_headers(d))
    assert_json_error(a, 405, f"GET /v1/apps/{SEED_APP} (a DELETE-only path)")
    assert_healthy(d)
    a = request(d, "GET", "/v1/status", local_headers(d, **{
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}))
    assert a.status != 101, "the admin API switched to WebSocket"
    assert_healthy(d)
    assert apps(d) == before


# ------------------------------------------------------------------------------ T46: sizes


def test_bodies_over_1_mib_get_413(daemon):
    """T46: a 2 MiB body with a correct Content-Length, a Content-Length of 2 MiB with only a
    few bytes sent, and a 2 MiB chunked body all get 413 with a JSON error, early or at least
    within the request limit; no app is created."""
    d = daemon
    before = apps(d)
    auth = f"Host: localhost\r\nAuthorization: Bearer {d.token()}\r\n"
    body = b'{"name": "huge-app", "pad": "' + b"x" * (2 * MIB) + b'"}'
    head = (f"POST /v1/apps HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()

    o = raw_exchange(d, head + body)
    assert_error_or_close(o, "2 MiB body", status=413)
    assert_healthy(d)

    o = raw_exchange(d, head + b'{"name": "huge-app"}')
    assert_error_or_close(o, "Content-Length 2 MiB, 20 bytes sent", status=413)
    assert_healthy(d)

    chunked_head = (f"POST /v1/apps HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024) for _ in range(32))
    o = raw_exchange(d, chunked_head + chunks + b"0\r\n\r\n")
    assert_error_or_close(o, "2 MiB chunked body", status=413)
    assert_healthy(d)

    # A body just under the limit is read and judged (400: not a valid app body), not refused.
    a = request(d, "POST", "/v1/apps",
                local_headers(d, **{"Content-Type": "application/json"}),
                b'{"name": "' + b"a" * (MIB - 100) + b'"}')
    assert_json_error(a, 400, "a 1 MiB - 88 B body with an over-long name")
    assert_healthy(d)
    assert apps(d) == before


def test_oversized_headers_get_431(daemon):
    """T46: 64 KiB of headers, and a 100 KiB request line, get 431 (admin_server.cc's
    header_limit answer) with a JSON error, never a hang."""
    d = daemon
    auth = f"Host: localhost\r\nAuthorization: Bearer {d.token()}\r\n"
    o = raw_exchange(d, (f"GET /v1/status HTTP/1.1\r\n{auth}X-Pad: {'a' * 65536}\r\n\r\n"
                         ).encode())
    assert_error_or_close(o, "one 64 KiB header", status=431)
    assert_healthy(d)
    many = "".join(f"X-Pad-{i}: {'b' * 60}\r\n" for i in range(1024))  # ~70 KiB
    o = raw_exchange(d, f"GET /v1/status HTTP/1.1\r\n{auth}{many}\r\n".encode())
    assert_error_or_close(o, "1024 headers (~70 KiB)", status=431)
    assert_healthy(d)
    o = raw_exchange(d, f"GET /{'a' * 100 * 1024} HTTP/1.1\r\n{auth}\r\n".encode())
    assert_error_or_close(o, "a 100 KiB request line", status=431)
    assert_healthy(d)


# ------------------------------------------------------------------------------ T46: slow clients


def test_slowloris_clients_are_cut_at_the_request_limit(daemon):
    """T46: 50 connections that send a request line and then one header byte per second do
    not stop a normal call from answering 200 at once, and each is closed by the daemon
    within ~12 s (the 10 s request limit)."""
    d = daemon
    n = 50
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = connect(d, timeout=5)
            s.sendall(b"GET /v1/status HTTP/1.1\r\n")
            s.setblocking(False)
            socks.append(s)
        t0 = time.monotonic()
        closed_at: dict[int, float] = {}
        checked_api = False
        next_byte = t0
        payload = b"X-Slow: " + b"a" * 64
        sent = 0
        deadline = t0 + CLOSE_BOUND_S + 1.5
        while len(closed_at) < n and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_byte:
                b = payload[sent % len(payload):sent % len(payload) + 1]
                for i, s in enumerate(socks):
                    if i in closed_at:
                        continue
                    try:
                        s.send(b)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic() - t0
                sent += 1
                next_byte += 1.0
            if not checked_api and now - t0 >= 3.0:
                assert_healthy(d, within=3.0)  # answered while all 50 are held open
                checked_api = True
            open_socks = [s for i, s in enumerate(socks) if i not in closed_at]
            wait = max(0.0, min(next_byte - time.monotonic(), 0.2))
            readable, _, _ = select.select(open_socks, [], [], wait)
            for s in readable:
                i = socks.index(s)
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed_at[i] = time.monotonic() - t0
        assert checked_api, "the normal API call was not made"
        still_open = n - len(closed_at)
        assert still_open == 0, (f"{still_open} of {n} slow connections still open after "
                                 f"{time.monotonic() - t0:.1f}s (request limit 10 s)")
        late = {i: round(t, 1) for i, t in closed_at.items() if t > CLOSE_BOUND_S}
        assert not late, f"slow connections closed after the bound: {late}"
    finally:
        for s in socks:
            s.close()
    assert_healthy(d)


# ------------------------------------------------------------------------------ garbage


def test_bytes_that_are_not_http_get_an_error_or_a_close(daemon):
    """T46: random bytes, a TLS ClientHello, an HTTP/0.9 request, a NUL in the request line, a
    bad version and bad Content-Lengths are each answered with a JSON error or closed within
    the request limit; the daemon stays up. The cases run in parallel."""
    d = daemon
    hello = (b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + os.urandom(32) + b"\x00"
             + b"\x00\x02\x13\x01\x01\x00" + os.urandom(150))
    cases: dict[str, bytes] = {
        "4 KiB of random bytes": os.urandom(4096),
        "TLS ClientHello": hello,
        "HTTP/0.9 request": b"GET /\r\n",
        "HTTP/0.9 request, then nothing": b"GET /\r\n\r\n",
        "NUL bytes in the request line": b"GET /v1/\x00status HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "bad version": b"GET /v1/status HTTP/7.3\r\nHost: localhost\r\n\r\n",
        "only CRLFs": b"\r\n" * 2048,
        "4 KiB of spaces": b" " * 4096,
        "Content-Length beyond 2^64": (b"POST /v1/apps HTTP/1.1\r\nHost: localhost\r\n"
                                       b"Content-Length: 99999999999999999999999\r\n\r\n{}"),
        "negative Content-Length": (b"POST /v1/apps HTTP/1.1\r\nHost: localhost\r\n"
                                    b"Content-Length: -1\r\n\r\n{}"),
        "two different Content-Lengths": (b"POST /v1/apps HTTP/1.1\r\nHost: localhost\r\n"
                                          b"Content-Length: 2\r\nContent-Length: 500\r\n"
                                          b"\r\n{}"),
    }
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {label: pool.submit(raw_exchange, d, data) for label, data in cases.items()}
        outcomes = {label: f.result(timeout=SOCKET_TIMEOUT_S + 10) for label, f in futures.items()}
    for label, o in outcomes.items():
        assert_error_or_close(o, label)
    assert_healthy(d)


def test_ambiguous_body_framing_gets_a_json_400(daemon):
    """Two Content-Length headers (equal or not), Content-Length with Transfer-Encoding (in
    either order), and a Transfer-Encoding that does not end in chunked leave the body's length
    to whoever reads the request (RFC 9112 section 6.3: request smuggling through a proxy): each
    gets 400 with a JSON error and the connection closed, and nothing is created."""
    d = daemon
    before = apps(d)
    body = b'{"name": "smuggled-app"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    n = len(body)
    cases: dict[str, tuple[str, bytes]] = {
        "two equal Content-Lengths": (f"Content-Length: {n}\r\nContent-Length: {n}\r\n", body),
        "two different Content-Lengths": (f"Content-Length: {n}\r\nContent-Length: 2\r\n",
                                          body),
        "Content-Length, then Transfer-Encoding": (
            f"Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n", chunked),
        "Transfer-Encoding, then Content-Length": (
            f"Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n", chunked),
        "Transfer-Encoding gzip with Content-Length": (
            f"Transfer-Encoding: gzip\r\nContent-Length: {n}\r\n", body),
        "Transfer-Encoding not ending in chunked": ("Transfer-Encoding: chunked, gzip\r\n",
                                                    chunked),
    }
    failures = []
    for label, (framing, payload) in cases.items():
        head = (f"POST /v1/apps HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {d.token()}\r\nContent-Type: application/json\r\n"
                f"{framing}\r\n").encode()
        o = raw_exchange(d, head + payload)
        if not o.answer:
            failures.append(f"{label}: closed without an answer (closed={o.closed})")
            continue
        a = parse_raw(o.answer)
        if a.status != 400:
            failures.append(f"{label}: {o.answer[:200]!r}")
            continue
        assert_json_error(a, 400, label)
        assert o.closed and o.elapsed < CLOSE_BOUND_S, f"{label}: not closed after the 400"
        assert_healthy(d)
    assert not failures, failures
    assert apps(d) == before


def test_auth_scheme_and_host_name_ignore_case(daemon):
    """HTTP makes the auth scheme and the host name case-insensitive: `Authorization: bearer
    <token>` and `Host: LOCALHOST:<port>` are accepted; the token itself is not: the right
    token in other letter case gets 401."""
    d = daemon
    token = d.token()
    failures = []
    for scheme in ("bearer", "BEARER", "Bearer"):
        a = request(d, "GET", "/v1/status",
                    {"Host": f"127.0.0.1:{d.api_port}", "Authorization": f"{scheme} {token}"})
        if a.status != 200:
            failures.append(f"Authorization: {scheme} <token> -> {a.status} {a.body[:200]!r}")
    for host in ("LOCALHOST", f"LOCALHOST:{d.api_port}", f"LocalHost:{d.api_port}"):
        a = request(d, "GET", "/v1/status",
                    {"Host": host, "Authorization": f"Bearer {token}"})
        if a.status != 200:
            failures.append(f"Host: {host} -> {a.status} {a.body[:200]!r}")
    assert not failures, failures
    assert token.swapcase() != token, "the token has no letters to change the case of"
    a = request(d, "GET", "/v1/status",
                {"Host": "localhost", "Authorization": f"bearer {token.swapcase()}"})
    assert_json_error(a, 401, "the token in other letter case")
    assert_healthy(d)


# ------------------------------------------------------------------------------ concurrency


def test_200_parallel_status_requests_all_answer(daemon):
    """T46: 200 parallel GET /v1/status (one connection each) all answer 200 (the API has no
    concurrency cap), each within the socket timeout; the daemon stays up."""
    d = daemon
    headers = local_headers(d)
    start = threading.Barrier(200, timeout=30)

    def one(_: int) -> tuple[int | None, str, float]:
        start.wait()
        try:
            a = request(d, "GET", "/v1/status", headers, timeout=SOCKET_TIMEOUT_S)
            return a.status, a.body[:120].decode(errors="replace"), a.elapsed
        except OSError as e:
            return None, repr(e), 0.0

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200), timeout=60))
    total = time.monotonic() - t0
    bad = [r for r in results if r[0] != 200]
    assert not bad, f"{len(bad)} of 200 did not answer 200, e.g. {bad[:5]}"
    slowest = max(r[2] for r in results)
    assert slowest < 10.0, f"slowest parallel status answered after {slowest:.1f}s"
    assert total < 30.0, total
    assert_healthy(d)
    assert app_names(d) == [SEED_APP]
