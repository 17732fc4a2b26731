#!/usr/bin/python3
"""Where a proxy's time goes: the same set-up as bench.py (PostgreSQL 15 with ssl=on, PgBouncer,
stunnel, Drawbridge on loopback), then, for each proxy and workload, `perf stat` on syscall
tracepoints (syscalls per transaction or per MB) and `perf record` (cpu-clock samples with DWARF
call graphs) while the workload runs. Not part of the benchmark run; for finding out why.

  bench/profile.py [--proxies drawbridge,pgbouncer,stunnel] [--workloads tps,lat,copy,conn,hs]
                   [--seconds 8] [--no-record]

Needs linux-perf. Writes bench/results/profile-<date>.txt and prints it.
"""
import argparse
import datetime
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

SYSCALLS = ["recvfrom", "recvmsg", "read", "readv", "sendto", "sendmsg", "write", "writev",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll", "futex", "accept4",
            "connect", "setsockopt", "getsockopt", "ioctl", "close", "mmap", "munmap", "brk",
            "madvise"]


def attach_perf(argv):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def detach_perf(p):
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    return out


def workload(b, target, name, seconds):
    """Runs one workload synchronously; returns (units, unit name)."""
    if name == "tps":
        m = b.pgbench(target, ["-S", "-M", "prepared", "-c", "8", "-j", "2"], seconds)
        return m.get("txns", 0), "transaction", m
    if name == "lat":
        m = b.pgbench(target, ["-S", "-c", "1"], seconds)
        return m.get("txns", 0), "transaction", m
    if name == "conn":
        m = b.pgbench(target, ["-S", "-C", "-c", "4", "-j", "2"], seconds)
        return m.get("txns", 0), "connection", m
    if name == "hs":  # TLS handshakes against the trivial backend (bench.py's workload "hs")
        argv = ["pgbench", "-h", "127.0.0.1", "-p", str(b.s.hs_ports[target]), "-U", "postgres",
                "-n", "-C", "-f", b.hs_script(), "-c", "8", "-j", "2", "-T", str(seconds), "trivial"]
        m = bench.parse_pgbench(bench.run(argv, env=b.s.env(target), timeout=seconds + 120,
                                          check=False, cwd=b.s.work).stdout)
        return m.get("txns", 0), "handshake", m
    if name == "copy":
        m = b.w_copy(target)
        return bench.COPY_BYTES / 1e6, "MB", m
    raise ValueError(name)


def syscall_profile(b, target, name, seconds):
    pid = b.proxy_pid(target)
    events = ",".join(["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + s for s in SYSCALLS])
    p = attach_perf(["perf", "stat", "-x", ",", "-e", events, "-e", "task-clock,context-switches",
                     "-p", str(pid)])
    time.sleep(0.3)
    units, unit, m = workload(b, target, name, seconds)
    out = detach_perf(p)
    counts = {}
    for line in out.splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[0].replace(".", "").isdigit():
            ev = parts[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "ALL")
            counts[ev] = float(parts[0])
    lines = ["%s / %s: %s (%s %s; %s)" % (bench.LABEL[target], name, unit, fmt_units(units), unit,
                                          bench.short(m))]
    if units:
        per = {k: v / units for k, v in counts.items() if v}
        order = ["ALL"] + sorted((k for k in per if k != "ALL"), key=lambda k: -per[k])
        lines.append("  per %s: " % unit + ", ".join("%s %.2f" % (k, per[k]) for k in order
                                                     if k in per and k not in ("task-clock",)))
        if "task-clock" in counts:
            lines.append("  CPU per %s: %.1f µs" % (unit, counts["task-clock"] * 1000 / units))
    return lines


def tidy(line, width=150):
    """Shortens C++ template arguments so that a report line stays readable."""
    for _ in range(6):
        line = re.sub(r"<[^<>]*>", "<>", line)
    line = re.sub(r"\s+-\s+-\s*$", "", line.rstrip())
    return line[:width]


def section(text, limit, keep=lambda l: True):
    out = [tidy(l) for l in text.splitlines() if l.strip() and not l.startswith("#") and keep(l)]
    return out[:limit]


def fmt_units(u):
    return "%.0f" % u


def perf_record(b, target, name, seconds, work):
    pid = b.proxy_pid(target)
    data = os.path.join(work, "perf-%s-%s.data" % (target, name))
    p = attach_perf(["perf", "record", "-e", "cpu-clock", "-F", "1999", "--call-graph",
                     "dwarf,16384", "-o", data, "-p", str(pid)])
    time.sleep(0.3)
    units, unit, m = workload(b, target, name, seconds)
    detach_perf(p)
    lines = ["", "=== perf record: %s / %s (%s)" % (bench.LABEL[target], name, bench.short(m))]
    flat = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort",
                           "dso,symbol", "-g", "none", "--percent-limit", "0.7"],
                          capture_output=True, text=True, timeout=300).stdout
    by_dso = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort",
                             "dso", "-g", "none"], capture_output=True, text=True, timeout=300).stdout
    lines.append("--- self time by binary")
    lines.extend(section(by_dso, 12))
    user = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort",
                           "dso,symbol", "-g", "none", "--percent-limit", "0.25"],
                          capture_output=True, text=True, timeout=300).stdout
    lines.append("--- self time by user-space symbol (>= 0.25%, top 30)")
    lines.extend(section(user, 30, lambda l: "[kernel" not in l))
    lines.append("--- self time by symbol (>= 0.7%, top 25)")
    lines.extend(section(flat, 25))
    tree = subprocess.run(["perf", "report", "-i", data, "--children", "--stdio", "--sort",
                           "symbol", "-g", "none", "--percent-limit", "3"],
                          capture_output=True, text=True, timeout=300).stdout
    lines.append("--- inclusive time by symbol (>= 3%, top 45)")
    lines.extend(section(tree, 45))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxies", default="drawbridge,pgbouncer,stunnel")
    ap.add_argument("--workloads", default="tps,lat,copy")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    bench.raise_nofile()
    s = bench.Setup()
    b = bench.Bench(s)
    out = ["# profile %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "load average at start: " + bench.loadavg()]
    try:
        s.start_all()
        for w in args.workloads.split(","):
            for t in args.proxies.split(","):
                out.extend(syscall_profile(b, t, w, args.seconds))
                bench.log("syscalls %s %s done" % (t, w))
        if not args.no_record:
            for w in args.workloads.split(","):
                for t in args.proxies.split(","):
                    out.extend(perf_record(b, t, w, args.seconds, s.work))
                    bench.log("perf record %s %s done" % (t, w))
    finally:
        s.cleanup()
    out.append("load average at end: " + bench.loadavg())
    text = "\n".join(out) + "\n"
    path = os.path.join(bench.HERE, "results", "profile-%s.txt" %
                        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
