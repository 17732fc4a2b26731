#!/usr/bin/python3
"""Issue 15, relay pool: does the pool bring in its second relay loop when the first saturates?

Uses bench.py's Setup (PostgreSQL, the certificate, the proxies; BASELINE=/path adds
"drawbridge-base"). Workload: STREAMS parallel `COPY (SELECT repeat('x',1000) FROM
generate_series(1,ROWS)) TO STDOUT` through one target at a time, targets interleaved, ROUNDS
rounds. Per run: aggregate MB/s, the proxy's CPU seconds, and each of its threads' CPU seconds
(/proc/PID/task/*/stat), from which the relay threads' shares are read.

  BASELINE=/tmp/drawbridge-base-f8d8598 DRAWBRIDGE=build/src/drawbridge \
    python3 bench/results/relay-pool-2026-12-03/saturate.py
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bench  # noqa: E402

STREAMS = int(os.environ.get("STREAMS", "4"))
ROWS = int(os.environ.get("ROWS", "250000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TARGETS = [t for t in ("drawbridge", "drawbridge-base", "drawbridge-1") if t in bench.PROXIES]


def copy_streams(s, target):
    sql = "COPY (SELECT repeat('x',1000) FROM generate_series(1,%d)) TO STDOUT" % ROWS
    argv = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(s.ports[target]), "-U", "postgres",
            "-d", "bench", "-c", sql]
    t0 = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=s.env(target)) for _ in range(STREAMS)]
    # Read every stream at once (a thread each): a pipe left unread would stall its stream.
    counts = [0] * STREAMS

    def drain(i):
        n = 0
        while True:
            b = procs[i].stdout.read(1 << 20)
            if not b:
                break
            n += len(b)
        counts[i] = n

    th = [threading.Thread(target=drain, args=(i,)) for i in range(STREAMS)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=300)
    for p in procs:
        p.wait(timeout=60)
    total = sum(counts)
    wall = time.monotonic() - t0
    ok = total == STREAMS * ROWS * 1001
    return {"mb_s": total / wall / 1e6, "bytes_ok": ok, "streams": STREAMS}


def main():
    bench.raise_nofile()
    s = bench.Setup()
    b = bench.Bench(s)
    lines = []
    try:
        s.start_all()
        for rnd in range(1, ROUNDS + 1):
            order = TARGETS if rnd % 2 else list(reversed(TARGETS))
            for t in order:
                m = b.measured(t, lambda: copy_streams(s, t))
                threads = sorted(m.get("proxy_threads_s", {}).items(), key=lambda kv: -kv[1])
                shares = ", ".join("%s %.2f s (%.0f%%)" % (k, v, 100 * v / m["wall_s"])
                                   for k, v in threads)
                line = ("round %d %-16s %d streams: %.0f MB/s, bytes %s, proxy CPU %.2f s in "
                        "%.2f s wall (%.2f s per GB); threads: %s; loadavg %s" % (
                            rnd, t, STREAMS, m["mb_s"], "ok" if m["bytes_ok"] else "SHORT",
                            m["proxy_cpu_s"], m["wall_s"],
                            m["proxy_cpu_s"] / (m["mb_s"] * m["wall_s"] / 1e3), shares,
                            open("/proc/loadavg").read().split()[:3]))
                print(line, flush=True)
                lines.append(line)
    finally:
        s.cleanup()
    out = os.environ.get("OUT")
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
