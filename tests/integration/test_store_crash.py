"""kill -9 of the daemon in the middle of concurrent IP allocations never leaves a half-written
store: SQLite's integrity check passes, no address is held twice, every key matches its value,
the store's revision covers every row, and the restarted daemon serves the same state and goes
on allocating fresh addresses. No Postgres needed: this is the control plane alone."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness


# Loopback only: ignore any proxy the environment names.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Daemon:
    def __init__(self, data_dir: Path, api_port: int):
        self.data_dir = data_dir
        self.api_port = api_port
        self.log = data_dir.parent / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(harness.drawbridge_bin()), "serve", "--data-dir", str(self.data_dir),
             "--api-port", str(self.api_port), "--v4-pool", "127.0.20.0/22",
             "--v6-pool", "fd00:db:2::/64", "--drain-timeout-ms", "500", "--threads", "1"],
            stdout=logf, stderr=logf)
        harness.wait_until(lambda: b"drawbridge: ready" in self.log.read_bytes()[offset:]
                           or self.proc.poll() is not None, timeout=20, what="daemon ready")
        assert self.proc.poll() is None, self.log.read_text()

    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token()}"})
        try:
            with _OPENER.open(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            harness.stop_pid(self.proc.pid)
            self.proc.wait(timeout=10)


def check_store(db_path: Path) -> dict[str, str]:
    """Returns {address: app} after checking the store's invariants."""
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        revision = con.execute("SELECT revision FROM meta").fetchone()[0]
        max_mod = con.execute("SELECT coalesce(max(mod_revision), 0) FROM kv").fetchone()[0]
        assert max_mod <= revision, "a row is newer than the store's revision"
        held: dict[str, str] = {}
        for key, value in con.execute("SELECT key, value FROM kv WHERE key LIKE 'ips/%'"):
            ip = json.loads(value)
            assert key == "ips/" + ip["address"], (key, value)
            assert ip["address"] not in held
            held[ip["address"]] = ip["app"]
        return held
    finally:
        con.close()


def test_kill9_during_allocations_leaves_a_consistent_store():
    work = Path(tempfile.mkdtemp(prefix="drawbridge-crash-"))
    daemon = Daemon(work / "data", harness.free_port())
    try:
        daemon.start()
        for app in ("alpha", "beta", "gamma"):
            assert daemon.call("POST", "/v1/apps", {"name": app})[0] == 201
        before: dict[str, str] = {}
        for cycle in range(3):
            results: list[tuple[str, str]] = []
            stop = threading.Event()

            def allocate(app: str, kind: str):
                deadline = time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        status, body = daemon.call("POST", f"/v1/apps/{app}/ips", {"type": kind},
                                                   timeout=5)
                    except (OSError, urllib.error.URLError):
                        return  # the daemon is gone
                    if status == 201:
                        results.append((body["address"], app))

            threads = [threading.Thread(target=allocate, args=(app, kind))
                       for app in ("alpha", "beta", "gamma") for kind in ("v4", "v6")]
            for t in threads:
                t.start()
            harness.wait_until(lambda: len(results) >= 60, timeout=20, what="allocations")
            daemon.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=20)
            held = check_store(daemon.data_dir / "state.db")
            # Every allocation the API confirmed was durable (synchronous=FULL) and is intact.
            for address, app in results:
                assert held.get(address) == app, f"confirmed {address} for {app} was lost"
            assert set(before).issubset(held)
            before = held

            daemon.start()
            listed = set()
            for app in ("alpha", "beta", "gamma"):
                status, ips = daemon.call("GET", f"/v1/apps/{app}/ips")
                assert status == 200
                listed |= {ip["address"] for ip in ips}
            assert listed == set(held)
            status, fresh = daemon.call("POST", "/v1/apps/alpha/ips", {"type": "v4"})
            assert status == 201 and fresh["address"] not in held, (cycle, fresh)
            before[fresh["address"]] = "alpha"
    finally:
        daemon.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
