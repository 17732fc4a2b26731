#!/usr/bin/python3
"""Step 1: where drawbridge's CPU per select-only transaction goes (kernel breakdown)."""
import os, subprocess, sys, time, signal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bench

SECS = int(os.environ.get("SECS", "8"))
targets = os.environ.get("T", "drawbridge-1,drawbridge,pgbouncer").split(",")
bench.raise_nofile()
s = bench.Setup()
b = bench.Bench(s)
out = []
try:
    s.start_all()
    for t in targets:
        pid = b.proxy_pid(t)
        data = "/tmp/uring-work/perf-%s.data" % t
        p = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-g", "-o", data,
                              "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        m = b.measured(t, lambda: b.pgbench(t, ["-S", "-M", "prepared", "-c", "8", "-j", "2"], SECS))
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        cpu = m.get("proxy_cpu_s", 0); tx = m.get("txns", 1)
        line = "%s: tps=%.0f txns=%d cpu/tx=%.1f us (user %.1f, sys %.1f)" % (
            t, m.get("tps", 0), tx, cpu / tx * 1e6, m.get("proxy_user_s", 0) / tx * 1e6,
            m.get("proxy_sys_s", 0) / tx * 1e6)
        print(line, flush=True)
        out.append(line)
finally:
    s.cleanup()
open("/tmp/uring-work/step1.txt", "w").write("\n".join(out) + "\n")
