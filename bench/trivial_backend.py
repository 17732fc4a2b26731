#!/usr/bin/python3
"""A PostgreSQL server that answers at once, for the handshake benchmark (bench.py, workload
"hs"): it accepts any StartupMessage without a password, and it costs next to nothing per
connection, so what a client measures through an edge in front of it is the edge's own
per-connection cost (the TLS handshake above all), not a backend's start.

Per connection (plaintext; the edge in front terminates TLS):
  SSLRequest / GSSENCRequest  -> 'N' (no encryption here), then the StartupMessage
  CancelRequest               -> closed
  StartupMessage              -> AuthenticationOk, a few ParameterStatus, BackendKeyData,
                                 ReadyForQuery (idle)
  Query 'Q'                   -> CommandComplete and ReadyForQuery (PgBouncer sends
                                 DISCARD ALL when it takes a server connection back)
  Sync 'S'                    -> ReadyForQuery
  Terminate 'X' or EOF        -> closed
  anything else               -> ignored

Python standard library only (asyncio). One thread, one event loop.

    python3 bench/trivial_backend.py --port P [--wait SECONDS] [--delay-ms D]

--delay-ms D: wait D ms (a timer, no CPU) before answering a StartupMessage, to stand for a
backend that takes that long to start without using the CPU meanwhile.

Prints "ready PORT" on stdout once it listens on 127.0.0.1:PORT (PORT 0: a free port, the one
printed), and exits after --wait seconds (default 3600) or on SIGTERM, printing on stderr how many
connections, startups and queries it saw (pgbench -C with a script of meta-commands only sends no
query: the count shows it).
"""
import argparse
import asyncio
import signal
import struct
import sys

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def param(name, value):
    return msg(b"S", name.encode() + b"\0" + value.encode() + b"\0")


READY = msg(b"Z", b"I")
GREETING = b"".join([
    msg(b"R", struct.pack("!I", 0)),  # AuthenticationOk
    param("server_version", "15.0 (trivial)"),
    param("server_encoding", "UTF8"),
    param("client_encoding", "UTF8"),
    param("DateStyle", "ISO, MDY"),
    param("integer_datetimes", "on"),
    param("standard_conforming_strings", "on"),
])


class Stats:
    startups = 0
    connections = 0
    queries = 0


DELAY_S = 0.0


async def serve(reader, writer):
    Stats.connections += 1
    try:
        while True:  # startup phase: SSLRequest/GSSENCRequest may come first
            head = await reader.readexactly(8)
            length, code = struct.unpack("!II", head)
            if length < 8 or length > 10000:
                return
            await reader.readexactly(length - 8)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                continue
            if code == CANCEL_REQUEST:
                return
            break
        Stats.startups += 1
        if DELAY_S:
            await asyncio.sleep(DELAY_S)
        writer.write(GREETING + msg(b"K", struct.pack("!II", Stats.startups, 12345)) + READY)
        await writer.drain()
        while True:
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            if length < 4 or length > 1 << 20:
                return
            await reader.readexactly(length - 4)
            if kind == b"X":
                return
            if kind == b"Q":
                Stats.queries += 1
                writer.write(msg(b"C", b"SELECT 0\0") + READY)
                await writer.drain()
            elif kind == b"S":
                writer.write(READY)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--wait", type=float, default=3600)
    ap.add_argument("--delay-ms", type=float, default=0)
    a = ap.parse_args()
    global DELAY_S
    DELAY_S = a.delay_ms / 1000
    server = await asyncio.start_server(serve, "127.0.0.1", a.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("ready %d\n" % port)
    sys.stdout.flush()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(0))
    try:
        await asyncio.wait_for(stop, a.wait)
    except asyncio.TimeoutError:
        pass
    server.close()
    sys.stderr.write("trivial_backend: %d connections, %d startups, %d queries\n" % (
        Stats.connections, Stats.startups, Stats.queries))


if __name__ == "__main__":
    asyncio.run(main())
