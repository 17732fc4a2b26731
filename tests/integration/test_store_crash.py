"""kill -9 of the daemon in the middle of concurrent IP allocations never leaves a half-written
store: SQLite's integrity check passes, no address is held twice, every key matches its value,
the store's revision covers every row, and the restarted daemon serves the same state and goes
on allocating fresh addresses. No Postgres needed: this is the control plane alone."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness


class Daemon(harness.DrawbridgeDaemon):
    """The control plane alone: no Postgres, one event loop."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, v4_pool="127.0.20.0/22", v6_pool="fd00:db:2::/64",
                         extra_args=("--threads", "1"))

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        status, text = self.api(method, path, body, timeout=timeout)
        return status, json.loads(text)


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
    daemon = Daemon(work)
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
            held = check_store(daemon.data / "state.db")
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
