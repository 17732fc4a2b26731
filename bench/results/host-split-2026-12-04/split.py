#!/usr/bin/python3
"""Where the host's CPU goes per select-only transaction, behind each target.

The same set-up as bench/bench.py (PostgreSQL 15 with ssl=on, PgBouncer, stunnel and Drawbridge
on loopback). Each target runs `pgbench -S -M prepared -c 8 -j 2 -T 10 -P 1`; between t=2 s and
t=8 s the script samples /proc/stat, pgbench's CPU, the proxy's CPU, the CPU of every live child
of the postmaster (the backends and PostgreSQL's own workers) and the TCP segment counters, and
divides by the transactions pgbench reports for those six seconds. The window leaves out backend
start-up (Drawbridge starts a backend per client; PgBouncer keeps its pool warm across runs).

  python3 split.py [targets, default pgbouncer,drawbridge,stunnel,direct-tls]   (ROUNDS=5)

Run from the repository root; it imports bench/bench.py and cleans up after itself.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bench  # noqa: E402  (bench/bench.py)


def tcp_segments():
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Tcp:")]
    row = dict(zip(lines[0][1:], lines[1][1:]))
    return int(row["OutSegs"])


def cpu(pid):
    return bench.proc_cpu(pid) if pid else 0.0


def main():
    targets = (sys.argv[1] if len(sys.argv) > 1 else
               "pgbouncer,drawbridge,stunnel,direct-tls").split(",")
    rounds = int(os.environ.get("ROUNDS", "5"))
    bench.raise_nofile()
    s = bench.Setup()
    b = bench.Bench(s)
    print("round target tps | µs per transaction: host = pgbench + proxy + postgres + other "
          "| softirq (inside the others) | host busy % | TCP segments sent per transaction")
    try:
        s.start_all()
        for r in range(rounds):
            k = r % len(targets)
            for t in targets[k:] + targets[:k]:
                pid = b.proxy_pid(t)
                argv = b.pgbench_cmd(t, ["-S", "-M", "prepared", "-c", "8", "-j", "2",
                                         "-T", "10", "-P", "1"])
                p = subprocess.Popen(argv, env=s.env(t), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=s.work)
                time.sleep(2.0)
                h0, seg0, pg0, px0, cl0 = (bench.machine_cpu(), tcp_segments(),
                                           bench.children_cpu(s.postmaster_pid),
                                           cpu(pid), cpu(p.pid))
                time.sleep(6.0)
                h1, seg1, pg1, px1, cl1 = (bench.machine_cpu(), tcp_segments(),
                                           bench.children_cpu(s.postmaster_pid),
                                           cpu(pid), cpu(p.pid))
                _, err = p.communicate(timeout=60)
                per_s = [float(x) for x in re.findall(r"progress: [\d.]+ s, ([\d.]+) tps", err)]
                n = sum(per_s[2:8])
                if p.returncode != 0 or n <= 0:
                    print("%d %s failed: %s" % (r + 1, t, err[-300:]), flush=True)
                    continue
                us = lambda x: x / n * 1e6  # noqa: E731
                # the machine's busy time, softirq included; a task's system time already
                # includes the softirq work done in its context, so softirq is shown, not added
                busy = h1["busy"] + h1["irq"] - h0["busy"] - h0["irq"]
                pg = sum(v - pg0.get(q, 0.0) for q, v in pg1.items())
                px, cl = px1 - px0, cl1 - cl0
                print("%d %-10s %6.0f | %5.1f = %4.1f + %4.1f + %4.1f + %4.1f | %4.1f | %3.0f | %.2f" % (
                    r + 1, t, n / 6, us(busy), us(cl), us(px), us(pg), us(busy - cl - px - pg),
                    us(h1["softirq"] - h0["softirq"]),
                    100 * busy / (busy + h1["idle"] - h0["idle"]), (seg1 - seg0) / n), flush=True)
    finally:
        s.cleanup()


if __name__ == "__main__":
    main()
