"""Public names: the built-in CA and per-app certificates, SNI certificate selection, the shared
IPv4 routed by SNI or `options=app=NAME`, DNS answers that `verify-full` clients can use, and
certificate rotation under load (docs/architecture.md, "Certificates", "DNS", "Routing").

Everything runs against the real daemon (`drawbridge serve --data-dir ... --dns-port ...`),
driven through its CLI, with two real PostgreSQL 15 servers as the machines of two apps (so a
route to the wrong machine shows), and real clients: openssl s_client -starttls postgres,
psql, pgbench, dig.

The tests run in file order and share one daemon; the certificate-changing tests come last.
Nothing here skips: a missing binary, Postgres, openssl, dig or client fails.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      tests/integration/test_public_names.py
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness
import pgwire as w
from harness import PGBENCH, PSQL, free_port, libpq_env, run, wait_until

DOMAIN = "drawbridge.test"
V4_POOL = "127.0.40.0/24"
V6_POOL = "fd00:db:40::/64"
SHARED_V4 = "127.0.40.1"  # `.1` of the v4 pool
PG2_PASSWORD = "second-postgres-superuser-secret"

A, B = "alpha", "beta"  # the two apps, each on its own Postgres


def host_of(app: str) -> str:
    return f"{app}.{DOMAIN}"


# ------------------------------------------------------------------------------ helpers


def quote(v) -> str:
    """A libpq conninfo value, quoted when it needs to be."""
    v = str(v)
    if v and not re.search(r"[\s'\\]", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(**kw) -> str:
    return " ".join(f"{k}={quote(v)}" for k, v in kw.items() if v is not None)


class Daemon(harness.DrawbridgeDaemon):
    """`drawbridge serve` on a fresh data dir, with DNS; the CLI runs against it."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN, dns=True)

    def start(self, timeout: float = 30.0, fresh: bool = True) -> None:
        assert self.data.exists() != fresh, f"{self.data} exists={self.data.exists()}"
        super().start(timeout)

    def cert_json(self, host: str) -> dict:
        return json.loads(self.cli("certs", "show", host, "--json").stdout)


def error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("Error: ")]
    assert lines, f"no 'Error: ' line on stderr:\n{p.stderr}"
    return lines[-1]


# -- certificates as openssl sees them


@dataclass
class CertInfo:
    pem: str
    text: str  # openssl x509 -text
    subject_cn: str
    sans: list[str]
    serial: str  # upper-case hex, no colons
    issuer_cn: str


def cert_info(pem: str) -> CertInfo:
    first = first_pem(pem)
    text = run(["openssl", "x509", "-noout", "-text"], input=first, timeout=30).stdout
    serial = run(["openssl", "x509", "-noout", "-serial"], input=first,
                 timeout=30).stdout.strip().split("=", 1)[1].upper()
    m = re.search(r"Subject:.*?CN ?= ?([^,\n/]+)", text)
    subject_cn = m.group(1).strip() if m else ""
    m = re.search(r"Issuer:.*?CN ?= ?([^,\n/]+)", text)
    issuer_cn = m.group(1).strip() if m else ""
    m = re.search(r"X509v3 Subject Alternative Name:(?: critical)?\s*\n\s*(.*)\n", text)
    sans = [s.strip() for s in m.group(1).split(",")] if m else []
    return CertInfo(pem=first, text=text, subject_cn=subject_cn, sans=sans, serial=serial,
                    issuer_cn=issuer_cn)


def first_pem(text: str) -> str:
    m = re.search(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n?", text,
                  re.S)
    assert m, f"no PEM certificate in:\n{text[-3000:]}"
    return m.group(0) if m.group(0).endswith("\n") else m.group(0) + "\n"


def served_cert(addr: str, port: int, servername: str | None = None,
                cafile: Path | None = None, direct: bool = False) -> tuple[CertInfo, str]:
    """The leaf the edge serves for `openssl s_client -starttls postgres` to addr:port (or,
    with direct, PostgreSQL 17's direct TLS: ALPN `postgresql`, no SSLRequest), with or without
    SNI; also s_client's full output."""
    target = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    cmd = ["openssl", "s_client", "-connect", target]
    cmd += ["-alpn", "postgresql"] if direct else ["-starttls", "postgres"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    if cafile:
        cmd += ["-CAfile", str(cafile)]
    p = subprocess.run(cmd, input="", capture_output=True, encoding="utf-8", errors="replace",
                       timeout=30)
    out = p.stdout + p.stderr
    assert "-----BEGIN CERTIFICATE-----" in p.stdout, f"{cmd}: no certificate served\n{out}"
    return cert_info(p.stdout), out


# -- a throwaway CA of our own (for operator certificates)


_CA_CNF = """
[ca]
default_ca = throwaway
[throwaway]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/issued
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = {cn}
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXT = """
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:{host}
"""


class ThrowawayCA:
    def __init__(self, base: Path, cn: str):
        self.dir = base
        (base / "issued").mkdir(parents=True)
        (base / "index.txt").write_text("")
        (base / "serial").write_text("%032X\n" % int.from_bytes(os.urandom(15), "big"))
        self.cnf = base / "ca.cnf"
        self.cnf.write_text(_CA_CNF.format(dir=base, cn=cn))
        self.key = base / "ca.key"
        self.pem = base / "ca.pem"
        self.n = 0
        run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(self.key), "-out",
             str(self.pem), "-days", "3", "-config", str(self.cnf)], timeout=30)

    def issue(self, host: str, *, start: str | None = None, end: str | None = None,
              days: int = 3) -> tuple[Path, Path, str]:
        """A leaf for `host` (SAN DNS:host), signed by this CA; (chain PEM: leaf then CA,
        key PEM, serial in upper-case hex)."""
        self.n += 1
        stem = self.dir / f"leaf{self.n}"
        ext = stem.with_suffix(".ext")
        ext.write_text(_LEAF_EXT.format(host=host))
        key = stem.with_suffix(".key")
        csr = stem.with_suffix(".csr")
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={host}"],
            timeout=30)
        leaf = stem.with_suffix(".pem")
        cmd = ["openssl", "ca", "-batch", "-config", str(self.cnf), "-cert", str(self.pem),
               "-keyfile", str(self.key), "-in", str(csr), "-out", str(leaf), "-notext",
               "-extfile", str(ext), "-extensions", "leaf"]
        if start or end:
            cmd += ["-startdate", start, "-enddate", end]
        else:
            cmd += ["-days", str(days)]
        run(cmd, timeout=30)
        chain = stem.with_suffix(".chain.pem")
        chain.write_text(leaf.read_text() + self.pem.read_text())
        return chain, key, cert_info(leaf.read_text()).serial


# -- psql


def psql(conn: str, sql: str, check: bool = True, timeout: float = 60
         ) -> subprocess.CompletedProcess:
    return run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conn, "-c", sql],
               timeout=timeout, check=check, env=libpq_env())


WHO = ("SELECT (SELECT name FROM whoami) || ' port=' || current_setting('port') "
       "|| ' inet_server_port=' || coalesce(inet_server_port()::text, '-') "
       "|| ' tls=' || coalesce((SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()), "
       "'off')")


def edge_dsn(st: "State", **kw) -> str:
    base = dict(port=st.public_port, user="alice", password="alice-secret", dbname="app")
    base.update(kw)
    return conninfo(**base)


# ------------------------------------------------------------------------------ fixtures


@dataclass
class State:
    daemon: Daemon
    workdir: Path
    pg: dict = field(default_factory=dict)  # app -> PgServer
    ips: dict = field(default_factory=dict)  # app -> {"v4": addr, "v6": addr, "shared": addr}
    public_port: int = 0
    ca_file: Path | None = None
    served: dict = field(default_factory=dict)  # host -> serial the certs tests left in place


@pytest.fixture(scope="module")
def daemon():
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-names-"))
    with harness.running(Daemon(workdir)) as d:
        yield d


@pytest.fixture(scope="module")
def pg2():
    server = harness.start_postgres(PG2_PASSWORD)
    try:
        yield server
    finally:
        harness.stop_postgres(server)


def _mark(server, name: str) -> None:
    """A table in the `app` database that says which server answered."""
    harness.run_psql(harness.dsn(host=server.sockdir, port=server.port, user="alice",
                                 dbname="app"),
                     "-c", "DROP TABLE IF EXISTS whoami",
                     "-c", "CREATE TABLE whoami(name text)",
                     "-c", f"INSERT INTO whoami VALUES ('{name}')")


@pytest.fixture(scope="module")
def st(daemon, pg, pg2):
    """Two apps, each with its own Postgres as its machine, a dedicated v4, a v6 and the shared
    v4, deployed with the same pg_tls public port."""
    s = State(daemon=daemon, workdir=daemon.workdir, public_port=free_port())
    s.pg = {A: pg, B: pg2}
    d = daemon
    for app in (A, B):
        server = s.pg[app]
        _mark(server, f"pg-{app}")
        d.cli("apps", "create", app)
        d.cli("machines", "add", "127.0.0.1", "-a", app)
        ips = {}
        for args, key in ((("allocate-v4", "--yes"), "v4"), (("allocate-v6",), "v6"),
                          (("allocate-v4", "--shared"), "shared")):
            ip = json.loads(d.cli("ips", *args, "-a", app, "--json").stdout)
            ips[key] = ip["address"]
        s.ips[app] = ips
        toml = d.workdir / f"{app}.toml"
        toml.write_text(harness.pg_tls_fly_toml(server.port, s.public_port, app=app))
        p = d.cli("deploy", "-c", str(toml), "-a", app)
        assert re.fullmatch(r"Release v\d+ created\n", p.stdout), p.stdout + p.stderr
    s.ca_file = d.workdir / "drawbridge-ca.crt"
    s.ca_file.write_text(d.cli("certs", "ca").stdout)
    # The edge listens once the routes are applied: wait for a TLS handshake on the port.
    wait_until(lambda: subprocess.run(
        ["openssl", "s_client", "-connect", f"{s.ips[A]['v4']}:{s.public_port}", "-starttls",
         "postgres", "-noservername"], input="", capture_output=True, encoding="utf-8",
        errors="replace", timeout=30).stdout.count("BEGIN CERTIFICATE") > 0, 15, interval=0.2,
        what="the deployed pg_tls port to answer")
    return s


# ------------------------------------------------------------------------------ the CA


def test_ca_is_created_on_first_start_with_a_private_key_0600(daemon, tmp_path):
    key = daemon.data / "ca" / "ca.key"
    assert key.is_file(), f"no CA key at {key}: {sorted(os.listdir(daemon.data))}"
    mode = stat.S_IMODE(key.stat().st_mode)
    assert mode == 0o600, f"{key} has mode {oct(mode)}, want 0o600"
    assert "PRIVATE KEY" in key.read_text()

    # `certs ca` prints the CA certificate (and nothing secret).
    out = daemon.cli("certs", "ca").stdout
    assert out.startswith("-----BEGIN CERTIFICATE-----"), out
    assert "PRIVATE KEY" not in out
    ca = cert_info(out)
    assert "CA:TRUE" in ca.text, ca.text
    assert re.search(r"Key Usage: critical\s*\n\s*.*Certificate Sign", ca.text), ca.text
    # The CLI and the API agree, and the key on disk is the CA's key.
    status, body = daemon.api("GET", "/v1/ca")
    assert status == 200, body
    assert json.loads(body)["pem"].strip() == out.strip()
    pub_of_key = run(["openssl", "pkey", "-in", str(key), "-pubout"], timeout=30).stdout
    pub_of_ca = run(["openssl", "x509", "-noout", "-pubkey"], input=ca.pem, timeout=30).stdout
    assert pub_of_key == pub_of_ca, "ca/ca.key is not the key of the CA that `certs ca` prints"


@pytest.mark.parametrize("app,allocate", [("gamma", ("allocate-v6",)),
                                          ("delta", ("allocate-v4", "--shared"))])
def test_an_app_gets_its_certificate_when_it_gets_a_public_address(daemon, tmp_path, app,
                                                                   allocate):
    """No certificate while the app has no address; one for <app>.<domain> (ECDSA P-256,
    SAN exactly the host name, signed by the CA) as soon as it gets one (a v6, a shared v4)."""
    host = host_of(app)
    daemon.cli("apps", "create", app)
    daemon.cli("machines", "add", "127.0.0.1", "-a", app)
    listed = json.loads(daemon.cli("certs", "list", "--json").stdout)
    assert host not in {c["host"] for c in listed}, listed
    daemon.cli("ips", *allocate, "-a", app)

    listed = json.loads(daemon.cli("certs", "list", "--json").stdout)
    mine = [c for c in listed if c["host"] == host]
    assert len(mine) == 1, listed
    assert mine[0]["app"] == app and mine[0]["source"] == "ca", mine
    assert mine[0]["names"] == [host], mine
    assert mine[0]["not_after"] > time.time() + 30 * 86400, mine

    shown = daemon.cert_json(host)
    assert "PRIVATE KEY" not in json.dumps(shown)
    leaf = cert_info(shown["cert_pem"])
    assert "Public Key Algorithm: id-ecPublicKey" in leaf.text, leaf.text
    assert "NIST CURVE: P-256" in leaf.text or "ASN1 OID: prime256v1" in leaf.text, leaf.text
    assert leaf.sans == [f"DNS:{host}"], leaf.text
    assert "CA:FALSE" in leaf.text, leaf.text
    assert "TLS Web Server Authentication" in leaf.text, leaf.text

    ca = tmp_path / "ca.pem"
    ca.write_text(daemon.cli("certs", "ca").stdout)
    leaf_file = tmp_path / "leaf.pem"
    leaf_file.write_text(leaf.pem)
    v = run(["openssl", "verify", "-CAfile", str(ca), "-verify_hostname", host,
             str(leaf_file)], check=False, timeout=30)
    assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr
    bad = run(["openssl", "verify", "-CAfile", str(ca), "-verify_hostname", host_of("alpha"),
               str(leaf_file)], check=False, timeout=30)
    assert bad.returncode != 0, bad.stdout


# ------------------------------------------------------------------------------ SNI


def test_sni_picks_the_app_certificate(st):
    for app in (A, B):
        for addr in (st.ips[app]["v4"], st.ips[app]["v6"], SHARED_V4):
            got, out = served_cert(addr, st.public_port, host_of(app), st.ca_file)
            assert got.subject_cn == host_of(app) and got.sans == [f"DNS:{host_of(app)}"], \
                (addr, app, got.subject_cn, got.sans)
            assert "Verify return code: 0 (ok)" in out, out[-2000:]
            # SNI is case-insensitive.
            got, _ = served_cert(addr, st.public_port, host_of(app).upper())
            assert got.sans == [f"DNS:{host_of(app)}"], (addr, app, got.sans)
            # The same with PostgreSQL 17's direct TLS.
            got, out = served_cert(addr, st.public_port, host_of(app), direct=True)
            assert got.sans == [f"DNS:{host_of(app)}"], (addr, app, got.sans)
            assert "ALPN protocol: postgresql" in out, out[-2000:]


def test_no_sni_gets_the_certificate_of_the_app_that_owns_the_dialled_address(st):
    for app in (A, B):
        for kind in ("v4", "v6"):
            got, out = served_cert(st.ips[app][kind], st.public_port, None, st.ca_file)
            assert got.sans == [f"DNS:{host_of(app)}"], (app, kind, got.subject_cn, got.sans)
            assert "Verify return code: 0 (ok)" in out, out[-2000:]


def test_a_name_no_certificate_covers_keeps_the_dialled_apps_certificate(st):
    for app in (A, B):
        for kind in ("v4", "v6"):
            for name in ("nobody.example.com", f"ghost.{DOMAIN}"):
                got, _ = served_cert(st.ips[app][kind], st.public_port, name)
                assert got.sans == [f"DNS:{host_of(app)}"], (app, kind, name, got.sans)
    # So verify-full fails on the name (the certificate itself is fine).
    for app in (A, B):
        for kind in ("v4", "v6"):
            p = psql(edge_dsn(st, host="nobody.example.com", hostaddr=st.ips[app][kind],
                              sslmode="verify-full", sslrootcert=st.ca_file), "SELECT 1",
                     check=False)
            assert p.returncode != 0, p.stdout
            assert (f'server certificate for "{host_of(app)}" does not match host name '
                    f'"nobody.example.com"') in p.stderr, p.stderr


# ------------------------------------------------------------------------------ shared IPv4


def test_shared_v4_is_the_same_address_for_both_apps(st):
    assert st.ips[A]["shared"] == st.ips[B]["shared"] == SHARED_V4, st.ips
    for app in (A, B):
        listed = json.loads(st.daemon.cli("ips", "list", "-a", app, "--json").stdout)
        types = {i["address"]: i["type"] for i in listed}
        assert types == {st.ips[app]["v4"]: "v4", st.ips[app]["v6"]: "v6",
                         SHARED_V4: "shared_v4"}, listed


def test_shared_v4_routes_by_sni_to_each_apps_own_machine(st):
    for app in (A, B):
        p = psql(edge_dsn(st, host=host_of(app), hostaddr=SHARED_V4, sslmode="verify-full",
                          sslrootcert=st.ca_file), WHO)
        assert p.stdout.strip() == (f"pg-{app} port={st.pg[app].port} "
                                    f"inet_server_port={st.pg[app].port} tls=off"), p.stdout
    # The host name in any case (SNI is case-insensitive, so is verify-full).
    for app in (A, B):
        p = psql(edge_dsn(st, host=host_of(app).upper(), hostaddr=SHARED_V4,
                          sslmode="verify-full", sslrootcert=st.ca_file),
                 "SELECT name FROM whoami")
        assert p.stdout.strip() == f"pg-{app}", (app, p.stdout)
    # Both again, interleaved, several times: never crossed.
    for _ in range(3):
        for app in (B, A):
            p = psql(edge_dsn(st, host=host_of(app), hostaddr=SHARED_V4, sslmode="verify-full",
                              sslrootcert=st.ca_file), "SELECT name FROM whoami")
            assert p.stdout.strip() == f"pg-{app}", (app, p.stdout)


@pytest.mark.parametrize("options_tpl", ["app={app} -c work_mem=7MB",
                                         "-c work_mem=7MB app={app}",
                                         "  app={app}\t-c   work_mem=7MB  "])
def test_shared_v4_without_sni_routes_by_options_and_strips_app(st, options_tpl):
    # Were app=... forwarded, Postgres would refuse the connection; shown here directly.
    direct = psql(conninfo(host="127.0.0.1", port=st.pg[A].port, user="alice",
                           password="alice-secret", dbname="app", sslmode="disable",
                           options=options_tpl.format(app=A)), "SELECT 1", check=False)
    assert direct.returncode != 0 and \
        f"invalid command-line argument for server process: app={A}" in direct.stderr, \
        direct.stderr
    for app in (A, B):
        opts = options_tpl.format(app=app)
        p = run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                 edge_dsn(st, host=SHARED_V4, sslmode="require", options=opts),
                 "-c", "SELECT (SELECT name FROM whoami) || ' ' || current_setting('port')",
                 "-c", "SHOW work_mem"], timeout=60, check=False, env=libpq_env())
        assert p.returncode == 0, (opts, p.stderr)
        assert p.stdout.split("\n")[:2] == [f"pg-{app} {st.pg[app].port}", "7MB"], \
            (opts, p.stdout)
    # Postgres never saw app=... through the edge: the only mention in its logs is the
    # direct attempt above.
    for app in (A, B):
        log = [ln for ln in st.pg[app].log_text().splitlines()
               if re.search(r"app=(alpha|beta)\b", ln)]
        assert all("invalid command-line argument for server process: app=alpha" in ln
                   for ln in log), log


def test_shared_v4_options_keep_escaped_spaces_of_the_other_settings(st):
    """PostgreSQL splits options on unescaped whitespace; `\\ ` is a space inside a value. What
    the edge forwards after taking app=... out must keep that."""
    for app in (A, B):
        opts = f"-c drawbridge_it.label=hello\\ world app={app} -c work_mem=7MB"
        p = run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                 edge_dsn(st, host=SHARED_V4, sslmode="require", options=opts),
                 "-c", "SELECT name FROM whoami", "-c", "SHOW drawbridge_it.label",
                 "-c", "SHOW work_mem"], timeout=60, check=False, env=libpq_env())
        assert p.returncode == 0, (opts, p.stderr)
        assert p.stdout.split("\n")[:3] == [f"pg-{app}", "hello world", "7MB"], (opts, p.stdout)


def test_shared_v4_options_with_only_the_app_name(st):
    for app in (A, B):
        p = psql(edge_dsn(st, host=SHARED_V4, sslmode="require", options=f"app={app}"),
                 "SELECT (SELECT name FROM whoami) || ' ' || current_setting('port')")
        assert p.stdout.strip() == f"pg-{app} {st.pg[app].port}", p.stdout


HINT_RE = re.compile(r"HINT:\s+Connect with the app's host name \(<app>\.<domain>\) so that "
                     r"the client sends SNI .*options='app=<app>'", re.S)


@pytest.mark.parametrize("case", ["missing", "no-app-in-options", "unknown", "unknown-sni"])
def test_shared_v4_unknown_or_missing_app_is_a_fatal_that_says_how(st, case):
    kw = dict(host=SHARED_V4, sslmode="require")
    if case == "no-app-in-options":
        kw["options"] = "-c work_mem=7MB"
    elif case == "unknown":
        kw["options"] = "app=ghost -c work_mem=7MB"
    elif case == "unknown-sni":
        kw = dict(host=f"ghost.{DOMAIN}", hostaddr=SHARED_V4, sslmode="require")
    p = psql(edge_dsn(st, **kw), "SELECT 1", check=False)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "FATAL:" in p.stderr, p.stderr
    if case == "unknown":
        assert 'unknown app "ghost" on this address' in p.stderr, p.stderr
    else:
        assert ("this address is shared by apps and the client did not say which one"
                in p.stderr), p.stderr
    assert HINT_RE.search(p.stderr), p.stderr
    # No private address leaks into the message.
    assert "127.0.0.1" not in p.stderr and str(st.pg[A].port) not in p.stderr, p.stderr


def test_shared_v4_sni_and_options_that_disagree_are_refused(st):
    p = psql(edge_dsn(st, host=host_of(A), hostaddr=SHARED_V4, sslmode="verify-full",
                      sslrootcert=st.ca_file, options=f"app={B}"), "SELECT 1", check=False)
    assert p.returncode == 2 and "FATAL:" in p.stderr, p.stderr
    assert f'"{B}"' in p.stderr and host_of(A) in p.stderr, p.stderr


# ------------------------------------------------------------------------------ DNS


def dig_addrs(port: int, name: str, rtype: str) -> list[str]:
    dig = shutil.which("dig")
    assert dig, "dig not found: apt-get install dnsutils"
    out = run([dig, "@127.0.0.1", "-p", str(port), name, rtype, "+short", "+time=5",
               "+tries=2"], timeout=60)
    return sorted(ln.strip() for ln in out.stdout.splitlines() if ln.strip())


def test_dns_answers_match_the_allocations(st):
    for app in (A, B):
        listed = json.loads(st.daemon.cli("ips", "list", "-a", app, "--json").stdout)
        v4 = sorted(i["address"] for i in listed if i["version"] == "v4")
        v6 = sorted(str(ipaddress.ip_address(i["address"])) for i in listed
                    if i["version"] == "v6")
        assert v4 == sorted([st.ips[app]["v4"], SHARED_V4]), listed
        assert v6 == [st.ips[app]["v6"]], listed
        assert dig_addrs(st.daemon.dns_port, host_of(app), "A") == v4
        assert [str(ipaddress.ip_address(a)) for a in
                dig_addrs(st.daemon.dns_port, host_of(app), "AAAA")] == v6
        assert dig_addrs(st.daemon.dns_port, host_of(app).upper(), "A") == v4


def test_verify_full_to_every_address_from_our_dns(st):
    for app in (A, B):
        addrs = (dig_addrs(st.daemon.dns_port, host_of(app), "A")
                 + dig_addrs(st.daemon.dns_port, host_of(app), "AAAA"))
        assert len(addrs) == 3, addrs  # dedicated v4, shared v4, v6
        for addr in addrs:
            p = run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                     edge_dsn(st, host=host_of(app), hostaddr=addr, sslmode="verify-full",
                              sslrootcert=st.ca_file),
                     "-c", "\\conninfo", "-c", "SELECT name FROM whoami"],
                    timeout=60, check=False, env=libpq_env())
            assert p.returncode == 0, (app, addr, p.stderr)
            assert "SSL connection (protocol: TLSv1.3" in p.stdout, p.stdout
            assert p.stdout.strip().endswith(f"pg-{app}"), (app, addr, p.stdout)
            # A host name the certificate does not carry fails verification.
            wrong = psql(edge_dsn(st, host="wrong.example.com", hostaddr=addr,
                                  sslmode="verify-full", sslrootcert=st.ca_file), "SELECT 1",
                         check=False)
            assert wrong.returncode != 0, (app, addr, wrong.stdout)
            assert 'does not match host name "wrong.example.com"' in wrong.stderr, wrong.stderr


def test_another_apps_name_on_a_dedicated_address_is_refused(st):
    """beta's name on alpha's dedicated address (stale DNS, a typo in hostaddr): the client
    is never handed a database other than the one it named."""
    for kind in ("v4", "v6"):
        p = psql(edge_dsn(st, host=host_of(B), hostaddr=st.ips[A][kind], sslmode="verify-full",
                          sslrootcert=st.ca_file), "SELECT name FROM whoami", check=False)
        assert p.returncode != 0 and "pg-" not in p.stdout, (kind, p.stdout)
        assert "FATAL:" in p.stderr and host_of(B) in p.stderr, p.stderr


def test_a_cancel_key_counts_only_where_its_app_is_reached(st):
    """T7(b) (docs/reliability-coverage.md): a tenant that learns another app's cancel key
    cannot cancel through an address of its own: sent to alpha's dedicated addresses, beta's
    key cancels nothing; sent to beta's own address, or the shared one both apps are reached at,
    it does."""
    for cancel_at in (st.ips[B]["v4"], SHARED_V4):
        tag = f"cancel_{B}_{os.getpid()}_{time.monotonic_ns()}"
        with w.ssl_request_tls(st.ips[B]["v4"], st.public_port,
                               server_hostname=host_of(B)) as t:
            pid, key = w.backend_key(w.login_trust(t, "probe", "app",
                                                   {"application_name": tag}))
            t.send(w.query_message("SELECT pg_sleep(60)"))

            def sleeping() -> bool:
                return any(state == "active" and "pg_sleep" in q
                           for _, state, q, _ in st.pg[B].activity(tag))

            wait_until(sleeping, 10, what="pg_sleep to run on beta's Postgres")
            try:
                for addr in (st.ips[A]["v4"], st.ips[A]["v6"]):
                    reply, _ = w.cancel_no_reply(addr, st.public_port, w.cancel_request(pid, key))
                    assert reply == b""
                time.sleep(1.5)
                assert sleeping(), "beta's query was cancelled through alpha's address"
                reply, _ = w.cancel_no_reply(cancel_at, st.public_port, w.cancel_request(pid, key))
                assert reply == b""
                msgs = t.read_until(b"Z", 10)
                errs = [w.parse_error_fields(p) for typ, p in msgs if typ == b"E"]
                assert errs and errs[0]["C"] == "57014", (cancel_at, msgs)
            finally:
                st.pg[B].terminate(tag)
    log = st.daemon.log()
    assert "reason=cancel_key_of_another_app" in log, log[-3000:]


# ------------------------------------------------------------------------------ certs add


@pytest.fixture(scope="module")
def throwaway(st):
    base = st.workdir / "throwaway-ca"
    return ThrowawayCA(base, "Drawbridge Test Throwaway CA")


def _assert_kept(st: State, host: str, before: dict, serial: str, addr: str) -> None:
    after = st.daemon.cert_json(host)
    assert after["cert_pem"] == before["cert_pem"] and after["source"] == before["source"], \
        "a refused certificate replaced the previous one"
    got, _ = served_cert(addr, st.public_port, host)
    assert got.serial == serial, (got.serial, serial)
    got, _ = served_cert(addr, st.public_port, None)
    assert got.serial == serial, (got.serial, serial)


def test_certs_add_refuses_bad_certificates_and_keeps_the_old_one(st, throwaway):
    host, addr = host_of(B), st.ips[B]["v4"]
    before = st.daemon.cert_json(host)
    assert before["source"] == "ca", before
    serial = cert_info(before["cert_pem"]).serial
    assert served_cert(addr, st.public_port, host)[0].serial == serial

    # Expired (made with `openssl ca -startdate/-enddate` in 2020).
    chain, key, _ = throwaway.issue(host, start="20200101000000Z", end="20200201000000Z")
    p = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(key), check=False)
    assert error_line(p) == f"Error: certificate for {host} refused: the certificate has expired"
    _assert_kept(st, host, before, serial, addr)

    # Not valid yet (2030 to 2031).
    chain, key, _ = throwaway.issue(host, start="20300101000000Z", end="20310101000000Z")
    p = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(key), check=False)
    line = error_line(p)
    assert line.startswith(f"Error: certificate for {host} refused: ") and "valid" in line, line
    _assert_kept(st, host, before, serial, addr)

    # A key that does not match the certificate.
    chain, _, _ = throwaway.issue(host)
    _, other_key, _ = throwaway.issue(host)
    p = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(other_key),
                      check=False)
    assert error_line(p) == (f"Error: certificate for {host} refused: the key does not match "
                             "the certificate")
    _assert_kept(st, host, before, serial, addr)

    # A certificate for another name.
    chain, key, _ = throwaway.issue("db.example.com")
    p = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(key), check=False)
    line = error_line(p)
    assert line.startswith(f"Error: certificate for {host} refused: ") and \
        "does not cover" in line, line
    _assert_kept(st, host, before, serial, addr)

    # A chain whose second certificate did not sign the first.
    good_chain, good_key, _ = throwaway.issue(host)
    stranger = ThrowawayCA(st.workdir / "stranger-ca", "Stranger CA")
    broken = st.workdir / "broken-chain.pem"
    broken.write_text(first_pem(good_chain.read_text()) + stranger.pem.read_text())
    p = st.daemon.cli("certs", "add", host, "--cert", str(broken), "--key", str(good_key),
                      check=False)
    line = error_line(p)
    assert line.startswith(f"Error: certificate for {host} refused: ") and "chain" in line, line
    _assert_kept(st, host, before, serial, addr)

    # Not PEM at all.
    junk = st.workdir / "junk.pem"
    junk.write_text("not a certificate\n")
    p = st.daemon.cli("certs", "add", host, "--cert", str(junk), "--key", str(good_key),
                      check=False)
    assert error_line(p).startswith(f"Error: certificate for {host} refused: "), p.stderr
    _assert_kept(st, host, before, serial, addr)

    # The refused ones never reached the edge: verify-full with the built-in CA still works.
    p = psql(edge_dsn(st, host=host, hostaddr=SHARED_V4, sslmode="verify-full",
                      sslrootcert=st.ca_file), "SELECT name FROM whoami")
    assert p.stdout.strip() == f"pg-{B}"


def test_certs_add_installs_an_operator_certificate_without_restart(st, throwaway):
    host = host_of(B)
    pid = st.daemon.proc.pid
    chain, key, serial = throwaway.issue(host)
    # A session opened before the change keeps working after it.
    long = psycopg_connect(edge_dsn(st, host=host, hostaddr=st.ips[B]["v4"],
                                    sslmode="verify-full", sslrootcert=st.ca_file))
    try:
        p = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(key))
        assert "PRIVATE KEY" not in p.stdout + p.stderr
        shown = st.daemon.cert_json(host)
        assert shown["source"] == "operator" and shown["app"] == B, shown
        st.served[host] = serial
        assert cert_info(shown["cert_pem"]).serial == serial
        assert "PRIVATE KEY" not in json.dumps(shown)

        for addr, sni in ((SHARED_V4, host), (st.ips[B]["v4"], None), (st.ips[B]["v6"], None),
                          (st.ips[B]["v6"], host)):
            got, out = served_cert(addr, st.public_port, sni, throwaway.pem)
            assert got.serial == serial and got.issuer_cn == "Drawbridge Test Throwaway CA", \
                (addr, sni, got.serial, got.issuer_cn)
            assert "Verify return code: 0 (ok)" in out, out[-2000:]
        # alpha's certificate did not change.
        got, _ = served_cert(st.ips[A]["v4"], st.public_port, None, st.ca_file)
        assert got.sans == [f"DNS:{host_of(A)}"] and got.issuer_cn.startswith("Drawbridge CA")

        ok = psql(edge_dsn(st, host=host, hostaddr=SHARED_V4, sslmode="verify-full",
                           sslrootcert=throwaway.pem), "SELECT name FROM whoami")
        assert ok.stdout.strip() == f"pg-{B}"
        old_ca = psql(edge_dsn(st, host=host, hostaddr=SHARED_V4, sslmode="verify-full",
                               sslrootcert=st.ca_file), "SELECT 1", check=False)
        assert old_ca.returncode != 0 and "certificate verify failed" in old_ca.stderr, \
            old_ca.stderr

        assert long.execute("SELECT name FROM whoami").fetchone()[0] == f"pg-{B}"
    finally:
        long.close()
    assert st.daemon.proc.pid == pid and st.daemon.alive()

    # A bad one after an operator certificate keeps the operator certificate.
    before = st.daemon.cert_json(host)
    _, other_key, _ = throwaway.issue(host)
    p = st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(other_key),
                      check=False)
    assert "the key does not match the certificate" in error_line(p)
    _assert_kept(st, host, before, serial, st.ips[B]["v4"])


def psycopg_connect(conn: str):
    import psycopg
    return psycopg.connect(conn, autocommit=True, connect_timeout=10)


# ------------------------------------------------------------------------------ rotation


class LongPsql:
    """One psql session kept open on a pipe; each query is answered within a deadline."""

    def __init__(self, conn: str):
        self.proc = subprocess.Popen(
            [PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conn],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=libpq_env())
        self.buf = b""

    def ask(self, sql: str, marker: str, timeout: float = 20) -> str:
        """Runs sql (which must print a line containing marker) and returns that line."""
        assert self.proc.poll() is None, f"psql exited: {self.proc.stderr.read().decode()}"
        self.proc.stdin.write((sql.rstrip(";") + ";\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            for line in self.buf.decode(errors="replace").splitlines():
                if marker in line:
                    self.buf = b""
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"psql did not answer {sql!r} within {timeout}s; "
                                     f"saw {self.buf!r}")
            r, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.2))
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    raise AssertionError(f"psql closed its output; stderr:\n{err}")
                self.buf += chunk

    def close(self) -> str:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                harness.stop_pid(self.proc.pid)
                self.proc.wait(10)
        return self.proc.stderr.read().decode(errors="replace")


def test_rotation_under_pgbench_drops_nothing(st, tmp_path):
    app, host, addr = A, host_of(A), st.ips[A]["v4"]
    server = st.pg[app]
    pid = st.daemon.proc.pid
    rot = ThrowawayCA(tmp_path / "rotation-ca", "Drawbridge Rotation CA")
    # Clients trust both the built-in CA (the certificate before) and the rotation CA (after).
    roots = tmp_path / "roots.pem"
    roots.write_text(st.ca_file.read_text() + rot.pem.read_text())
    issued = [rot.issue(host) for _ in range(3)]
    assert len({s for _, _, s in issued}) == 3

    # pgbench -i straight to Postgres, in a database of its own.
    server.psql("DROP DATABASE IF EXISTS bench")
    server.psql("CREATE DATABASE bench OWNER alice")
    env = libpq_env(PGPASSWORD="alice-secret")
    run([PGBENCH, "-i", "-s", "1", "-q", "-h", server.host, "-p", str(server.port), "-U",
         "alice", "bench"], timeout=120, env=env)
    server.psql("CREATE TABLE whoami(name text); INSERT INTO whoami VALUES ('pg-alpha')",
                db="bench", user="alice")

    via_edge = conninfo(host=host, hostaddr=addr, port=st.public_port, user="alice",
                        password="alice-secret", dbname="bench", sslmode="verify-full",
                        sslrootcert=roots)
    long = LongPsql(via_edge)
    bench = None
    out_f = open(tmp_path / "pgbench.out", "w+")
    err_f = open(tmp_path / "pgbench.err", "w+")
    try:
        before = long.ask("SELECT 'before ' || pg_backend_pid() || ' ' || "
                          "((SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()) IS "
                          "NULL) || ' ' || (SELECT name FROM whoami)", "before ")
        assert before.endswith(" true pg-alpha"), before  # plaintext behind the edge
        backend_pid = before.split()[1]

        bench = subprocess.Popen([PGBENCH, "-C", "-S", "-T", "12", "-c", "4", "-j", "2",
                                  "-P", "1", via_edge],
                                 stdout=out_f, stderr=err_f, env=env)
        t0 = time.monotonic()
        rotated = []
        for i, (chain, key, serial) in enumerate(issued):
            # Rotate at about 2.5 s, 5.5 s and 8.5 s into the 12 s run.
            time.sleep(max(0.0, t0 + 2.5 + 3 * i - time.monotonic()))
            assert bench.poll() is None, "pgbench ended before the rotations"
            st.daemon.cli("certs", "add", host, "--cert", str(chain), "--key", str(key))
            wait_until(lambda: served_cert(addr, st.public_port, host)[0].serial == serial,
                       5, interval=0.1, what=f"rotation {i + 1} to be served")
            rotated.append(serial)
        try:
            rc = bench.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError("pgbench -T 12 did not finish within 60 s") from None
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
        assert time.monotonic() - t0 >= 11, "pgbench ended early"
        report = f"rc={rc}\nstdout:\n{out}\nstderr:\n{err[-4000:]}"
        assert rc == 0, report
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        assert m and int(m.group(1)) > 0, report
        m = re.search(r"number of failed transactions: (\d+)", out)
        assert m and int(m.group(1)) == 0, report
        assert "aborted" not in err and "error" not in err.lower(), report

        # The session from before the rotations still answers, on the same backend.
        after = long.ask("SELECT 'after ' || pg_backend_pid() || ' ' || "
                         "(SELECT count(*) FROM pgbench_branches)", "after ")
        assert after == f"after {backend_pid} 1", (before, after)
    finally:
        if bench is not None and bench.poll() is None:
            harness.stop_pid(bench.pid)
        out_f.close()
        err_f.close()
        stderr = long.close()
    assert "FATAL" not in stderr and "terminated" not in stderr, stderr

    # The latest certificate is the one served, by name and without SNI, v4 and v6.
    latest = issued[-1][2]
    st.served[host] = latest
    assert rotated == [s for _, _, s in issued]
    for a, sni in ((addr, host), (addr, None), (st.ips[A]["v6"], None), (SHARED_V4, host)):
        got, out = served_cert(a, st.public_port, sni, rot.pem)
        assert got.serial == latest, (a, sni, got.serial, latest)
        assert "Verify return code: 0 (ok)" in out, out[-2000:]
    assert cert_info(st.daemon.cert_json(host)["cert_pem"]).serial == latest
    # No restart.
    assert st.daemon.proc.pid == pid and st.daemon.alive()


# ------------------------------------------------------------------------------ secrecy


def test_no_api_answer_contains_a_private_key(st):
    d = st.daemon
    paths = ["/v1/status", "/v1/apps", "/v1/ca", "/v1/certs"]
    certs = json.loads(d.api("GET", "/v1/certs")[1])
    assert {host_of(A), host_of(B), host_of("gamma")} <= {c["host"] for c in certs}, certs
    paths += [f"/v1/certs/{c['host']}" for c in certs]
    for app in (A, B, "gamma"):
        paths += [f"/v1/apps/{app}/{p}" for p in ("machines", "ips", "config", "releases",
                                                  "services", "image")]
    for app in (A, B):  # gamma has no pg_tls service, so no connection string
        paths.append(f"/v1/apps/{app}/connection-string?internal=postgres%3A%2F%2Fu%3Ap%40"
                     f"{app}.internal%3A5432%2Fdb")
    for path in paths:
        status, body = d.api("GET", path)
        assert status == 200, (path, status, body)
        assert "PRIVATE KEY" not in body and "PRIVATE" not in body, (path, body[:2000])
    for args in (("certs", "list"), ("certs", "list", "--json"), ("certs", "ca"),
                 ("certs", "show", host_of(A)), ("certs", "show", host_of(A), "--json"),
                 ("status", "--json")):
        p = d.cli(*args)
        assert "PRIVATE" not in p.stdout + p.stderr, (args, p.stdout)
    # Keys on disk are the daemon's own: the data dir (which also holds the store) and the CA
    # dir are closed to others, and the CA key is 0600 itself.
    for dir_ in (d.data, d.data / "ca"):
        mode = stat.S_IMODE(dir_.stat().st_mode)
        assert mode & 0o077 == 0, f"{dir_} has mode {oct(mode)}"
    assert stat.S_IMODE((d.data / "ca" / "ca.key").stat().st_mode) == 0o600


# ------------------------------------------------------------------------------ restart


def test_certificates_and_ca_survive_a_restart(st):
    """The CA is made on the first start only; the certificates in place (the built-in CA's
    and the operator's, after rotation) are served again after a restart."""
    d = st.daemon
    ca_before = d.cli("certs", "ca").stdout
    key_before = (d.data / "ca" / "ca.key").read_bytes()
    listed_before = {c["host"]: c for c in json.loads(d.cli("certs", "list", "--json").stdout)}
    d.stop()
    assert not d.alive()
    d.start(fresh=False)
    assert d.cli("certs", "ca").stdout == ca_before, "a restart made a new CA"
    assert (d.data / "ca" / "ca.key").read_bytes() == key_before
    listed = {c["host"]: c for c in json.loads(d.cli("certs", "list", "--json").stdout)}
    assert listed == listed_before

    def serves(addr: str, host: str, serial: str) -> bool:
        try:
            return served_cert(addr, st.public_port, host)[0].serial == serial
        except AssertionError:
            return False  # listeners not up yet

    for app in (A, B):
        host = host_of(app)
        assert host in st.served, f"needs the certs tests before this one ({st.served})"
        wait_until(lambda: serves(st.ips[app]["v4"], host, st.served[host]), 15, interval=0.2,
                   what=f"{host}'s certificate after the restart")
        assert served_cert(st.ips[app]["v4"], st.public_port, None)[0].serial == \
            st.served[host]
    gamma = cert_info(d.cert_json(host_of("gamma"))["cert_pem"])
    assert gamma.issuer_cn.startswith("Drawbridge CA"), gamma.issuer_cn
    p = psql(edge_dsn(st, host=host_of(B), hostaddr=SHARED_V4, sslmode="require"),
             "SELECT name FROM whoami")
    assert p.stdout.strip() == f"pg-{B}"
