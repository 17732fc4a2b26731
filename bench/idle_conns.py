#!/usr/bin/python3
"""Holds N idle PostgreSQL TLS connections open at once (stdlib only: socket, ssl, selectors).

Each connection sends an SSLRequest, expects 'S', completes the TLS handshake and then stops
before the StartupMessage, so the proxy holds one TLS session per connection and (for
Drawbridge and PgBouncer) no server connection. Used by bench.py to measure a proxy's memory
per idle connection.

Protocol with the caller (one JSON object per line on stdout):
  {"phase": "held", ...}   every connection was attempted; counts of held and failed, by reason
  {"phase": "check", ...}  after --hold seconds: how many are still open (none closed by peer)
then the script waits for a line (or EOF) on stdin, bounded by --wait, closes everything and
prints {"phase": "done"}.

Sink mode (--sink PORT): listens on 127.0.0.1:PORT, accepts and holds every connection without
reading, until stdin closes or --wait passes. stunnel connects upstream right after its TLS
handshake, so its idle test points it at this sink instead of PostgreSQL.

Every loop is bounded in count and time.
"""
import argparse
import errno
import json
import resource
import selectors
import socket
import ssl
import struct
import sys
import time

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stdin_line(timeout):
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    ready = sel.select(timeout)
    sel.close()
    if ready:
        sys.stdin.readline()


class Conn:
    __slots__ = ("sock", "state", "deadline")

    def __init__(self, sock, deadline):
        self.sock = sock
        self.state = "connect"
        self.deadline = deadline


def run_client(args):
    nofile = raise_nofile()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    sel = selectors.DefaultSelector()
    pending = {}  # fd -> Conn, not yet held
    held = {}  # fd -> Conn
    reasons = {}
    started = time.monotonic()
    open_deadline = started + args.open_timeout
    next_index = 0

    def fail(c, reason):
        reasons[reason] = reasons.get(reason, 0) + 1
        fd = c.sock.fileno()
        pending.pop(fd, None)
        held.pop(fd, None)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def set_events(c, events):
        try:
            sel.modify(c.sock, events, c)
        except KeyError:
            sel.register(c.sock, events, c)

    def handshake(c):
        try:
            c.sock.do_handshake()
        except ssl.SSLWantReadError:
            set_events(c, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            set_events(c, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as e:
            fail(c, "tls_handshake: " + type(e).__name__ + " " + str(e)[:60])
            return
        c.state = "held"
        fd = c.sock.fileno()
        pending.pop(fd, None)
        held[fd] = c
        set_events(c, selectors.EVENT_READ)

    def on_held_readable(c):
        # An idle connection is readable only for a session ticket (no application data),
        # a close or an error: a close or an error means the proxy dropped it.
        try:
            data = c.sock.recv(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (ssl.SSLError, OSError) as e:
            fail(c, "dropped: " + type(e).__name__)
            return
        if not data:
            fail(c, "dropped: closed by peer")

    def step(c, mask):
        if c.state == "held":
            on_held_readable(c)
        elif c.state == "connect":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(c, "connect: " + errno.errorcode.get(err, str(err)))
                return
            try:
                c.sock.send(SSL_REQUEST)
            except OSError as e:
                fail(c, "send_sslrequest: " + type(e).__name__)
                return
            c.state = "sslreq"
            set_events(c, selectors.EVENT_READ)
        elif c.state == "sslreq":
            try:
                b = c.sock.recv(1)
            except BlockingIOError:
                return
            except OSError as e:
                fail(c, "sslrequest_answer: " + type(e).__name__)
                return
            if b != b"S":
                fail(c, "sslrequest_answer: " + (repr(b) if b else "closed"))
                return
            sel.unregister(c.sock)
            fd = c.sock.fileno()
            tls = ctx.wrap_socket(c.sock, server_side=False, do_handshake_on_connect=False)
            pending.pop(fd, None)
            c.sock = tls
            c.state = "tls"
            pending[tls.fileno()] = c
            handshake(c)
        elif c.state == "tls":
            handshake(c)

    while True:
        now = time.monotonic()
        if now > open_deadline:
            for c in list(pending.values()):
                fail(c, "open_phase_timeout")
            break
        while next_index < args.n and len(pending) < args.window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(s, now + args.conn_timeout)
            next_index += 1
            rc = s.connect_ex((args.host, args.port))
            if rc not in (0, errno.EINPROGRESS):
                reasons["connect: " + errno.errorcode.get(rc, str(rc))] = \
                    reasons.get("connect: " + errno.errorcode.get(rc, str(rc)), 0) + 1
                s.close()
                continue
            pending[s.fileno()] = c
            sel.register(s, selectors.EVENT_WRITE, c)
        if next_index >= args.n and not pending:
            break
        for key, mask in sel.select(0.5):
            step(key.data, mask)
        now = time.monotonic()
        for c in [c for c in pending.values() if c.deadline < now]:
            fail(c, "timeout_" + c.state)

    open_seconds = time.monotonic() - started
    emit({"phase": "held", "attempted": next_index, "held": len(held),
          "failed": sum(reasons.values()), "reasons": reasons,
          "open_seconds": round(open_seconds, 2), "nofile": nofile})

    hold_until = time.monotonic() + args.hold
    while time.monotonic() < hold_until:
        for key, mask in sel.select(max(0.0, min(0.5, hold_until - time.monotonic()))):
            step(key.data, mask)
    emit({"phase": "check", "alive": len(held), "failed": sum(reasons.values()),
          "reasons": reasons})

    stdin_line(args.wait)
    for c in list(held.values()):
        try:
            c.sock.close()
        except OSError:
            pass
    emit({"phase": "done"})


def run_sink(args):
    nofile = raise_nofile()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.sink))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    held = []
    emit({"phase": "listening", "port": args.sink, "nofile": nofile})
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        done = False
        for key, _ in sel.select(0.5):
            if key.data == "stdin":
                done = True
                break
            for _ in range(256):
                try:
                    s, _ = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                held.append(s)
        if done:
            break
    for s in held:
        s.close()
    emit({"phase": "done", "accepted": len(held)})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--window", type=int, default=64, help="connections in progress at once")
    p.add_argument("--conn-timeout", type=float, default=30.0)
    p.add_argument("--open-timeout", type=float, default=240.0)
    p.add_argument("--hold", type=float, default=3.0)
    p.add_argument("--wait", type=float, default=120.0, help="bound on waiting for stdin")
    p.add_argument("--sink", type=int, help="sink mode: hold accepted connections on this port")
    args = p.parse_args()
    if args.sink:
        run_sink(args)
    else:
        run_client(args)


if __name__ == "__main__":
    main()
