"""A real etcd 3.4 cluster on loopback for the fleet tests (Debian's etcd-server).

Why a helper of its own: the fleet tests kill and restart members (one of three, then all of
them) while drawbridge nodes run against the cluster, so the cluster must be a thing a test can
take apart and put back together by member index. Every member gets free ports, its own data
dir under one temp dir and the cluster a unique token (two clusters in one run never merge);
every process is stopped by PID; every wait has a deadline.

    with EtcdCluster(3) as etcd:          # or the `etcd` fixture below (module scope)
        etcd.url                          # "etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
        etcd.kill(0); etcd.start(0)       # SIGKILL one member; start it again (rejoins)
        etcd.kill_all(); etcd.start_all() # lose quorum; get it back (waits until healthy)

Optional client TLS (`tls=EtcdTls.make(dir)`): client URLs are https and client certificates
are required (--client-cert-auth); the test passes tls.ca / tls.client_cert / tls.client_key
to drawbridge. Optional auth: `enable_auth(password)` adds user root and turns auth on.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import free_port, pid_alive, run, stop_pid

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class EtcdTls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed."""
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @staticmethod
    def make(d: Path, client_cn: str = "drawbridge-node") -> "EtcdTls":
        d = Path(d)
        d.mkdir(parents=True, exist_ok=True)
        (d / "ext.cnf").write_text(
            "[server]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = serverAuth,clientAuth\n"
            "subjectAltName = IP:127.0.0.1,DNS:localhost\n"
            "[client]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = clientAuth\n")
        (d / "ca.cnf").write_text(
            "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n"
            "[dn]\nCN = Drawbridge Integration etcd CA\n"
            "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run(["openssl", "req", "-x509", "-new", *ec, "-keyout", str(d / "ca.key"),
             "-out", str(d / "ca.pem"), "-days", "3", "-config", str(d / "ca.cnf")])
        for name, cn in (("server", "127.0.0.1"), ("client", client_cn)):
            run(["openssl", "req", "-new", *ec, "-keyout", str(d / f"{name}.key"),
                 "-out", str(d / f"{name}.csr"), "-subj", f"/CN={cn}"])
            run(["openssl", "x509", "-req", "-in", str(d / f"{name}.csr"),
                 "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
                 "-sha256", "-extfile", str(d / "ext.cnf"), "-extensions", name,
                 "-out", str(d / f"{name}.pem")])
        for f in d.glob("*.key"):
            os.chmod(f, 0o600)
        return EtcdTls(dir=d, ca=d / "ca.pem", server_cert=d / "server.pem",
                       server_key=d / "server.key", client_cert=d / "client.pem",
                       client_key=d / "client.key")


class EtcdCluster:
    """`size` etcd members on 127.0.0.1, member i named m<i>. Not thread-safe: one test
    thread drives it."""

    def __init__(self, size: int = 3, *, tls: EtcdTls | None = None,
                 extra_args: tuple[str, ...] = (), prefix: str = "drawbridge-it-etcd-"):
        assert 1 <= size <= 7
        self.size = size
        self.tls = tls
        self.extra_args = extra_args
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.token = f"drawbridge-it-{uuid.uuid4().hex[:12]}"
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen | None] = [None] * size
        self._bootstrapped = False
        self.root_password: str | None = None

    # ---------------------------------------------------------------- addresses

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoints(self) -> list[str]:
        """["127.0.0.1:P1", ...] (client ports)."""
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        """The `--store` URL naming every member: etcd://127.0.0.1:P1,127.0.0.1:P2,..."""
        return "etcd://" + ",".join(self.endpoints)

    def client_url(self, i: int) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_ports[i]}"

    @property
    def client_urls(self) -> str:
        """For etcdctl --endpoints: http(s)://127.0.0.1:P1,..."""
        return ",".join(self.client_url(i) for i in range(self.size))

    def _peer_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.peer_ports[i]}"

    def member_dir(self, i: int) -> Path:
        return self.dir / f"m{i}"

    def logfile(self, i: int) -> Path:
        return self.dir / f"m{i}.log"

    def log(self, i: int) -> str:
        try:
            return self.logfile(i).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---------------------------------------------------------------- processes

    def _cmd(self, i: int, state: str) -> list[str]:
        cluster = ",".join(f"m{j}={self._peer_url(j)}" for j in range(self.size))
        cmd = [ETCD, "--name", f"m{i}", "--data-dir", str(self.member_dir(i)),
               "--listen-client-urls", self.client_url(i),
               "--advertise-client-urls", self.client_url(i),
               "--listen-peer-urls", self._peer_url(i),
               "--initial-advertise-peer-urls", self._peer_url(i),
               "--initial-cluster", cluster,
               "--initial-cluster-token", self.token,
               "--initial-cluster-state", state,
               "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        if self.tls:
            cmd += ["--cert-file", str(self.tls.server_cert), "--key-file",
                    str(self.tls.server_key), "--client-cert-auth", "--trusted-ca-file",
                    str(self.tls.ca)]
        return cmd + list(self.extra_args)

    def _spawn(self, i: int, state: str) -> None:
        assert not self.running(i), f"etcd member {i} is already running"
        with open(self.logfile(i), "ab") as log:
            self.procs[i] = subprocess.Popen(self._cmd(i, state), stdout=log,
                                             stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.dir)

    def running(self, i: int) -> bool:
        p = self.procs[i]
        return p is not None and p.poll() is None

    def pid(self, i: int) -> int:
        p = self.procs[i]
        assert p is not None
        return p.pid

    def start_all(self, timeout: float = 40.0) -> None:
        """Starts every member that is not running (a new cluster the first time; the same
        cluster from its data dirs afterwards) and waits until every member is healthy."""
        state = "existing" if self._bootstrapped else "new"
        for i in range(self.size):
            if not self.running(i):
                self._spawn(i, state)
        self._bootstrapped = True
        self.wait_healthy(range(self.size), timeout)

    def start(self, i: int, timeout: float = 40.0) -> None:
        """Starts member i again (it rejoins from its data dir, --initial-cluster-state
        existing) and waits until it is healthy."""
        self._spawn(i, "existing" if self._bootstrapped else "new")
        self.wait_healthy([i], timeout)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """SIGKILL (default) member i and reaps it."""
        p = self.procs[i]
        if p is None or p.poll() is not None:
            return
        if sig == signal.SIGKILL:
            p.kill()
            p.wait(10)
        else:
            stop_pid(p.pid, sig, timeout=15)
            p.wait(10)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for i in range(self.size):
            self.kill(i, sig)

    def stop(self) -> None:
        """Stops every member by PID (SIGTERM, bounded, then SIGKILL) and removes the dir."""
        for i in range(self.size):
            p = self.procs[i]
            if p is not None and p.poll() is None:
                stop_pid(p.pid, signal.SIGTERM, timeout=10)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        try:
            self.start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- health and access

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return ctx

    def healthy(self, i: int) -> bool:
        """Member i answers GET /health with health "true" (it has a leader, can serve)."""
        if not self.running(i):
            return False
        try:
            with self._open(f"{self.client_url(i)}/health", 2) as r:
                return json.loads(r.read().decode()).get("health") == "true"
        except Exception:
            return False

    def _open(self, req, timeout):
        ctx = self._ssl_context()
        if ctx is None:
            return _NO_PROXY.open(req, timeout=timeout)
        return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                           urllib.request.HTTPSHandler(context=ctx)
                                           ).open(req, timeout=timeout)

    def wait_healthy(self, members=None, timeout: float = 40.0) -> None:
        members = list(range(self.size) if members is None else members)
        deadline = time.monotonic() + timeout
        while True:
            dead = [i for i in members if self.procs[i] is not None
                    and self.procs[i].poll() is not None]
            if dead:
                raise AssertionError(f"etcd member(s) {dead} exited\n" + "\n".join(
                    f"m{i} log tail:\n{self.log(i)[-3000:]}" for i in dead))
            sick = [i for i in members if not self.healthy(i)]
            if not sick:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"etcd member(s) {sick} not healthy within {timeout}s\n" + "\n".join(
                        f"m{i} log tail:\n{self.log(i)[-3000:]}" for i in sick))
            time.sleep(0.1)

    def etcdctl(self, *args: str, endpoints: str | None = None, check: bool = True,
                timeout: float = 30) -> subprocess.CompletedProcess:
        """etcdctl (API v3) against the cluster (every member unless `endpoints`)."""
        cmd = [ETCDCTL, "--endpoints", endpoints or self.client_urls,
               "--dial-timeout", "3s", "--command-timeout", "10s"]
        if self.tls:
            cmd += ["--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert),
                    "--key", str(self.tls.client_key)]
        if self.root_password is not None:
            cmd += ["--user", f"root:{self.root_password}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        return run([*cmd, *args], timeout=timeout, check=check, env=env)

    def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under `prefix` with its value (text), read through etcdctl."""
        p = self.etcdctl("get", "--prefix", prefix, "-w", "json")
        out = {}
        for kv in json.loads(p.stdout).get("kvs", []) or []:
            out[base64.b64decode(kv["key"]).decode(errors="replace")] = \
                base64.b64decode(kv.get("value", "")).decode(errors="replace")
        return out

    def leader(self) -> int | None:
        """Index of the member that is the raft leader now (None when no running member
        answers or none is leader)."""
        running = [i for i in range(self.size) if self.running(i)]
        if not running:
            return None
        p = self.etcdctl("endpoint", "status", "-w", "json",
                         endpoints=",".join(self.client_url(i) for i in running), check=False)
        if p.returncode != 0 and not p.stdout.strip():
            return None
        for st in json.loads(p.stdout or "[]"):
            s = st.get("Status", {})
            if s.get("leader") and s.get("leader") == s.get("header", {}).get("member_id"):
                port = int(st["Endpoint"].rsplit(":", 1)[1])
                return self.client_ports.index(port)
        return None

    def revision(self) -> int:
        p = self.etcdctl("get", "--prefix", "/", "--keys-only", "--limit", "1", "-w", "json")
        return int(json.loads(p.stdout)["header"]["revision"])

    def compact(self, revision: int | None = None) -> None:
        self.etcdctl("compact", str(revision if revision is not None else self.revision()))

    def enable_auth(self, root_password: str) -> None:
        """Adds user root (role root) with that password and turns authentication on."""
        self.etcdctl("user", "add", f"root:{root_password}")
        self.etcdctl("auth", "enable")
        self.root_password = root_password

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and pid_alive(p.pid)]


@pytest.fixture(scope="module")
def etcd():
    """A 3-member cluster for one test module, stopped (by PID) and removed afterwards.
    Use it in a test module with `from etcd_cluster import etcd  # noqa: F401`."""
    cluster = EtcdCluster(3)
    try:
        cluster.start_all()
    except AssertionError as exc:
        cluster.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
