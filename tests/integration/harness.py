"""Process and environment helpers shared by conftest.py and the tests.

Every process started here is tracked by PID and stopped by PID; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PSQL = "/usr/bin/psql"
PGBENCH = "/usr/bin/pgbench"

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A TCP port currently free on both 0.0.0.0 and :: (dual-stack bind), never repeated."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s4.bind(("0.0.0.0", port))
        except OSError:
            continue
        finally:
            s4.close()
        with _port_lock:
            if port in _handed_out:
                continue
            _handed_out.add(port)
        return port
    raise RuntimeError("could not find a free port")


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll pred() until it returns a truthy value; return it, or raise AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except FileNotFoundError:
        return False
    return True


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal one PID, wait for it to go away, SIGKILL it if it does not."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(cmd, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed rc={p.returncode}\nstdout:\n{p.stdout}\n"
                             f"stderr:\n{p.stderr}")
    return p


_clean_home = None


def libpq_env(**extra) -> dict[str, str]:
    """Environment for libpq clients: no inherited PG* variables, an empty HOME (no
    ~/.pgpass, ~/.postgresql/root.crt or .psqlrc surprises), a connect timeout."""
    global _clean_home
    if _clean_home is None:
        _clean_home = tempfile.mkdtemp(prefix="drawbridge-it-home-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = _clean_home
    env["PGCONNECT_TIMEOUT"] = "10"
    env["PGAPPNAME"] = "drawbridge-it"
    env.update(extra)
    return env


def remove_client_home() -> None:
    global _clean_home
    if _clean_home is not None:
        shutil.rmtree(_clean_home, ignore_errors=True)
        _clean_home = None


def run_psql(conninfo: str, *args: str, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess:
    cmd = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, *args]
    return run(cmd, timeout=timeout, check=check, env=libpq_env())


def dsn(**kw) -> str:
    return " ".join(f"{k}={v}" for k, v in kw.items() if v is not None)


# ------------------------------------------------------------------------------ PostgreSQL


@dataclass
class PgServer:
    base: Path
    port: int
    password: str
    host: str = "127.0.0.1"
    pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> str:
        return str(self.base)

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    def log_text(self) -> str:
        return read_whole_lines(self.logfile)

    def psql(self, sql: str, db: str = "postgres", user: str = "postgres",
             timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """psql straight to Postgres over its Unix socket (trust)."""
        return run_psql(dsn(host=self.sockdir, port=self.port, user=user, dbname=db),
                        "-c", sql, timeout=timeout, check=check)

    def direct_dsn(self, **kw) -> str:
        base = dict(host=self.host, port=self.port, user="alice", password="alice-secret",
                    dbname="app")
        base.update(kw)
        return dsn(**base)

    def query(self, sql: str, params=None) -> list[tuple]:
        """One query through a fresh psycopg connection over the Unix socket."""
        import psycopg
        with psycopg.connect(host=self.sockdir, port=self.port, user="postgres",
                             dbname="postgres", autocommit=True, connect_timeout=10) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def activity(self, application_name: str) -> list[tuple]:
        """(pid, state, query, wait_event) of client backends with that application_name."""
        return self.query(
            "SELECT pid, state, query, wait_event FROM pg_stat_activity "
            "WHERE application_name = %s AND backend_type = 'client backend'",
            (application_name,))

    def terminate(self, application_name: str) -> None:
        self.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE application_name = %s", (application_name,))


def openssl_self_signed(key: Path, cert: Path, cn: str) -> None:
    run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "3", "-subj", f"/CN={cn}"])


def start_postgres(password: str) -> PgServer:
    base = Path(tempfile.mkdtemp(prefix="drawbridge-it-pg-"))
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres", "postgres")
    pg = PgServer(base=base, port=free_port(), password=password)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    os.chmod(pwfile, 0o600)

    def as_pg(*cmd, timeout=120):
        return run(["runuser", "-u", "postgres", "--", *cmd], timeout=timeout, cwd=base)

    as_pg(str(PG_BIN / "initdb"), "-D", str(pg.datadir), "-U", "postgres", "-E", "UTF8",
          "--locale=C", "--auth-host=scram-sha-256", "--auth-local=trust",
          f"--pwfile={pwfile}", "--no-sync")
    pwfile.unlink()

    # Postgres's own certificate, for comparisons with direct TLS.
    key, crt = pg.datadir / "server.key", pg.datadir / "server.crt"
    openssl_self_signed(key, crt, "postgres-direct")
    for f in (key, crt):
        shutil.chown(f, "postgres", "postgres")
        os.chmod(f, 0o600)

    # 'probe' is a trust user so the byte-level client can log in without SCRAM.
    hba = pg.datadir / "pg_hba.conf"
    hba.write_text("host all probe 127.0.0.1/32 trust\nhost all probe ::1/128 trust\n"
                   + hba.read_text())
    with open(pg.datadir / "postgresql.conf", "a") as f:
        f.write(f"""
listen_addresses = '127.0.0.1,::1'
port = {pg.port}
unix_socket_directories = '{base}'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
max_connections = 60
fsync = off
synchronous_commit = off
full_page_writes = off
log_connections = on
log_min_messages = warning
""")
    as_pg(str(PG_BIN / "pg_ctl"), "-D", str(pg.datadir), "-l", str(pg.logfile), "-w",
          "-t", "60", "start", timeout=90)
    pg.pid = int((pg.datadir / "postmaster.pid").read_text().split("\n")[0])
    pg.psql("CREATE ROLE alice LOGIN PASSWORD 'alice-secret'")
    pg.psql("CREATE DATABASE app OWNER alice")
    pg.psql("CREATE ROLE probe LOGIN")
    return pg


def stop_postgres(pg: PgServer) -> None:
    if pg.pid:
        stop_pid(pg.pid, signal.SIGINT, timeout=30)  # fast shutdown
    shutil.rmtree(pg.base, ignore_errors=True)


# ------------------------------------------------------------------------------ certificates


@dataclass
class Certs:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    other_cert: Path
    other_key: Path


_EXT = """
[mydb]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:mydb.drawbridge.test,IP:127.0.0.1,IP:::1
[other]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.drawbridge.test
"""

_CA_CNF = """
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = Drawbridge Integration Test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


def make_certs() -> Certs:
    d = Path(tempfile.mkdtemp(prefix="drawbridge-it-certs-"))
    (d / "ext.cnf").write_text(_EXT)
    (d / "ca.cnf").write_text(_CA_CNF)
    run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "ca.key"),
         "-out", str(d / "ca.pem"), "-days", "3", "-config", str(d / "ca.cnf")])
    for name, cn in (("mydb", "mydb.drawbridge.test"), ("other", "other.drawbridge.test")):
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
             "-subj", f"/CN={cn}"])
        run(["openssl", "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
             "-CAkey", str(d / "ca.key"), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-days", "3", "-sha256", "-extfile", str(d / "ext.cnf"), "-extensions", name,
             "-out", str(d / f"{name}.pem")])
    return Certs(dir=d, ca=d / "ca.pem", server_cert=d / "mydb.pem", server_key=d / "mydb.key",
                 other_cert=d / "other.pem", other_key=d / "other.key")


# ------------------------------------------------------------------------------ fake machine


@dataclass
class Recorded:
    peer: tuple
    data: bytearray = field(default_factory=bytearray)
    closed: bool = False


class FakeMachine:
    """A TCP server standing in for a machine behind proxy_proto handlers (real Postgres does
    not speak PROXY). It records every byte of every connection and never answers."""

    def __init__(self):
        self.port = free_port()
        self.conns: list[Recorded] = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, peer = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            rec = Recorded(peer=peer)
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    def _serve(self, c: socket.socket, rec: Recorded):
        c.settimeout(0.2)
        deadline = time.monotonic() + 120
        with c:
            while not self.stopping and time.monotonic() < deadline:
                try:
                    chunk = c.recv(65536)
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                with self.lock:
                    rec.data += chunk
        rec.closed = True

    def snapshot(self) -> list[bytes]:
        with self.lock:
            return [bytes(r.data) for r in self.conns]

    def wait_for(self, pred, timeout: float = 10.0, what: str = "data at the fake machine"
                 ) -> bytes:
        """First recorded connection whose bytes satisfy pred, waiting up to timeout."""
        def find():
            for d in self.snapshot():
                if pred(d):
                    return d
            return None
        try:
            return wait_until(find, timeout, what=what)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {what}; fake machine saw "
                                 f"{[d[:120] for d in self.snapshot()]}") from None

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(5)


class ClosingMachine(FakeMachine):
    """A machine that answers each connection's first bytes with `answer` and closes at once,
    the answer and its FIN corked into one segment: the edge sees the bytes and the EOF in one
    event (as when a backend writes its last error and exits)."""

    def __init__(self, answer: bytes):
        self.answer = answer
        super().__init__()

    def _serve(self, c: socket.socket, rec: Recorded):
        c.settimeout(10)
        with c:
            try:
                chunk = c.recv(65536)
                with self.lock:
                    rec.data += chunk
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                c.sendall(self.answer)
            except OSError:
                pass
        rec.closed = True


# ------------------------------------------------------------------------------ the edge


class BlackholeMachine:
    """A port on 127.0.0.1 where a connect hangs, as towards a host behind a firewall that
    drops packets, without iptables: a listener with a backlog of 0 whose one slot is taken
    by a connection nobody accepts, so the kernel drops every further SYN."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(2):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", self.port))
            raise AssertionError("the blackhole accepted a connection")
        except (socket.timeout, TimeoutError):
            pass
        finally:
            probe.close()

    def stop(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


def drawbridge_bin() -> Path:
    p = Path(os.environ.get("DRAWBRIDGE_BIN", REPO_ROOT / "build/src/drawbridge"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


# Loopback only: ignore any proxy the environment names.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cli_env() -> dict[str, str]:
    """The environment for CLI calls: none of the variables that would point it elsewhere."""
    return {k: v for k, v in os.environ.items()
            if k not in ("DRAWBRIDGE_APP", "DRAWBRIDGE_API", "DRAWBRIDGE_DATA_DIR")}


class DrawbridgeDaemon:
    """`drawbridge serve` in control-plane mode on its own data dir, admin API port and
    (optionally) DNS port; the CLI and the admin API are driven against it. Restartable: start()
    waits for a new `drawbridge: ready` line, so the log may span several runs."""

    def __init__(self, workdir: Path, *, v4_pool: str, v6_pool: str,
                 domain: str = "drawbridge.test", dns: bool = False,
                 extra_args: tuple[str, ...] = ()):
        self.bin = drawbridge_bin()
        self.workdir = workdir
        self.data = workdir / "data"
        self.api_port = free_port()
        self.dns_port = free_port() if dns else 0
        self.logfile = workdir / "daemon.log"
        self.args = ["--data-dir", str(self.data), "--api-port", str(self.api_port),
                     "--dns-port", str(self.dns_port), "--domain", domain,
                     "--v4-pool", v4_pool, "--v6-pool", v6_pool, "--drain-timeout-ms", "2000",
                     *extra_args]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        if not (self.bin.is_file() and os.access(self.bin, os.X_OK)):
            raise AssertionError(f"drawbridge binary not found or not executable at {self.bin}"
                                 " (build it, or set DRAWBRIDGE_BIN)")
        cmd = [str(self.bin), "serve", *self.args]
        seen = self.log().count("drawbridge: ready")
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while self.log().count("drawbridge: ready") == seen:
            if self.proc.poll() is not None:
                raise AssertionError(f"drawbridge serve exited with {self.proc.returncode} "
                                     f"before ready; cmd={cmd}\nlog:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"drawbridge serve not ready within {timeout}s\n"
                                     f"log:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return read_whole_lines(self.logfile)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_pid(self.proc.pid, signal.SIGTERM, timeout=30)
        self.proc.wait(10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def cli_cmd(self, *args: str, data_dir: Path | str | None = None) -> list[str]:
        return [str(self.bin), *args, "--data-dir", str(data_dir or self.data)]

    def cli(self, *args: str, check: bool = True, data_dir: Path | str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """One CLI command, not on a terminal (stdin is /dev/null, output captured)."""
        return run(self.cli_cmd(*args, data_dir=data_dir), timeout=timeout, check=check,
                   cwd=self.workdir, env=cli_env(), stdin=subprocess.DEVNULL)

    def api(self, method: str, path: str, body: dict | None = None,
            timeout: float = 15) -> tuple[int, str]:
        """One admin API call over TCP: (status, raw body)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token()}"})
        try:
            with _NO_PROXY.open(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@contextlib.contextmanager
def running(daemon: DrawbridgeDaemon):
    """Starts `daemon` (a failed start fails the test with its log), yields it, then stops it
    and removes its work directory."""
    try:
        daemon.start()
    except AssertionError as exc:
        shutil.rmtree(daemon.workdir, ignore_errors=True)
        pytest.fail(str(exc), pytrace=False)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.workdir, ignore_errors=True)


def fail_if_dead(daemon: DrawbridgeDaemon) -> None:
    """Fails the current test if the daemon died during it."""
    if not daemon.alive():
        pytest.fail(f"drawbridge serve died (exit code {daemon.proc.returncode}) during this "
                    f"test\nlog tail:\n{daemon.log()[-4000:]}", pytrace=False)


class EdgeProcess:
    def __init__(self, workdir: Path, fly_toml: str, certs: Certs, ports: dict[str, int],
                 extra_args: tuple[str, ...] = ()):
        self.bin = drawbridge_bin()
        self.workdir = workdir
        self.ports = ports
        self.certs = certs
        self.config = workdir / "fly.toml"
        self.config.write_text(fly_toml)
        self.logfile = workdir / "drawbridge.stderr"
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def start(self, ready_timeout: float = 20.0) -> None:
        if not (self.bin.is_file() and os.access(self.bin, os.X_OK)):
            raise AssertionError(f"drawbridge binary not found or not executable at {self.bin}"
                                 " (build it, or set DRAWBRIDGE_BIN)")
        cmd = [str(self.bin), "serve", "--config", str(self.config), "--machine", "127.0.0.1",
               "--cert", str(self.certs.server_cert), "--key", str(self.certs.server_key),
               "--cert", str(self.certs.other_cert), "--key", str(self.certs.other_key),
               "--log-level", "info", *self.extra_args]
        with open(self.logfile, "wb") as log, open(self.workdir / "drawbridge.stdout", "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir)
        deadline = time.monotonic() + ready_timeout
        while True:
            if "drawbridge: ready" in self.log_text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"drawbridge exited with {self.proc.returncode} before "
                                     f"ready; cmd={cmd}\nstderr:\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"drawbridge did not print 'drawbridge: ready' within "
                                     f"{ready_timeout}s\nstderr:\n{self.log_text()[-4000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return read_whole_lines(self.logfile)

    def conn_lines(self) -> list[str]:
        """Per-connection log lines, from `conn ` on (an optional `<timestamp> <level> `
        prefix, as a logging library writes it, is dropped)."""
        out = []
        for ln in self.log_text().splitlines():
            m = re.match(r"^(?:\S+ \S+ )?(conn .*)$", ln)
            if m:
                out.append(m.group(1))
        return out

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM by PID, bounded wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        return self.returncode

    # -- convenience for tests
    def dsn(self, service: str = "pg_tls", **kw) -> str:
        base = dict(host="127.0.0.1", port=self.ports[service], user="alice",
                    password="alice-secret", dbname="app", sslmode="require")
        base.update(kw)
        return dsn(**base)


def fly_toml(services: list[dict]) -> str:
    """services: [{internal_port, port, handlers, proxy_v2?}] -> fly.toml text."""
    out = ['app = "mydb"', 'primary_region = "local"', ""]
    for s in services:
        handlers = ", ".join(f'"{h}"' for h in s["handlers"])
        out += ["[[services]]",
                f"  internal_port = {s['internal_port']}",
                '  protocol = "tcp"',
                "  [[services.ports]]",
                f"    handlers = [{handlers}]",
                f"    port = {s['port']}"]
        if s.get("proxy_v2"):
            out.append('    proxy_proto_options = { version = "v2" }')
        out.append("")
    return "\n".join(out)


FLY_TOML_DATA = REPO_ROOT / "tests" / "data" / "fly_toml"


def fly_toml_fixture(name: str) -> str:
    """The text of tests/data/fly_toml/<name>.toml (the set the fuzz seeds are made from)."""
    return (FLY_TOML_DATA / f"{name}.toml").read_text()


def _set_key(toml: str, key: str, value: str) -> str:
    """`toml` with the one line `<key> = ...` set to `value` (a trailing comment kept)."""
    out, n = re.subn(rf"^([ \t]*{key}[ \t]*=[ \t]*)[^\s#]+", lambda m: m.group(1) + value, toml,
                     flags=re.M)
    assert n == 1, f"{n} lines set {key} in the fixture:\n{toml}"
    return out


def pg_tls_fly_toml(internal_port: int, port: int, app: str | None = None) -> str:
    """The guide's pg_tls service (docs_page_pg_tls.toml): public `port` to `internal_port`.
    With `app`, the whole fly.toml of that app; without, the [[services]] section alone."""
    toml = _set_key(fly_toml_fixture("docs_page_pg_tls"), "internal_port", str(internal_port))
    toml = _set_key(toml, "port", str(port))
    if app is not None:
        return _set_key(toml, "app", f'"{app}"')
    return toml[toml.index("[[services]]"):]


# ---------------------------------------------------------------------- probes shared by tests


def marker(prefix: str = "it") -> str:
    """A unique name (application_name, table) for one test's session."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def assert_edge_serves(edge) -> None:
    """The edge still completes a full TLS login to Postgres through its pg_tls port."""
    import pgwire as w
    with w.ssl_request_tls("127.0.0.1", edge.ports["pg_tls"]) as c:
        w.login_trust(c, "probe", "app")
        assert w.simple_query(c, "SELECT 41 + 1") == [["42"]]


def fatal(fields: dict[str, str], sqlstate: str) -> None:
    assert fields.get("S") == "FATAL", fields
    assert fields.get("C") == sqlstate, fields
    assert fields.get("M"), fields


def read_whole_lines(path: Path) -> str:
    """A log file the process is still writing, up to its last newline: a line the process is
    in the middle of writing (a reader can see the first part of it) is left for the next read.
    Empty if the file is not there yet."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[:text.rfind("\n") + 1]


def log_field(line: str, name: str) -> str:
    """The value of `name=` in a logfmt line (unquoted values only)."""
    m = re.search(rf"\b{name}=(\S+)", line)
    assert m, f"no {name}= in {line!r}"
    return m.group(1)


def conn_line(e: "EdgeProcess", client_port: int, timeout: float = 10.0,
              since: int | None = None) -> str:
    """The edge's per-connection log line for a client's source port, waiting for it. `since`:
    an offset in the log (len(e.log_text()) taken before the connection was made), so that an
    earlier connection that happened to have the same source port is not taken for this one."""
    def find() -> str | None:
        text = e.log_text()[since:] if since is not None else e.log_text()
        for ln in text.splitlines():
            m = re.match(r"^(?:\S+ \S+ )?(conn .*)$", ln)
            if m and f"client=127.0.0.1:{client_port} " in m.group(1):
                return m.group(1)
        return None
    try:
        return wait_until(find, timeout, what=f"a conn line for client port {client_port}")
    except AssertionError:
        raise AssertionError(f"no conn line for client port {client_port} within {timeout}s; "
                             f"log tail:\n{e.log_text()[-3000:]}") from None


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds_back(e: "EdgeProcess", baseline: int, timeout: float = 10.0) -> None:
    """Waits until the edge holds no more descriptors than `baseline`; says which it holds."""
    try:
        wait_until(lambda: fd_count(e.pid) <= baseline, timeout,
                   what=f"the edge's descriptors back to {baseline}")
    except AssertionError:
        fds = sorted(os.readlink(f"/proc/{e.pid}/fd/{n}") for n in os.listdir(f"/proc/{e.pid}/fd"))
        raise AssertionError(f"edge holds {len(fds)} descriptors, baseline {baseline}: {fds}\n"
                             f"log tail:\n{e.log_text()[-3000:]}") from None


def start_own_edge(prefix: str, services: list[dict], certs: "Certs", ports: dict[str, int],
                   extra_args: tuple[str, ...] = ()) -> "EdgeProcess":
    """An edge of a test's own (flags of its own, no other test's sockets), in a temp dir."""
    d = Path(tempfile.mkdtemp(prefix=f"drawbridge-it-{prefix}-"))
    e = EdgeProcess(d, fly_toml(services), certs, ports, extra_args=extra_args)
    try:
        e.start()
    except AssertionError as exc:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(str(exc), pytrace=False)
    return e


def stop_own_edge(e: "EdgeProcess") -> tuple[int | None, str]:
    """SIGTERM (bounded), then removes its directory: (exit code, tail of its log)."""
    rc = e.stop(timeout=45)
    tail = e.log_text()[-4000:]
    shutil.rmtree(e.workdir, ignore_errors=True)
    return rc, tail
