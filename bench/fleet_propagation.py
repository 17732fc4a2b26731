#!/usr/bin/python3
"""How long a deploy made through one node of a fleet takes to be served by the others.

Sets up, on loopback: a 3-member etcd cluster (tests/integration/etcd_cluster.py) and three
`drawbridge serve --store etcd://...` nodes A, B, C with one app. Then runs N deploys (default
100) through node A and, for each, measures how long nodes B and C take to serve it, as the
issue defines "within 1 s": from the moment the writing CLI call (`drawbridge deploy` against A)
returns to the first CLI call on another node that shows the change.

What "shows the change" means here: deploy k creates release N in one etcd transaction, at
revision W (read from etcd: the mod revision of the release's key). Node X serves it when
`drawbridge status -a APP --json` against X shows the app at release N (X's mirror has it) and
`applied_revision` >= W (X's publisher serves a state that includes it: route table,
certificates and DNS rebuilt). Each deploy waits until both B and C serve it before the next.
For each of B and C a thread calls `status` back to back from t0 on; a node's sample is the time
from t0 to the return of the first call that shows deploy k. So a sample includes up to one
whole `status` call (a CLI process start, two API requests): the report gives the median length
of one such call as the resolution.

Prints p50, p99 and max over the 2N samples (and per node), plus the deploy call's own
duration. No Postgres is needed: the machine is 127.0.0.1 on a port nobody answers, and
nothing connects to the app.

    /usr/bin/python3 bench/fleet_propagation.py [--deploys 100] [--bin build/src/drawbridge]
    [--json out.json]

Every loop is bounded in count and time; every process started here is stopped by PID.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import harness  # noqa: E402
from etcd_cluster import EtcdCluster  # noqa: E402


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def toml(app: str, pg_port: int, ports: list[int]) -> str:
    return harness.fly_toml([dict(internal_port=pg_port, port=p, handlers=["pg_tls"])
                             for p in ports]).replace('app = "mydb"', f'app = "{app}"')


class Node(harness.DrawbridgeDaemon):
    def __init__(self, root: Path, name: str, url: str, secret: Path):
        (root / name).mkdir(parents=True, exist_ok=True)
        self.name = name
        super().__init__(root / name, v4_pool="127.0.14.0/24", v6_pool="fd00:db:14::/64",
                         extra_args=("--store", url, "--node", name, "--fleet-secret-file",
                                     str(secret)))

    def served(self, app: str) -> tuple[int, int]:
        """(the app's release, applied_revision) as `status -a APP --json` shows them; (-1, -1)
        when the call fails."""
        p = self.cli("status", "-a", app, "--json", check=False, timeout=10)
        if p.returncode != 0:
            return -1, -1
        j = json.loads(p.stdout)
        return int(j["app"].get("release") or 0), int(j["daemon"].get("applied_revision", -1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploys", type=int, default=100)
    ap.add_argument("--bin", default=os.environ.get("DRAWBRIDGE_BIN",
                                                    str(ROOT / "build/src/drawbridge")))
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="give up on one deploy after this many seconds")
    ap.add_argument("--json", help="also write the samples to this file")
    args = ap.parse_args()
    os.environ["DRAWBRIDGE_BIN"] = str(Path(args.bin).resolve())

    root = Path(tempfile.mkdtemp(prefix="drawbridge-fleet-bench-"))
    etcd = EtcdCluster(3)
    nodes: list[Node] = []
    try:
        etcd.start_all()
        secret = root / "fleet.secret"
        secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        os.chmod(secret, 0o600)
        nodes = [Node(root, n, etcd.url, secret) for n in ("a", "b", "c")]
        for n in nodes:
            n.start(timeout=60)
        a, others = nodes[0], nodes[1:]
        app = "bench"
        a.cli("apps", "create", app)
        a.cli("machines", "add", "127.0.0.1", "-a", app)
        a.cli("ips", "allocate-v4", "--yes", "-a", app)
        dead = harness.free_port()
        fly = root / "fly.toml"
        fly.write_text(toml(app, dead, [harness.free_port()]))

        def release_revision(version: int) -> int:
            p = etcd.etcdctl("get", f"/drawbridge/releases/{app}/{version:08d}", "-w", "json")
            kvs = json.loads(p.stdout).get("kvs") or []
            if not kvs:
                raise RuntimeError(f"release {version} of {app} is not in etcd")
            return int(kvs[0]["mod_revision"])

        samples: dict[str, list[float]] = {n.name: [] for n in others}
        deploy_s: list[float] = []
        call_s: list[float] = []
        for k in range(args.deploys):
            t_start = time.monotonic()
            p = a.cli("deploy", "-c", str(fly), "-a", app, check=False, timeout=60)
            t0 = time.monotonic()
            m = re.search(r"Release v(\d+) created", p.stdout)
            if p.returncode != 0 or not m:
                print(f"deploy {k} failed: {p.stdout}{p.stderr}", file=sys.stderr)
                return 1
            version = int(m.group(1))
            deploy_s.append(t0 - t_start)
            errors: list[str] = []
            wanted: dict[str, int] = {}
            known = threading.Event()

            def watch(n: Node):
                seen: list[tuple[float, int, int]] = []  # (returned at, release, applied)
                deadline = t0 + args.timeout
                while time.monotonic() < deadline:
                    c0 = time.monotonic()
                    release, applied = n.served(app)
                    c1 = time.monotonic()
                    call_s.append(c1 - c0)
                    seen.append((c1, release, applied))
                    if not known.is_set():
                        continue
                    for at, rel, app_rev in seen:
                        if rel == version and app_rev >= wanted["revision"]:
                            samples[n.name].append(at - t0)
                            return
                errors.append(f"{n.name} did not serve deploy {k} (release {version}) within "
                              f"{args.timeout}s; last seen {seen[-3:]}")

            threads = [threading.Thread(target=watch, args=(n,)) for n in others]
            for t in threads:
                t.start()
            wanted["revision"] = release_revision(version)
            known.set()
            for t in threads:
                t.join(args.timeout + 30)
            if errors:
                print("; ".join(errors), file=sys.stderr)
                return 1
            if (k + 1) % 10 == 0:
                print(f"  {k + 1}/{args.deploys} deploys", file=sys.stderr)

        every = [s for v in samples.values() for s in v]
        ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
        print(f"fleet propagation: {args.deploys} deploys through node a, served by b and c "
              f"({len(every)} samples; etcd 3.4, 3 members, loopback; {os.cpu_count()} cores)")
        print(f"  all:   p50 {ms(pct(every, 50))}  p99 {ms(pct(every, 99))}  "
              f"max {ms(max(every))}  within 1 s: {sum(s <= 1.0 for s in every)}/{len(every)}")
        for name, v in samples.items():
            print(f"  {name}:     p50 {ms(pct(v, 50))}  p99 {ms(pct(v, 99))}  max {ms(max(v))}")
        print(f"  resolution: one `status` CLI call takes {ms(statistics.median(call_s))} "
              f"(median); the deploy call itself {ms(statistics.median(deploy_s))} (median)")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"samples": samples, "deploy_s": deploy_s, "status_call_s": call_s}, indent=1))
        return 0
    finally:
        for n in nodes:
            n.stop()
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
