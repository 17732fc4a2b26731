#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed_*): real protocol bytes
and real fly.toml files (every file of tests/data/fly_toml, the set the tests load). Run it again
after changing a seed; crash-* files found by fuzzing sit beside the seeds and are kept as they
are."""
import os
import ssl
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data, keep_existing=False):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "seed_" + name)
    if keep_existing and os.path.exists(path):
        return
    with open(path, "wb") as f:
        f.write(data)


def u32(v):
    return struct.pack(">I", v)


def msg(t, body):
    return t.encode() + u32(4 + len(body)) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(version, params, terminator=True):
    body = u32(version) + b"".join(cstr(k) + cstr(v) for k, v in params)
    if terminator:
        body += b"\0"
    return u32(4 + len(body)) + body


def cancel(pid, key):
    return u32(12 + len(key)) + u32(80877102) + u32(pid) + key


def client_hello(alpn, sni):
    """The first flight of a real TLS 1.3 client (Python's OpenSSL) over memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


SSL = bytes.fromhex("0000000804d2162f")
GSS = bytes.fromhex("0000000804d21630")
V30 = 196608
V32 = 196610
ALICE = startup(V30, [("user", "alice"), ("database", "app")])

# --- startup: what a client sends first ---
write("startup", "ssl_request", SSL)
write("startup", "gssenc_request", GSS)
write("startup", "gssenc_then_ssl_then_startup", GSS + SSL + ALICE)
write("startup", "ssl_then_pipelined_query", SSL + msg("Q", cstr("select 1")))
write("startup", "ssl_then_startup", SSL + ALICE)
write("startup", "ssl_then_ssl", SSL + SSL)
write("startup", "ssl_then_gssenc", SSL + GSS)
write("startup", "gssenc_twice", GSS + GSS)
write("startup", "cancel_30", bytes.fromhex("0000001004d2162e00001234deadbeef"))
write("startup", "cancel_32_key32", cancel(0x7F001234, bytes(range(32))))
write("startup", "cancel_key1", cancel(1, b"\x01"))
write("startup", "cancel_key256", cancel(2, bytes(256)))
write("startup", "cancel_key0", cancel(3, b""))
write("startup", "cancel_key257", cancel(4, bytes(257)))
write("startup", "cancel_then_terminate", cancel(5, b"abcd") + msg("X", b""))
write("startup", "ssl_then_cancel", SSL + cancel(6, b"wxyz"))
write("startup", "startup_30", ALICE)
write("startup", "startup_30_then_query", ALICE + msg("Q", cstr("select 1")))
write("startup", "startup_32_pq", startup(V32, [("user", "alice"), ("_pq_.x", "1"), ("database", "app")]))
write("startup", "startup_grease", startup((3 << 16) | 9999, [("user", "u"), ("_pq_.test_protocol_negotiation", "")]))
write("startup", "startup_40", startup(4 << 16, [("user", "alice")]))
write("startup", "startup_no_user", startup(V30, [("database", "app")]))
write("startup", "startup_no_terminator", startup(V30, [("user", "alice")], terminator=False))
write("startup", "startup_options", startup(V30, [("user", "postgres"), ("options", "-c search_path=x endpoint=ep-1"), ("application_name", "psql"), ("client_encoding", "UTF8")]))
pad = 10004 - len(startup(V30, [("user", "alice"), ("application_name", "")]))
write("startup", "startup_len_10004", startup(V30, [("user", "alice"), ("application_name", "x" * pad)]))
write("startup", "length_7", u32(7) + u32(V30))
write("startup", "length_10005", u32(10005) + u32(V30))
write("startup", "http_get", "GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n")
hello = client_hello(["postgresql"], "db.example.com")
# ClientHellos carry random bytes: written once, kept so the corpus does not churn.
write("startup", "direct_tls_client_hello", hello, keep_existing=True)
write("startup", "direct_tls_then_startup", hello + ALICE, keep_existing=True)
write("startup", "direct_tls_h2", client_hello(["h2", "http/1.1"], "www.example.com"), keep_existing=True)

# --- backend: what a server sends until ReadyForQuery ---
def param(k, v):
    return msg("S", cstr(k) + cstr(v))

AUTH_OK = msg("R", u32(0))
PARAMS = b"".join(param(k, v) for k, v in [
    ("application_name", "psql"), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"), ("IntervalStyle", "postgres"), ("is_superuser", "off"),
    ("server_encoding", "UTF8"), ("server_version", "15.4 (Debian 15.4-1.pgdg120+1)"),
    ("session_authorization", "alice"), ("standard_conforming_strings", "on"), ("TimeZone", "Etc/UTC")])
KEY = msg("K", u32(4242) + bytes.fromhex("01020304"))
READY = msg("Z", b"I")
write("backend", "pg15_trust", AUTH_OK + PARAMS + KEY + READY)
sasl = msg("R", u32(10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
cont = msg("R", u32(11) + b"r=abc,s=c2FsdA==,i=4096")
final = msg("R", u32(12) + b"v=c2lnbmF0dXJl")
write("backend", "pg15_scram", sasl + cont + final + AUTH_OK + PARAMS + KEY + READY)
write("backend", "pg18_key32_npv", msg("v", u32(V30) + u32(1) + cstr("_pq_.x")) + AUTH_OK + PARAMS +
      msg("K", u32(99) + bytes(range(32))) + READY)
write("backend", "no_key_rds_proxy", AUTH_OK + param("server_version", "16.1") + READY)
fatal = msg("E", b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"alice\"\0Fauth.c\0L326\0Rauth_failed\0\0")
write("backend", "auth_failed", fatal)
write("backend", "too_many_clients", msg("E", b"SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0"))
notice = msg("N", b"SWARNING\0VWARNING\0C01000\0Mbig\0D" + b"d" * 9000 + b"\0\0")
write("backend", "big_notice_then_key", AUTH_OK + notice + KEY + READY)
write("backend", "big_parameter_status", AUTH_OK + param("x", "y" * 9000) + KEY + READY)
write("backend", "after_ready_query", AUTH_OK + KEY + READY + msg("T", b"\0\1" + cstr("?column?") + bytes(18)) +
      msg("D", b"\0\1" + u32(1) + b"1") + msg("C", cstr("SELECT 1")) + READY + KEY)
write("backend", "bad_length", AUTH_OK + b"S\0\0\0\x02")
write("backend", "bad_key", AUTH_OK + msg("K", u32(1)))
write("backend", "empty_messages", msg("N", b"") + msg("S", b"") + msg("E", b"") + msg("Z", b""))

# --- messages: bodies of single messages ---
write("messages", "error_body", b"SFATAL\0VFATAL\0C28000\0MSSL/TLS is required on this port\0\0")
write("messages", "error_body_detail_hint", b"SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0Ddetail\0Hhint\0P15\0\0")
write("messages", "parameter_status", cstr("server_version") + cstr("15.4"))
write("messages", "key_30", u32(4242) + bytes.fromhex("deadbeef"))
write("messages", "key_32", u32(4242) + bytes(range(32)))
write("messages", "startup_body", b"".join(cstr(s) for s in ["user", "alice", "database", "app"]) + b"\0")
write("messages", "terminator_only", b"\0")
write("messages", "startup_body_app_option", b"".join(cstr(s) for s in ["user", "alice", "options", "-c x=1 app=my-pg"]) + b"\0")
write("messages", "startup_body_app_escaped", b"".join(cstr(s) for s in ["user", "alice", "options", "app=a\\ b -c search_path=a\\ b", "database", "app"]) + b"\0")

# --- fly_toml: every file of tests/data/fly_toml, the fly.toml set the tests load ---
FLY_TOML_DATA = os.path.join(HERE, "..", "tests", "data", "fly_toml")
fly_toml_seeds = set()
for name in sorted(os.listdir(FLY_TOML_DATA)):
    stem, ext = os.path.splitext(name)
    if ext == ".toml":
        with open(os.path.join(FLY_TOML_DATA, name), "rb") as f:
            write("fly_toml", stem, f.read())
        fly_toml_seeds.add("seed_" + stem)
# A seed whose file left the set goes too (crash-* files stay).
fly_toml_dir = os.path.join(HERE, "corpus", "fly_toml")
for name in os.listdir(fly_toml_dir):
    if name.startswith("seed_") and name not in fly_toml_seeds:
        os.remove(os.path.join(fly_toml_dir, name))
