#!/usr/bin/python3
"""PostgreSQL's CPU per select-only transaction over a whole 10 s pgbench run against the
6-second window in its middle, and over the first 2 s and the last 2 s, behind each target.
Run from the clone's root: python3 bench/results/host-split-2026-12-04/phases.py pgbouncer,drawbridge,direct-plain (ROUNDS=3)."""
import os, re, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bench  # noqa: E402  (bench/bench.py)
targets = sys.argv[1].split(",")
s = bench.Setup(); b = bench.Bench(s)
bench.raise_nofile()
try:
    s.start_all()
    for r in range(int(os.environ.get("ROUNDS", "3"))):
        k = r % len(targets)
        for t in targets[k:] + targets[:k]:
            argv = b.pgbench_cmd(t, ["-S", "-M", "prepared", "-c", "8", "-j", "2", "-T", "10", "-P", "1"])
            c0 = bench.postgres_cpu(s.postmaster_pid); t0 = time.monotonic()
            p = subprocess.Popen(argv, env=s.env(t), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=s.work)
            time.sleep(2 - (time.monotonic() - t0)); c2 = bench.postgres_cpu(s.postmaster_pid)
            time.sleep(8 - (time.monotonic() - t0)); c8 = bench.postgres_cpu(s.postmaster_pid)
            out, err = p.communicate(timeout=60); time.sleep(0.3); ce = bench.postgres_cpu(s.postmaster_pid)
            per = [float(x) for x in re.findall(r"progress: [\d.]+ s, ([\d.]+) tps", err)]
            n_all = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
            n_win = sum(per[2:8])
            print("%d %-12s whole: %5.1f µs/tx (%.2f s)  window 2-8 s: %5.1f µs/tx  first 2 s: %.2f s CPU for %d tx  last 2 s+end: %.2f s CPU for %d tx" % (
                r + 1, t, (ce - c0) / n_all * 1e6, ce - c0, (c8 - c2) / n_win * 1e6, c2 - c0, sum(per[:2]), ce - c8, n_all - sum(per[:8])), flush=True)
finally:
    s.cleanup()
