#!/usr/bin/python3
"""Per select-only transaction: the proxy's syscalls (strace -c -f; counts only) and its threads'
scheduler runs (schedstat, no strace), for drawbridge and pgbouncer."""
import os, subprocess, sys, time, signal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # bench/
import bench

SECS = 6
bench.raise_nofile()
s = bench.Setup()
b = bench.Bench(s)
try:
    s.start_all()
    for t in ["drawbridge", "pgbouncer", "drawbridge", "pgbouncer"]:
        pid = b.proxy_pid(t)
        r0 = bench.sched_runs(pid)[1]
        m = b.measured(t, lambda: b.pgbench(t, ["-S", "-M", "prepared", "-c", "8", "-j", "2"], SECS))
        r1 = bench.sched_runs(pid)[1]
        tx = m.get("txns", 1)
        print("%s: tps=%.0f cpu/tx=%.1f us (user %.1f sys %.1f) sched runs/tx=%.2f" % (
            t, m.get("tps", 0), m.get("proxy_cpu_s", 0) / tx * 1e6,
            m.get("proxy_user_s", 0) / tx * 1e6, m.get("proxy_sys_s", 0) / tx * 1e6,
            (r1 - r0) / tx), flush=True)
    for t in ["drawbridge", "pgbouncer"]:
        pid = b.proxy_pid(t)
        out = "/tmp/strace-%s.txt" % t
        p = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        m = b.measured(t, lambda: b.pgbench(t, ["-S", "-M", "prepared", "-c", "8", "-j", "2"], SECS))
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        tx = m.get("txns", 1)
        calls = {}
        for line in open(out):
            f = line.split()
            if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
                calls[f[-1]] = int(f[3])
        print("%s under strace: txns=%d syscalls/tx: %s" % (t, tx, ", ".join(
            "%s %.2f" % (k, v / tx) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:8])),
            flush=True)
finally:
    s.cleanup()
