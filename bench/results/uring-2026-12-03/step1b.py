#!/usr/bin/python3
"""Syscalls and context switches per select-only transaction: epoll vs io_uring relay."""
import os, subprocess, sys, time, signal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bench
SECS = int(os.environ.get("SECS", "8"))
bench.raise_nofile()
s = bench.Setup(); b = bench.Bench(s)
try:
    s.start_all()
    for t in ["drawbridge", "drawbridge-base", "drawbridge", "drawbridge-base"]:
        pid = b.proxy_pid(t)
        ev = "raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,context-switches,task-clock"
        p = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ev, "-p", str(pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.3)
        m = b.pgbench(t, ["-S", "-M", "prepared", "-c", "8", "-j", "2"], SECS)
        time.sleep(0.2); p.send_signal(signal.SIGINT); out, _ = p.communicate(timeout=60)
        tx = m.get("txns", 1)
        vals = {}
        for line in out.splitlines():
            parts = line.split(",")
            if len(parts) >= 3 and parts[0].replace(".", "").isdigit():
                vals[parts[2].split(":")[-1]] = float(parts[0])
        print("%-16s tps=%.0f per tx: %s; cpu %.1f us" % (t, m.get("tps", 0), ", ".join(
            "%s %.2f" % (k.replace("sys_enter_", ""), v / tx) for k, v in vals.items() if k != "task-clock"),
            vals.get("task-clock", 0) * 1000 / tx), flush=True)
finally:
    s.cleanup()
