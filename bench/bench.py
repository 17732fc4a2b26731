#!/usr/bin/python3
"""Drawbridge benchmark: pg_tls against PgBouncer (client TLS), stunnel (protocol = pgsql),
PostgreSQL's own TLS and plaintext, in one run on one machine, on loopback.

Workloads, each against every target in turn, the order rotated each round: select-only TPS,
new connections (-C), latency at -c 1, COPY, and TLS handshakes per second against
bench/trivial_backend.py (a backend that answers at once; proxies only). Every ratio is reported
as the median over rounds of the ratio within each round, with its min-max; a target is "yes"
only when the median and all rounds but at most one in five meet it (Report.verdict).

Run through bench/run.sh, which installs the Debian packages and builds the binary first.
Environment:
  QUICK=1        one round, short durations, small COPY and idle counts (smoke-tests the harness)
  ROUNDS=N       rounds of the interleaved workloads (default 5; QUICK: 1)
  DRAWBRIDGE=P   the binary (default build/src/drawbridge)
  KEEP=1         keep the work directory (logs, configs) under /tmp
  ONLY_IDLE=1    skip the interleaved workloads (idle-connection test only)
  SKIP_IDLE=1    skip the idle-connection test
  BUDGET_S=S     hard time budget in seconds (default 2100; BASELINE: 2400; QUICK: 420); runs
                 that would start after it are skipped
  NOTE=TEXT      a line to add to the results (e.g. what else ran on the machine)
  IDLE_NS=A,B    idle-connection counts (default 1000,10000; QUICK: 200,1000)
  BASELINE=P     a second drawbridge binary (e.g. a build of an older commit): adds the target
                 "Drawbridge (baseline)", run exactly as "Drawbridge" (same flags, same fly.toml
                 but for its port, same certificate), right beside it in every round and in the
                 idle test, and a section "Drawbridge against the baseline" with the ratios
                 current / baseline. Default BUDGET_S becomes 2400; the report is
                 <date>[-quick|-partial]-vs-baseline.md. Unset: none of this.
  BASELINE_REV=T what the baseline is (e.g. a commit), printed in the report
Writes bench/results/<date>.md (QUICK: <date>-quick.md) and prints it. Exits 0 whatever the
numbers are: this is a benchmark, not a test.
"""
import datetime
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "5"))
DRAWBRIDGE = os.environ.get("DRAWBRIDGE", os.path.join(ROOT, "build/src/drawbridge"))
KEEP = os.environ.get("KEEP") == "1"
ONLY_IDLE = os.environ.get("ONLY_IDLE") == "1"
SKIP_IDLE = os.environ.get("SKIP_IDLE") == "1"
BASELINE = os.environ.get("BASELINE", "")
BASELINE_REV = os.environ.get("BASELINE_REV", "")
BASELINE_BIN = BASELINE  # the frozen copy in the work directory, once Setup.freeze_binary ran
BUDGET_S = float(os.environ.get("BUDGET_S", "420" if QUICK else ("2400" if BASELINE else "2100")))
NOTE = os.environ.get("NOTE", "")

TPS_T = 3 if QUICK else 10
CONN_T = 3 if QUICK else 8
LAT_T = 3 if QUICK else 6
HS_T = 3 if QUICK else 5
COPY_ROWS = 100_000 if QUICK else 1_000_000
COPY_BYTES = COPY_ROWS * 1001  # 1000 'x' and a newline per row
IDLE_NS = [int(x) for x in os.environ.get("IDLE_NS", "200,1000" if QUICK else "1000,10000").split(",")]
IDLE_HOLD_S = 3
PG_BIN = "/usr/lib/postgresql/15/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# "drawbridge-1": the same binary with one event loop (`--threads 1`) instead of its default of
# one per core: less CPU per transaction, less throughput. Reported beside the default; the
# idle test runs the default only.
TARGETS = ["direct-plain", "direct-tls", "pgbouncer", "stunnel", "drawbridge", "drawbridge-1"]
PROXIES = ["pgbouncer", "stunnel", "drawbridge", "drawbridge-1"]
IDLE_PROXIES = ["pgbouncer", "stunnel", "drawbridge"]
# The handshake workload ("hs") runs against the trivial backend (bench/trivial_backend.py), which
# only proxies can put TLS in front of: PostgreSQL's own TLS is not in it.
HS_TARGETS = ["pgbouncer", "stunnel", "drawbridge", "drawbridge-1"]
LABEL = {
    "direct-plain": "direct plaintext",
    "direct-tls": "direct TLS",
    "pgbouncer": "PgBouncer",
    "stunnel": "stunnel",
    "drawbridge": "Drawbridge",
    "drawbridge-1": "Drawbridge, 1 loop",
}

# BASELINE: "drawbridge-base" is the other binary, started exactly as "drawbridge" is, placed
# right after it in every list so that the two always run back to back (in even rounds and at
# every second idle count the baseline goes first: see pair_order).
CUR, BASE = "drawbridge", "drawbridge-base"
if BASELINE:
    for _l in (TARGETS, PROXIES, IDLE_PROXIES, HS_TARGETS):
        _l.insert(_l.index(CUR) + 1, BASE)
    LABEL[BASE] = "Drawbridge (baseline)"


def pair_order(targets, k):
    """targets with the current/baseline pair swapped when k is even (round 2, idle count #2...),
    so that neither binary always runs right after the other."""
    out = list(targets)
    if BASELINE and k % 2 == 0 and CUR in out and BASE in out:
        i, j = out.index(CUR), out.index(BASE)
        out[i], out[j] = out[j], out[i]
    return out


def round_order(targets, rnd):
    """The order of the targets in round rnd: rotated by one place each round (round 1 as listed,
    round 2 from the second target, ...), so that no target always runs first, or always right
    after the same other one; the current/baseline pair moves as one and stays back to back
    (pair_order swaps it in even rounds)."""
    units = []
    for t in targets:
        if BASELINE and t == BASE and units and units[-1] == [CUR]:
            units[-1].append(t)
        else:
            units.append([t])
    k = (rnd - 1) % len(units) if units else 0
    flat = [t for u in units[k:] + units[:k] for t in u]
    return pair_order(flat, rnd)

T0 = time.monotonic()


def log(msg):
    sys.stderr.write("[bench %6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


def over_budget():
    return time.monotonic() - T0 > BUDGET_S


# ---------------------------------------------------------------- processes and /proc

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Procs:
    """Every long-running process the harness starts, stopped by PID in reverse order."""

    def __init__(self):
        self.procs = []  # (name, Popen)

    def start(self, name, argv, log_path, user=None, stdin=subprocess.DEVNULL,
              stdout=None, env=None, cwd=None):
        logf = open(log_path, "ab")
        kw = {}
        if user:
            kw = {"user": user, "group": user, "extra_groups": []}
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout if stdout else logf, stderr=logf,
                             env=env, cwd=cwd, **kw)
        logf.close()
        self.procs.append((name, p))
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        self.procs = [(n, q) for (n, q) in self.procs if q is not p]

    def stop_all(self):
        for name, p in reversed(list(self.procs)):
            self.stop(p)


PROCS = Procs()


def stat_fields(path):
    """The fields of a /proc stat file after the command name (which may hold spaces and
    parentheses): [0] is the state, [1] the parent's pid, [11:15] utime, stime, cutime, cstime
    in clock ticks."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_cpu(pid):
    """utime+stime of a process (all its threads, live and exited), in seconds."""
    rest = stat_fields("/proc/%d/stat" % pid)
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_cpu_split(pid):
    """(user, system) seconds of a process, all threads."""
    rest = stat_fields("/proc/%d/stat" % pid)
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def thread_cpu(pid):
    """{"name/tid": utime+stime seconds} of each live thread of a process."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")] + "/" + tid
        rest = raw.rsplit(")", 1)[1].split()
        out[name] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def sched_runs(pid):
    """(seconds on a CPU, times scheduled onto a CPU) summed over the live threads of a process,
    from /proc/PID/task/TID/schedstat (exact, not sampled at ticks; threads that exited are not
    in it, so only meaningful for a process whose threads live as long as it does)."""
    on_cpu, runs = 0, 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0.0, 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                a = f.read().split()
            on_cpu += int(a[0])
            runs += int(a[2])
        except (OSError, IndexError, ValueError):
            continue
    return on_cpu / 1e9, runs


def proc_cpu_with_children(pid):
    rest = stat_fields("/proc/%d/stat" % pid)
    return sum(int(x) for x in rest[11:15]) / CLK_TCK


def children_cpu(ppid):
    """{pid: utime+stime seconds} of each live child of process ppid."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            rest = stat_fields("/proc/%s/stat" % p)
        except OSError:
            continue
        if int(rest[1]) == ppid:
            out[int(p)] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def postgres_cpu(postmaster_pid):
    """CPU seconds of the postmaster's children: those alive now plus those it has reaped (the
    backends, PostgreSQL's own workers). Read after a run's backends have exited, the difference
    of two readings is what PostgreSQL spent in between, start-up of new backends included."""
    live = sum(children_cpu(postmaster_pid).values())
    rest = stat_fields("/proc/%d/stat" % postmaster_pid)
    return live + (int(rest[13]) + int(rest[14])) / CLK_TCK


def reaped_children_cpu():
    """user + system seconds of this process's children that have been waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    return out


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return {"busy": (v[0] + v[1] + v[2]) / CLK_TCK, "steal": v[7] / CLK_TCK,
            "irq": (v[5] + v[6]) / CLK_TCK, "softirq": v[6] / CLK_TCK,
            "idle": (v[3] + v[4]) / CLK_TCK, "all": sum(v[:8]) / CLK_TCK}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_tcp(port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def wait_log(path, text, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            if text.encode() in f.read():
                return True
        time.sleep(0.1)
    return False


def run(argv, timeout=120, env=None, check=True, user=None, **kw):
    kwu = {"user": user, "group": user, "extra_groups": []} if user else {}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **kwu, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s %s" % (" ".join(argv), r.returncode, r.stdout[-2000:],
                                                      r.stderr[-2000:]))
    return r


_serve_help = {}


def serve_knows(binary, flag):
    """Whether `binary serve` has `flag` (a BASELINE built before it has not)."""
    if binary not in _serve_help:
        r = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=20)
        _serve_help[binary] = r.stdout + r.stderr
    return flag in _serve_help[binary]


def admission_args(binary, idle_n=0):
    """The admission limits (issue 14) every Drawbridge instance here runs with, explicitly.

    Every client of this benchmark comes from 127.0.0.1, which the edge's per-source defaults
    would treat as a flood: `pgbench -C` opens more TLS connections per second than
    --tls-handshakes-per-second-per-source's 500, and the idle test holds up to 10,000
    connections from that one address still in their handshake (above
    --max-connections-per-source's 1000 and --max-handshakes-in-flight's 4096). So both
    per-source limits are off (0) and, in the idle test, the handshake cap is above the count.
    A binary without these flags (a BASELINE older than them) has no such limits and gets none."""
    out = []
    for flag, value in (("--max-connections-per-source", "0"),
                        ("--tls-handshakes-per-second-per-source", "0"),
                        ("--max-handshakes-in-flight", str(2 * idle_n) if idle_n else None)):
        if value is not None and serve_knows(binary, flag):
            out += [flag, value]
    return out


def crypto_rates():
    """One core's P-256 signs/s and X25519 derives/s (`openssl speed`, machine-readable output:
    +F4:index:bits:sign/s:verify/s and +F5:index:bits:derive/s:seconds per derive)."""
    out = {}
    for alg, tag, key in (("ecdsap256", "+F4:", "ecdsap256_sign_s"), ("ecdhx25519", "+F5:", "x25519_s")):
        try:
            r = subprocess.run(["openssl", "speed", "-seconds", "2", "-mr", alg], capture_output=True,
                               text=True, timeout=60)
            for line in r.stdout.splitlines():
                if line.startswith(tag):
                    out[key] = float(line.split(":")[3])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return out


def first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - version strings are informational
        return "unknown (%s)" % e


# ---------------------------------------------------------------- the set-up

class Setup:
    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="drawbridge-bench.")
        os.chmod(self.work, 0o755)
        self.pg_uid = pwd.getpwnam("postgres").pw_uid
        self.ports = {}
        self.procs = {}  # proxy name -> Popen
        self.pg_port = None
        self.commands = {}
        self.tls_info = {}
        self.trivial_port = None  # bench/trivial_backend.py, for the handshake workload
        self.hs_ports = {}  # target -> its port in front of the trivial backend

    def freeze_binary(self):
        """Benchmarks a copy, so that a rebuild in build/ during the run changes nothing."""
        global DRAWBRIDGE, BASELINE_BIN
        self.binary_source = DRAWBRIDGE
        self.binary_mtime = os.path.getmtime(DRAWBRIDGE)
        self.binary_sha = run(["sha256sum", DRAWBRIDGE]).stdout.split()[0][:12]
        dst = self.path("drawbridge")
        shutil.copy2(DRAWBRIDGE, dst)
        DRAWBRIDGE = dst
        if BASELINE:
            self.base_source = BASELINE
            self.base_mtime = os.path.getmtime(BASELINE)
            self.base_sha = run(["sha256sum", BASELINE]).stdout.split()[0][:12]
            BASELINE_BIN = self.path("drawbridge-baseline")
            shutil.copy2(BASELINE, BASELINE_BIN)

    def path(self, *p):
        return os.path.join(self.work, *p)

    def owned_dir(self, name):
        d = self.path(name)
        os.makedirs(d, exist_ok=True)
        os.chown(d, self.pg_uid, -1)
        return d

    # -- certificate: one ECDSA P-256 self-signed certificate for every TLS terminator
    def make_cert(self):
        self.cert = self.path("server.crt")
        self.key = self.path("server.key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "3", "-subj", "/CN=bench.drawbridge.test",
             "-addext", "subjectAltName=DNS:bench.drawbridge.test,IP:127.0.0.1",
             "-keyout", self.key, "-out", self.cert])
        os.chmod(self.key, 0o600)
        d = self.owned_dir("pgcerts")  # PostgreSQL and PgBouncer run as postgres
        for src in (self.cert, self.key):
            dst = os.path.join(d, os.path.basename(src))
            shutil.copy(src, dst)
            os.chown(dst, self.pg_uid, -1)
            os.chmod(dst, 0o600)
        self.pg_cert = os.path.join(d, "server.crt")
        self.pg_key = os.path.join(d, "server.key")

    # -- PostgreSQL 15, ssl=on, loopback only
    def start_postgres(self):
        d = self.owned_dir("pg")
        self.pgdata = os.path.join(d, "data")
        self.pg_port = free_port()
        run([PG_BIN + "/initdb", "-D", self.pgdata, "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8"], user="postgres", timeout=120)
        with open(os.path.join(self.pgdata, "postgresql.conf"), "a") as f:
            f.write("\n# drawbridge bench\n")
            for k, v in [("listen_addresses", "'127.0.0.1'"), ("port", self.pg_port),
                         ("unix_socket_directories", "'%s'" % d), ("ssl", "on"),
                         ("ssl_cert_file", "'%s'" % self.pg_cert),
                         ("ssl_key_file", "'%s'" % self.pg_key),
                         ("max_connections", 200), ("shared_buffers", "'256MB'"),
                         ("fsync", "off"), ("synchronous_commit", "off"),
                         ("full_page_writes", "off"), ("autovacuum", "off")]:
                f.write("%s = %s\n" % (k, v))
        run([PG_BIN + "/pg_ctl", "-D", self.pgdata, "-l", os.path.join(d, "postgres.log"), "-w",
             "-t", "60", "start"], user="postgres", timeout=90)
        with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
            self.postmaster_pid = int(f.readline())
        self.pg_socket = d
        run(["psql", "-X", "-q", "-h", d, "-p", str(self.pg_port), "-U", "postgres",
             "-c", "CREATE DATABASE bench"])
        self.ports["direct-plain"] = self.pg_port
        self.ports["direct-tls"] = self.pg_port
        log("PostgreSQL on 127.0.0.1:%d (ssl=on)" % self.pg_port)

    def init_pgbench(self):
        cmd = ["pgbench", "-i", "-s", "10", "-q", "-h", self.pg_socket, "-p", str(self.pg_port),
               "-U", "postgres", "bench"]
        run(cmd, timeout=300)
        self.commands["init"] = " ".join(cmd)
        log("pgbench -i -s 10 done")

    # -- the trivial backend: answers a StartupMessage at once (bench/trivial_backend.py)
    def start_trivial(self):
        self.trivial = PROCS.start("trivial", ["/usr/bin/python3", os.path.join(HERE, "trivial_backend.py"),
                                               "--port", "0", "--wait", str(int(BUDGET_S) + 600)],
                                   self.path("trivial.log"), stdout=subprocess.PIPE)
        line = self.trivial.stdout.readline().decode()
        if not line.startswith("ready "):
            raise RuntimeError("trivial backend did not start: " + open(self.path("trivial.log")).read()[-2000:])
        self.trivial_port = int(line.split()[1])
        self.commands["trivial"] = "python3 bench/trivial_backend.py --port %d" % self.trivial_port
        log("trivial backend on 127.0.0.1:%d (pid %d)" % (self.trivial_port, self.trivial.pid))

    def stop_postgres(self):
        if getattr(self, "pgdata", None) and os.path.exists(os.path.join(self.pgdata, "postmaster.pid")):
            run([PG_BIN + "/pg_ctl", "-D", self.pgdata, "-m", "fast", "-w", "-t", "60", "stop"],
                user="postgres", timeout=90, check=False)

    # -- PgBouncer: session pooling, client TLS required, plaintext to PostgreSQL
    def pgbouncer_conf(self, name, port, login_timeout=60):
        d = self.owned_dir(name)
        userlist = os.path.join(d, "userlist.txt")
        with open(userlist, "w") as f:
            f.write('"postgres" ""\n')
        ini = os.path.join(d, "pgbouncer.ini")
        trivial = ("trivial = host=127.0.0.1 port=%d dbname=trivial\n" % self.trivial_port
                   if self.trivial_port else "")
        with open(ini, "w") as f:
            f.write("""[databases]
bench = host=127.0.0.1 port=%d dbname=bench
""" % self.pg_port + trivial + """
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
pidfile =
auth_type = trust
auth_file = %s
pool_mode = session
max_client_conn = 11000
default_pool_size = 20
client_tls_sslmode = require
client_tls_cert_file = %s
client_tls_key_file = %s
server_tls_sslmode = disable
client_login_timeout = %d
log_connections = 0
log_disconnections = 0
stats_period = 600
""" % (port, userlist, self.pg_cert, self.pg_key, login_timeout))
        for p in (userlist, ini):
            os.chown(p, self.pg_uid, -1)
        return ini

    def start_pgbouncer(self, name="pgbouncer", login_timeout=60):
        port = free_port()
        ini = self.pgbouncer_conf(name, port, login_timeout)
        logp = self.path(name + ".log")
        p = PROCS.start(name, ["/usr/sbin/pgbouncer", ini], logp, user="postgres")
        if not wait_tcp(port):
            raise RuntimeError("pgbouncer did not listen: " + open(logp).read()[-2000:])
        self.commands[name] = "pgbouncer %s  # as user postgres; config below" % ini
        return p, port, ini

    # -- stunnel: protocol = pgsql in server mode
    def stunnel_conf(self, name, port, connect_port, hs_port=None):
        """hs_port: a second service on that port in front of the trivial backend."""
        conf = self.path(name + ".conf")
        with open(conf, "w") as f:
            f.write("""foreground = yes
pid =
syslog = no
debug = warning

[pg]
client = no
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
protocol = pgsql
cert = %s
key = %s
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
""" % (port, connect_port, self.cert, self.key))
            if hs_port:
                f.write("""
[trivial]
client = no
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
protocol = pgsql
cert = %s
key = %s
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
""" % (hs_port, self.trivial_port, self.cert, self.key))
        return conf

    def start_stunnel(self, name="stunnel", connect_port=None, hs=False):
        port = free_port()
        hs_port = free_port() if hs and self.trivial_port else None
        if hs_port:
            self.hs_ports[name] = hs_port
        conf = self.stunnel_conf(name, port, connect_port or self.pg_port, hs_port)
        logp = self.path(name + ".log")
        p = PROCS.start(name, ["/usr/bin/stunnel4", conf], logp)
        if not wait_tcp(port):
            raise RuntimeError("stunnel did not listen: " + open(logp).read()[-2000:])
        self.commands[name] = "stunnel4 %s" % conf
        return p, port, conf

    # -- Drawbridge: static mode, one pg_tls service. baseline=True: the same with the BASELINE
    # binary (the same fly.toml text but for the port, the same certificate, the same flags).
    # idle_n: the idle test's connection count (admission limits raised above it).
    # hs: a second [[services]] on its own port in front of the trivial backend (the handshake
    # workload), in the same process.
    def start_drawbridge(self, name="drawbridge", extra=(), baseline=False, idle_n=0, hs=False):
        port = free_port()
        toml = self.path(name + ".fly.toml")
        service = """
[[services]]
  internal_port = %d
  protocol = "tcp"

  [[services.ports]]
    handlers = ["pg_tls"]
    port = %d
"""
        with open(toml, "w") as f:
            f.write('app = "bench"\n' + service % (self.pg_port, port))
            if hs and self.trivial_port:
                self.hs_ports[name] = free_port()
                f.write(service % (self.trivial_port, self.hs_ports[name]))
        binary = BASELINE_BIN if baseline else DRAWBRIDGE
        argv = [binary, "serve", "-c", toml, "--machine",
                "127.0.0.1", "--cert", self.cert, "--key", self.key, "--log-level", "warn",
                "--drain-timeout-ms", "1000", *admission_args(binary, idle_n), *extra]
        logp = self.path(name + ".log")
        p = PROCS.start(name, argv, logp)
        if not wait_log(logp, "drawbridge: ready"):
            raise RuntimeError("drawbridge not ready: " + open(logp).read()[-2000:])
        shown = self.base_source if baseline else os.path.relpath(self.binary_source, ROOT)
        self.commands[name] = " ".join([shown] + argv[1:])
        return p, port, toml

    def start_all(self):
        """Everything the workloads need: the frozen binary, the certificate, PostgreSQL with the
        pgbench tables, the proxies, each checked to answer."""
        self.freeze_binary()
        self.make_cert()
        self.start_postgres()
        self.init_pgbench()
        self.start_trivial()
        self.start_proxies()
        self.check_targets()

    def start_proxies(self):
        p, port, self.pgbouncer_ini = self.start_pgbouncer()
        if self.trivial_port:
            self.hs_ports["pgbouncer"] = port  # the same listener, database "trivial"
        self.procs["pgbouncer"], self.ports["pgbouncer"] = p, port
        p, port, self.stunnel_conf_path = self.start_stunnel(hs=True)
        self.procs["stunnel"], self.ports["stunnel"] = p, port
        p, port, self.fly_toml = self.start_drawbridge(hs=True)
        self.procs["drawbridge"], self.ports["drawbridge"] = p, port
        if BASELINE:
            p, port, self.base_fly_toml = self.start_drawbridge(BASE, baseline=True, hs=True)
            self.procs[BASE], self.ports[BASE] = p, port
        p, port, _ = self.start_drawbridge("drawbridge-1", extra=["--threads", "1"], hs=True)
        self.procs["drawbridge-1"], self.ports["drawbridge-1"] = p, port
        log("proxies: " + ", ".join("%s :%d (pid %d)" % (k, self.ports[k], self.procs[k].pid)
                                    for k in PROXIES))

    def stop_proxies(self):
        for k in PROXIES:
            if k in self.procs:
                PROCS.stop(self.procs.pop(k))

    # -- client environment per target
    def env(self, target):
        e = dict(os.environ)
        e.update({"PGSSLMODE": "disable" if target == "direct-plain" else "require",
                  "PGGSSENCMODE": "disable", "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "bench"})
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE"):
            e.pop(k, None)
        return e

    def env_prefix(self, target):
        return "PGSSLMODE=%s PGGSSENCMODE=disable" % self.env(target)["PGSSLMODE"]

    def check_targets(self):
        """Each target answers, over TLS where it should, and relays a COPY byte for byte."""
        for t in TARGETS:
            port = str(self.ports[t])
            r = run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", port, "-U", "postgres",
                     "-d", "bench", "-c", "SELECT count(*) FROM pgbench_branches"],
                    env=self.env(t), timeout=30)
            assert r.stdout.strip() == "10", (t, r.stdout)
            r = subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", port, "-U", "postgres",
                                "-d", "bench", "-c",
                                "COPY (SELECT repeat('x',1000) FROM generate_series(1,1000)) TO STDOUT"],
                               capture_output=True, env=self.env(t), timeout=30)
            assert r.returncode == 0 and len(r.stdout) == 1001 * 1000, (t, len(r.stdout), r.stderr)
            if t != "direct-plain":
                r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:" + port,
                                    "-starttls", "postgres", "-brief"],
                                   input="", capture_output=True, text=True, timeout=20)
                info = {}
                for line in (r.stdout + r.stderr).splitlines():
                    k, _, v = line.partition(":")
                    if k.strip() in ("Protocol version", "Ciphersuite", "Peer signature type",
                                     "Server Temp Key", "Negotiated TLS1.3 group"):
                        info[k.strip()] = v.strip()
                self.tls_info[t] = info
        for t, port in self.hs_ports.items():
            r = run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                     "-d", "trivial", "-c", "SELECT 1"], env=self.env(t), timeout=30, check=False)
            assert r.returncode == 0, ("trivial backend through", t, r.stdout, r.stderr)
        log("all targets answer; COPY relayed byte for byte; TLS: " +
            "; ".join("%s %s %s" % (t, i.get("Protocol version", "?"), i.get("Ciphersuite", "?"))
                      for t, i in self.tls_info.items()))

    def cleanup(self):
        PROCS.stop_all()
        self.stop_postgres()
        if KEEP:
            log("work directory kept: " + self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------- workloads

def parse_pgbench(out):
    m = {}
    for key, rx in [("tps", r"^tps = ([\d.]+)"), ("lat_ms", r"^latency average = ([\d.]+) ms"),
                    ("txns", r"^number of transactions actually processed: (\d+)"),
                    ("failed", r"^number of failed transactions: (\d+)"),
                    ("conn_ms", r"^average connection time = ([\d.]+) ms"),
                    ("init_conn_ms", r"^initial connection time = ([\d.]+) ms")]:
        mm = re.search(rx, out, re.M)
        if mm:
            m[key] = float(mm.group(1))
    return m


class Bench:
    def __init__(self, s):
        self.s = s
        self.results = []  # dicts: round, workload, target, metrics
        self.skipped = []

    def proxy_pid(self, target):
        p = self.s.procs.get(target)
        return p.pid if p else None

    def measured(self, target, fn, backend_pid=None):
        """Runs fn() with the proxy's CPU seconds sampled around it (also per thread name, and
        backend_pid's when given)."""
        pid = self.proxy_pid(target)
        c0 = proc_cpu_split(pid) if pid else None
        th0 = thread_cpu(pid) if pid else None
        r0 = sched_runs(pid) if pid else None
        b0 = proc_cpu(backend_pid) if backend_pid else None
        mc0 = machine_cpu()
        t0 = time.monotonic()
        m = fn()
        m["wall_s"] = time.monotonic() - t0
        mc1 = machine_cpu()
        m["machine_busy_s"] = mc1["busy"] + mc1["irq"] - mc0["busy"] - mc0["irq"]
        m["machine_all_s"] = mc1["all"] - mc0["all"]
        if m["machine_all_s"] > 0:
            m["machine_busy_pct"] = 100 * m["machine_busy_s"] / m["machine_all_s"]
        if pid:
            c1 = proc_cpu_split(pid)
            m["proxy_user_s"] = c1[0] - c0[0]
            m["proxy_sys_s"] = c1[1] - c0[1]
            m["proxy_cpu_s"] = m["proxy_user_s"] + m["proxy_sys_s"]
            th1 = thread_cpu(pid)
            r1 = sched_runs(pid)
            if target != "stunnel":  # its per-connection threads exit before they are counted
                m["proxy_runs"] = r1[1] - r0[1]
                m["proxy_sched_cpu_s"] = r1[0] - r0[0]
            m["proxy_threads_s"] = {k: round(v - th0.get(k, 0.0), 3) for k, v in th1.items()
                                    if v - th0.get(k, 0.0) > 0}
        if backend_pid:
            m["backend_cpu_s"] = proc_cpu(backend_pid) - b0
        return m

    def pgbench_cmd(self, target, args):
        return ["pgbench", "-h", "127.0.0.1", "-p", str(self.s.ports[target]), "-U", "postgres",
                "-n", *args, "bench"]

    def pgbench(self, target, args, T, log_prefix=None):
        argv = self.pgbench_cmd(target, args + ["-T", str(T)])
        if log_prefix:
            argv[-1:-1] = ["-l", "--log-prefix=" + log_prefix]
        r = run(argv, env=self.s.env(target), timeout=T + 120, check=False,
                cwd=self.s.work)
        m = parse_pgbench(r.stdout)
        if r.returncode != 0 or "tps" not in m:
            m["error"] = (r.stderr or r.stdout)[-300:].strip()
        return m

    def w_tps(self, target):
        pg0, cl0 = postgres_cpu(self.s.postmaster_pid), reaped_children_cpu()
        m = self.measured(target, lambda: self.pgbench(
            target, ["-S", "-M", "prepared", "-c", "8", "-j", "2"], TPS_T))
        cl1 = reaped_children_cpu()  # pgbench has been waited for
        time.sleep(0.3)  # the backends of a proxy that does not pool exit and are reaped
        pg1 = postgres_cpu(self.s.postmaster_pid)
        if m.get("txns"):
            # Where the machine's CPU went per transaction: the whole machine, pgbench, and
            # PostgreSQL (the proxy's share is cpu_us_per_tx below). Softirq work is inside
            # each task's system time, so these add up to about the machine's.
            m["machine_us_per_tx"] = m["machine_busy_s"] / m["txns"] * 1e6
            m["client_us_per_tx"] = (cl1 - cl0) / m["txns"] * 1e6
            m["postgres_us_per_tx"] = (pg1 - pg0) / m["txns"] * 1e6
        if "proxy_cpu_s" in m and m.get("txns"):
            m["cpu_us_per_tx"] = m["proxy_cpu_s"] / m["txns"] * 1e6
            m["user_us_per_tx"] = m["proxy_user_s"] / m["txns"] * 1e6
            m["sys_us_per_tx"] = m["proxy_sys_s"] / m["txns"] * 1e6
        return m

    def w_conn(self, target):
        m = self.measured(target, lambda: self.pgbench(
            target, ["-S", "-C", "-c", "4", "-j", "2"], CONN_T))
        if "proxy_cpu_s" in m and m.get("txns"):
            m["cpu_us_per_conn"] = m["proxy_cpu_s"] / m["txns"] * 1e6
            per_conn_runs(m)
        return m

    def w_lat(self, target):
        prefix = os.path.join(self.s.work, "lat_%s" % target)

        def go():
            m = self.pgbench(target, ["-S", "-c", "1"], LAT_T, log_prefix=prefix)
            lats = []
            for fn in os.listdir(self.s.work):
                if fn.startswith("lat_%s." % target):
                    full = os.path.join(self.s.work, fn)
                    with open(full) as f:
                        for line in f:
                            parts = line.split()
                            if len(parts) >= 3:
                                lats.append(int(parts[2]))
                    os.unlink(full)
            if lats:
                lats.sort()
                m["lat_med_us"] = float(lats[len(lats) // 2])
                m["lat_p99_us"] = float(lats[min(len(lats) - 1, int(len(lats) * 0.99))])
                m["lat_n"] = len(lats)
            return m
        return self.measured(target, go)

    def w_copy(self, target):
        sql = "COPY (SELECT repeat('x',1000) FROM generate_series(1,%d)) TO STDOUT" % COPY_ROWS
        argv = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.s.ports[target]), "-U",
                "postgres", "-d", "bench", "-c", sql]

        def go():
            t0 = time.monotonic()
            r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=self.s.env(target), timeout=600)
            dt = time.monotonic() - t0
            if r.returncode != 0:
                return {"error": r.stderr.decode()[-300:]}
            return {"copy_s": dt, "mb_s": COPY_BYTES / 1e6 / dt}
        m = self.measured(target, go)
        if "proxy_cpu_s" in m:
            m["cpu_s_per_gb"] = m["proxy_cpu_s"] / (COPY_BYTES / 1e9)
        return m

    def w_hs(self, target):
        """TLS handshakes per second against the trivial backend: each pgbench transaction is a
        new connection (SSLRequest, TLS handshake, StartupMessage, the backend's answer,
        Terminate) running a script of one meta-command, so no query is sent."""
        argv = ["pgbench", "-h", "127.0.0.1", "-p", str(self.s.hs_ports[target]), "-U", "postgres",
                "-n", "-C", "-f", self.hs_script(), "-c", "8", "-j", "2", "-T", str(HS_T), "trivial"]

        def go():
            r = run(argv, env=self.s.env(target), timeout=HS_T + 120, check=False, cwd=self.s.work)
            m = parse_pgbench(r.stdout)
            if r.returncode != 0 or "tps" not in m:
                m["error"] = (r.stderr or r.stdout)[-300:].strip()
            return m
        m = self.measured(target, go, backend_pid=self.s.trivial.pid)
        if "proxy_cpu_s" in m and m.get("txns"):
            m["cpu_us_per_hs"] = m["proxy_cpu_s"] / m["txns"] * 1e6
            m["backend_us_per_hs"] = m["backend_cpu_s"] / m["txns"] * 1e6
            per_conn_runs(m)
        return m

    def hs_script(self):
        path = self.s.path("hs.sql")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write("\\set x 1\n")
        return path

    WORKLOADS = [("tps", "w_tps"), ("conn", "w_conn"), ("lat", "w_lat"), ("copy", "w_copy"),
                 ("hs", "w_hs")]

    def commands(self):
        p = "<port>"
        sql = "COPY (SELECT repeat('x',1000) FROM generate_series(1,%d)) TO STDOUT" % COPY_ROWS
        return {
            "tps": "pgbench -h 127.0.0.1 -p %s -U postgres -n -S -M prepared -c 8 -j 2 -T %d bench" % (p, TPS_T),
            "conn": "pgbench -h 127.0.0.1 -p %s -U postgres -n -S -C -c 4 -j 2 -T %d bench" % (p, CONN_T),
            "lat": "pgbench -h 127.0.0.1 -p %s -U postgres -n -S -c 1 -l --log-prefix=lat_<target> -T %d bench" % (p, LAT_T),
            "copy": "psql -X -q -h 127.0.0.1 -p %s -U postgres -d bench -c \"%s\" > /dev/null" % (p, sql),
            "hs": "pgbench -h 127.0.0.1 -p <port in front of the trivial backend> -U postgres -n -C "
                  "-f hs.sql -c 8 -j 2 -T %d trivial   # hs.sql: one line, \\set x 1" % HS_T,
        }

    def rounds(self):
        for rnd in range(1, ROUNDS + 1):
            for wname, meth in self.WORKLOADS:
                for target in round_order(HS_TARGETS if wname == "hs" else TARGETS, rnd):
                    if wname == "hs" and target not in self.s.hs_ports:
                        continue
                    if over_budget():
                        self.skipped.append("round %d %s %s" % (rnd, wname, target))
                        continue
                    m = getattr(self, meth)(target)
                    self.results.append({"round": rnd, "workload": wname, "target": target, **m})
                    log("round %d %-5s %-12s %s" % (rnd, wname, target, short(m)))
            log("round %d done; loadavg %s" % (rnd, loadavg()))


def per_conn_runs(m):
    """Scheduler runs of the proxy's threads per connection, and its CPU per run."""
    if m.get("proxy_runs"):
        m["runs_per_conn"] = m["proxy_runs"] / m["txns"]
        m["us_per_run"] = m["proxy_sched_cpu_s"] / m["proxy_runs"] * 1e6


def short(m):
    keys = ["tps", "lat_ms", "lat_med_us", "mb_s", "proxy_cpu_s", "cpu_us_per_tx", "cpu_us_per_conn",
            "cpu_us_per_hs", "runs_per_conn", "error"]
    return " ".join("%s=%s" % (k, fmt(m[k])) for k in keys if k in m)


def fmt(v, nd=None):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if nd is not None:
        return "%.*f" % (nd, v)
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- idle connections

def idle_test(s, proxy, n):
    """Fresh proxy; N TLS connections that stop before the StartupMessage; RSS before/after."""
    sink = None
    extra_note = ""
    if proxy in (CUR, BASE):
        p, port, _ = s.start_drawbridge("idle-" + proxy, extra=["--handshake-timeout-ms", "600000"],
                                        baseline=proxy == BASE, idle_n=n)
    elif proxy == "pgbouncer":
        p, port, _ = s.start_pgbouncer("idle-pgbouncer", login_timeout=600)
    else:
        sink_port = free_port()
        sink = PROCS.start("sink", ["/usr/bin/python3", os.path.join(HERE, "idle_conns.py"),
                                    "--sink", str(sink_port), "--wait", "400"],
                           s.path("sink.log"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sink.stdout.readline()
        p, port, _ = s.start_stunnel("idle-stunnel", connect_port=sink_port)
        extra_note = "upstream: TCP sink"
    time.sleep(1.0)
    before = proc_status(p.pid)
    cpu0 = proc_cpu(p.pid)
    client = PROCS.start("idle-client", ["/usr/bin/python3", os.path.join(HERE, "idle_conns.py"),
                                         "--port", str(port), "--n", str(n),
                                         "--hold", str(IDLE_HOLD_S), "--wait", "120"],
                         s.path("idle-client.log"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    res = {"proxy": proxy, "n": n, "note": extra_note, "before": before}
    try:
        held = json.loads(client.stdout.readline() or "{}")
        res["held_msg"] = held
        res["at_held"] = proc_status(p.pid)
        check = json.loads(client.stdout.readline() or "{}")
        res["check_msg"] = check
        res["at_check"] = proc_status(p.pid)
        res["cpu_s"] = proc_cpu(p.pid) - cpu0
        client.stdin.write(b"close\n")
        client.stdin.flush()
        client.stdout.readline()
    finally:
        PROCS.stop(client)
        PROCS.stop(p)
        if sink:
            PROCS.stop(sink)
    alive = res.get("check_msg", {}).get("alive", 0)
    res["alive"] = alive
    res["refused"] = n - alive
    if alive:
        res["kib_per_conn"] = (res["at_check"]["VmRSS"] - before["VmRSS"]) / alive
    log("idle %-10s N=%-5d alive=%d refused=%d RSS %d -> %d KiB (%.1f KiB/conn) %s" % (
        proxy, n, alive, n - alive, before["VmRSS"], res.get("at_check", {}).get("VmRSS", 0),
        res.get("kib_per_conn", float("nan")), json.dumps(res.get("check_msg", {}).get("reasons", {}))))
    return res


# ---------------------------------------------------------------- report

def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def ratio(a, b):
    return a / b if a is not None and b else None


def spread(vals, nd, unit):
    v = [x for x in vals if x is not None]
    if not v:
        return "—"
    return "%s–%s%s" % (fmt(min(v), nd), fmt(max(v), nd), unit)


VERDICT_RULE = ("yes when the median of the rounds meets the goal and so does every round, "
                "allowing one round in five to miss (5 rounds: at least 4 meet it; fewer than 5: "
                "all); \"no\" when the median misses it; otherwise \"mixed (rounds disagree)\"")


class Report:
    def __init__(self, s, b, idle, meta):
        self.s, self.b, self.idle, self.meta = s, b, idle, meta

    def vals(self, workload, target, key):
        return [r.get(key) for r in self.b.results
                if r["workload"] == workload and r["target"] == target and key in r]

    def m(self, workload, target, key):
        return med(self.vals(workload, target, key))

    def paired(self, workload, key, target, base):
        """Per-round difference target - base, median over rounds."""
        out = []
        for rnd in range(1, ROUNDS + 1):
            a = [r[key] for r in self.b.results if r["round"] == rnd and r["workload"] == workload
                 and r["target"] == target and key in r]
            c = [r[key] for r in self.b.results if r["round"] == rnd and r["workload"] == workload
                 and r["target"] == base and key in r]
            if a and c:
                out.append(a[0] - c[0])
        return med(out), out

    def render(self):
        L = []
        meta = self.meta
        L.append("# Drawbridge benchmark: %s" % meta["date"])
        L.append("")
        L.append("%s run: %d round%s of interleaved workloads (%s), medians reported. Generated by "
                 "`bench/run.sh`%s in %.0f s." % (
                     "QUICK (smoke-test)" if QUICK else "Full", ROUNDS, "" if ROUNDS == 1 else "s",
                     " → ".join(LABEL[t] for t in TARGETS), " with QUICK=1" if QUICK else "",
                     meta["elapsed"]))
        L.append("")
        L.append("**A benchmark, not a test**: nothing fails on these numbers.")
        if NOTE:
            L.append("")
            L.append("Note: " + NOTE)
        L.append("")
        L.extend(self.targets_table())
        if BASELINE:
            L.extend(self.baseline_table())
        L.extend(self.results_table())
        L.extend(self.idle_table())
        L.extend(self.machine())
        L.extend(self.raw())
        L.extend(self.commands())
        return "\n".join(L) + "\n"

    def paired_ratio_cell(self, w, key, a, b):
        """"1.05x (0.98–1.12)": the median over rounds of a/b within each round, and its spread."""
        per = [x for x in self.per_round(lambda n: self.rv(w, a, key, n) / self.rv(w, b, key, n))
               if x is not None]
        if not per:
            return "—"
        return "%sx (%s)" % (fmt(med(per), 2), spread(per, 2, ""))

    def rv(self, workload, target, key, rnd):
        v = [r[key] for r in self.b.results if r["round"] == rnd and r["workload"] == workload
             and r["target"] == target and key in r]
        return v[0] if v else None

    def per_round(self, fn):
        out = []
        for rnd in range(1, ROUNDS + 1):
            try:
                out.append(fn(rnd))
            except (TypeError, ZeroDivisionError):
                out.append(None)
        return out

    def targets_table(self):
        """The goals, each judged from its per-round values (see verdict())."""
        L = ["## Targets, Drawbridge against the others, same run", ""]
        L.append("| target | goal | median of rounds | spread (min–max) | rounds meeting it | met | "
                 "each round |")
        L.append("|---|---|---|---|---|---|---|")
        rv = self.rv
        rows = []

        def best(n):
            return max(rv("tps", "pgbouncer", "tps", n), rv("tps", "stunnel", "tps", n))

        which = self.per_round(lambda n: "PgBouncer" if rv("tps", "pgbouncer", "tps", n) == best(n)
                               else "stunnel")
        which = [w for w in which if w]
        which_s = ("PgBouncer" if all(w == "PgBouncer" for w in which) else
                   "stunnel" if all(w == "stunnel" for w in which) else
                   "per round: " + ", ".join(which))

        def vs_best(t, label):
            return (label, 1.15, True, "x",
                    self.per_round(lambda n: rv("tps", t, "tps", n) / best(n)))

        def cpu_vs_pgbouncer(t, label, goal):
            cpu, cpu_p = self.m("tps", t, "cpu_us_per_tx"), self.m("tps", "pgbouncer", "cpu_us_per_tx")
            return (label % (fmt(cpu), fmt(cpu_p)), goal, False, "x",
                    self.per_round(lambda n: rv("tps", t, "cpu_us_per_tx", n) /
                                   rv("tps", "pgbouncer", "cpu_us_per_tx", n)))

        def vs_direct(w, key, label):
            return (label, 0.95, True, "x",
                    self.per_round(lambda n: rv(w, "drawbridge", key, n) / rv(w, "direct-tls", key, n)))

        def added_latency(t, label):
            return (label, 25, False, " µs", self.paired("lat", "lat_med_us", t, "direct-tls")[1])

        rows.append("Issue 15")
        rows.append(vs_best("drawbridge", "select-only TPS vs the better of PgBouncer and stunnel "
                            "in the same round (%s)" % which_s))
        rows.append(cpu_vs_pgbouncer("drawbridge", "edge CPU per transaction vs PgBouncer's "
                                     "(medians %s vs %s µs)", 0.90))
        rows.append("Nothing else gets worse (the issue 5 goals it keeps)")
        rows.append(vs_direct("copy", "mb_s", "COPY throughput vs direct TLS"))
        rows.append(vs_direct("conn", "tps", "new TLS connections/s vs direct TLS (`-S -C -c 4`)"))
        rows.append(added_latency("drawbridge", "added latency per round trip over direct TLS "
                                  "(`-S -c 1`, per-transaction median)"))
        big = [i for i in self.idle if i["proxy"] == "drawbridge" and i["n"] == max(IDLE_NS)]
        if big:
            i = big[0]
            ok = i["refused"] == 0 and i.get("kib_per_conn") is not None and i["kib_per_conn"] <= 16
            rows.append(("%d idle TLS connections: held, none refused, <= 16 KiB edge RSS each" % i["n"],
                         "0 refused, <= 16 KiB", "%d held, %d refused, %s KiB/conn" % (
                             i["alive"], i["refused"], fmt(i.get("kib_per_conn"), 1)), ok))
        rows.append("Issue 5 goals not restated by issue 15")
        rows.append(("select-only TPS vs direct TLS (`-S -M prepared -c 8`)", 0.90, True, "x",
                     self.per_round(lambda n: rv("tps", "drawbridge", "tps", n) / rv("tps", "direct-tls", "tps", n))))
        rows.append(cpu_vs_pgbouncer("drawbridge", "edge CPU per transaction vs PgBouncer's "
                                     "(medians %s vs %s µs)", 0.60))
        rows.append("The same goals with one event loop (`--threads 1`; not the default, for comparison)")
        rows.append(vs_best("drawbridge-1", "select-only TPS vs the better of PgBouncer and stunnel"))
        rows.append(cpu_vs_pgbouncer("drawbridge-1", "edge CPU per transaction vs PgBouncer's "
                                     "(medians %s vs %s µs)", 0.90))
        rows.append(added_latency("drawbridge-1", "added latency per round trip over direct TLS"))
        for row in rows:
            if isinstance(row, str):
                L.append("| **%s** | | | | | | |" % row)
                continue
            if len(row) == 4:  # a one-off test: no rounds
                name, goal, text, ok = row
                L.append("| %s | %s | %s | — | one run | %s | — |" % (name, goal, text,
                                                                    "yes" if ok else "**no**"))
                continue
            name, goal, higher, unit, rounds = row
            nd = 2 if unit == "x" else 0
            vals = [x for x in rounds if x is not None]
            med_v = med(vals)
            verdict, k = self.verdict(med_v, vals, goal, higher)
            L.append("| %s | %s %s%s | %s | %s | %s | %s | %s |" % (
                name, ">=" if higher else "<=", fmt(goal, nd if unit == "x" else 0), unit,
                fmt(med_v, nd) + unit if med_v is not None else "—", spread(vals, nd, unit),
                "%d of %d" % (k, len(vals)) if vals else "—", verdict,
                " / ".join(fmt(x, nd) if x is not None else "—" for x in rounds) or "—"))
        L.append("")
        L.append("Every value is judged per round: the ratio (or difference) of Drawbridge to the "
                 "other target measured in the same round, which cancels most of what else the "
                 "machine was doing in that round. \"Median of rounds\" is the median of those "
                 "per-round values, \"spread\" their minimum and maximum. Verdict: **%s**." % VERDICT_RULE)
        L.append("")
        L.extend(self.connection_rows())
        return L

    @staticmethod
    def verdict(med_v, vals, goal, higher):
        """("yes" | "**no**" | "mixed (rounds disagree)" | "—", rounds meeting the goal)."""
        if med_v is None:
            return "—", 0
        meets = (lambda x: x >= goal) if higher else (lambda x: x <= goal)
        k = sum(1 for x in vals if meets(x))
        if not meets(med_v):
            return "**no**", k
        n = len(vals)
        need = n - n // 5  # all of fewer than 5 rounds; all but one of 5 to 9
        return ("yes" if k >= need else "mixed (rounds disagree)"), k

    def connection_rows(self):
        """The connection-heavy rows: edge CPU per new TLS connection (with PostgreSQL behind it,
        pgbench -C) and handshakes per second against the trivial backend."""
        rv = self.rv
        L = ["### Connection-heavy rows (ECDSA P-256 certificate; no goal in the issues, reported)", ""]
        L.append("| target | `-S -C -c 4` to PostgreSQL: new connections/s | … edge CPU µs per "
                 "connection | … edge threads' scheduler runs per connection; CPU µs per run | "
                 "handshakes/s to the trivial backend (`-C -f hs.sql -c 8`) | … edge CPU µs per "
                 "handshake | … scheduler runs per handshake; CPU µs per run | … implied "
                 "handshakes/s per core (10^6 / CPU µs) | … that / P-256 signs per second on one "
                 "core |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        sign = self.meta.get("crypto", {}).get("ecdsap256_sign_s")
        for t in [x for x in TARGETS if x in PROXIES]:
            def col(w, key, nd=0):
                vals = [x for x in self.vals(w, t, key) if x is not None]
                if not vals:
                    return "—"
                return "%s (%s)" % (fmt(med(vals), nd), spread(vals, nd, ""))
            hs_cpu = med(self.vals("hs", t, "cpu_us_per_hs"))
            per_core = 1e6 / hs_cpu if hs_cpu else None
            def runs(w):
                a, b = med(self.vals(w, t, "runs_per_conn")), med(self.vals(w, t, "us_per_run"))
                return "%s; %s" % (fmt(a, 1), fmt(b, 0)) if a is not None else "—"
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                LABEL[t], col("conn", "tps"), col("conn", "cpu_us_per_conn"), runs("conn"),
                col("hs", "tps"), col("hs", "cpu_us_per_hs"), runs("hs"),
                fmt(per_core, 0), fmt(ratio(per_core, sign), 3) if per_core and sign else "—"))
        L.append("")
        L.append("Medians over rounds, (min–max) in brackets. `-S -C -c 4` opens a new connection "
                 "per transaction to PostgreSQL, whose backend start (a fork and its "
                 "initialisation) takes most of the machine, so connections/s is PostgreSQL's "
                 "number and the proxies sit mostly idle: their CPU per connection is their "
                 "handshake and relay work *plus* whatever they spend per second regardless of "
                 "traffic (nothing measurable for any of them when idle), divided by a small rate; "
                 "and at that rate nothing is batched: every event of every connection is a wake-up "
                 "of its own, with the caches cold from PostgreSQL's forks in between. \"Scheduler "
                 "runs\" counts how often the edge's threads were put on a CPU "
                 "(`/proc/PID/task/*/schedstat`; not for stunnel, whose per-connection threads exit "
                 "uncounted). The trivial backend (`bench/trivial_backend.py`) answers a "
                 "StartupMessage at once, so there the edges run flat out and the CPU per "
                 "handshake is their own cost. PgBouncer answers each login from its pool (session "
                 "pooling: no backend connection per client, and no reset query either, as these "
                 "clients send none); stunnel and Drawbridge open a backend connection per client. "
                 "P-256 signs/s on one core: %s (`openssl "
                 "speed -seconds 2 ecdsap256`, measured at the start of the run on this shared "
                 "machine); X25519 derives/s: %s. The edge signs once per full handshake, so the "
                 "last column is the share of a core's signing rate the whole handshake reaches." % (
                     fmt(sign, 0), fmt(self.meta.get("crypto", {}).get("x25519_s"), 0)))
        L.append("")
        return L

    def baseline_table(self):
        """BASELINE: the current binary against the baseline, metric by metric, same run."""
        s, rv = self.s, self.rv
        L = ["## Drawbridge against the baseline%s, same run" % (
            " (%s)" % BASELINE_REV if BASELINE_REV else ""), ""]
        cur_path = os.path.relpath(s.binary_source, ROOT)
        if cur_path.startswith(".."):
            cur_path = s.binary_source
        same = (" (the same file content as the current binary: a check of the harness, not a "
                "comparison)") if s.base_sha == s.binary_sha else ""
        L.append("Current: `%s` (sha256 %s…); baseline: `%s` (sha256 %s…)%s%s. Both run "
                 "`drawbridge serve` with the same flags, the same certificate and the same fly.toml "
                 "but for the listening port, one right after the other in every workload of every "
                 "round (the current binary first in odd rounds, the baseline first in even ones) "
                 "and in the idle test (the same alternation over the connection counts)." % (
                     cur_path, s.binary_sha, s.base_source,
                     s.base_sha, ", " + BASELINE_REV if BASELINE_REV else "", same))
        L.append("")
        L.append("| metric | better | Drawbridge | Drawbridge (baseline) | current / baseline | "
                 "change | spread of current / baseline (min–max) | current / baseline, each round |")
        L.append("|---|---|---|---|---|---|---|---|")

        def change(r, higher_better):
            if r is None:
                return "—"
            pct = (r - 1) * 100
            good = pct >= 0 if higher_better else pct <= 0
            return "%+.1f%% (%s)" % (pct, "same" if abs(pct) < 0.05 else "better" if good else "worse")

        def row(label, w, key, higher_better, nd):
            c, b = self.m(w, CUR, key), self.m(w, BASE, key)
            r = ratio(c, b)
            each = self.per_round(lambda n: rv(w, CUR, key, n) / rv(w, BASE, key, n))
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label, "higher" if higher_better else "lower", fmt(c, nd), fmt(b, nd),
                fmt(r, 3) + "x" if r is not None else "—", change(r, higher_better),
                spread(each, 3, ""), " / ".join(fmt(x, 3) for x in each)))

        row("select-only TPS (`-S -M prepared -c 8`)", "tps", "tps", True, 0)
        row("proxy CPU µs / transaction (user + kernel)", "tps", "cpu_us_per_tx", False, 2)
        row("… user µs / transaction", "tps", "user_us_per_tx", False, 2)
        row("… kernel µs / transaction", "tps", "sys_us_per_tx", False, 2)
        # Added latency: a difference over direct TLS; its ratio is shown, and the change is the
        # difference in µs, per round the current's median minus the baseline's in that round.
        ac, _ = self.paired("lat", "lat_med_us", CUR, "direct-tls")
        ab, _ = self.paired("lat", "lat_med_us", BASE, "direct-tls")
        _, per = self.paired("lat", "lat_med_us", CUR, BASE)
        r = ratio(ac, ab) if ab is not None and ab > 0 and ac is not None and ac >= 0 else None
        dd = ac - ab if ac is not None and ab is not None else None
        L.append("| added latency over direct TLS (µs, `-S -c 1`, median of per-round differences) "
                 "| lower | %s | %s | %s | %s | %s µs | current − baseline (µs): %s |" % (
                     fmt(ac, 1), fmt(ab, 1), fmt(r, 3) + "x" if r is not None else "—",
                     "—" if dd is None else "%+.1f µs (%s)" % (
                         dd, "same" if abs(dd) < 0.05 else "better" if dd < 0 else "worse"),
                     spread(per, 1, ""), " / ".join(fmt(x, 1) for x in per)))
        row("latency median (µs, `-S -c 1`)", "lat", "lat_med_us", False, 0)
        row("latency p99 (µs, `-S -c 1`)", "lat", "lat_p99_us", False, 0)
        row("COPY %.2f GB MB/s" % (COPY_BYTES / 1e9), "copy", "mb_s", True, 0)
        row("… proxy CPU s per GB", "copy", "cpu_s_per_gb", False, 2)
        row("new TLS connections/s (`-S -C -c 4`)", "conn", "tps", True, 0)
        row("… proxy CPU µs / connection", "conn", "cpu_us_per_conn", False, 0)
        row("TLS handshakes/s to the trivial backend", "hs", "tps", True, 0)
        row("… proxy CPU µs / handshake", "hs", "cpu_us_per_hs", False, 0)
        for n in IDLE_NS:
            ic = next((i for i in self.idle if i["proxy"] == CUR and i["n"] == n), None)
            ib = next((i for i in self.idle if i["proxy"] == BASE and i["n"] == n), None)
            c = ic.get("kib_per_conn") if ic else None
            b = ib.get("kib_per_conn") if ib else None
            r = ratio(c, b)
            held = lambda i: "%d held, %d refused" % (i["alive"], i["refused"]) if i else "not run"
            L.append("| idle: KiB RSS per TLS connection, N = %d (%s / %s) | lower | %s | %s | %s | "
                     "%s | — | one run |" % (n, held(ic), held(ib), fmt(c, 1), fmt(b, 1),
                                         fmt(r, 3) + "x" if r is not None else "—", change(r, False)))
        st = self.meta.get("proxy_status") or {}
        if CUR in st and BASE in st:
            c, b = st[CUR]["VmHWM"] / 1024, st[BASE]["VmHWM"] / 1024
            r = ratio(c, b)
            L.append("| peak RSS over the rounds (VmHWM, MiB) | lower | %.1f | %.1f | %s | %s | — | "
                     "one instance each |" % (c, b, fmt(r, 3) + "x", change(r, False)))
        L.append("")
        L.append("Ratios are of the medians over rounds; \"each round\" gives the ratio within each "
                 "round, where the two ran back to back: their spread is this machine's noise, and a "
                 "median change smaller than that spread is not a difference. CPU is `utime + stime` "
                 "of the proxy process over the run. The idle rows are one fresh instance of each "
                 "binary per connection count.")
        L.append("")
        return L

    def results_table(self):
        L = ["## Results (median of %d round%s)" % (ROUNDS, "" if ROUNDS == 1 else "s"), ""]
        L.append("The ratio columns give the median over rounds of the ratio within each round "
                 "(the two measured in the same round), and in brackets its smallest and largest "
                 "value over the rounds.")
        L.append("")
        hdr = "| workload | metric | " + " | ".join(LABEL[t] for t in TARGETS) + \
              " | Drawbridge / direct TLS | Drawbridge / PgBouncer | Drawbridge / stunnel |"
        nr = 3  # ratio columns
        if BASELINE:
            hdr += " Drawbridge / baseline |"
            nr = 4
        blank = "|" + " |" * nr  # the ratio cells of a row without ratios
        L.append(hdr)
        L.append("|---|---|" + "---|" * (len(TARGETS) + nr))
        rows = [
            ("`-S -M prepared -c 8 -j 2 -T %d`" % TPS_T, "TPS", "tps", "tps", 0),
            ("", "latency avg (ms)", "tps", "lat_ms", 3),
            ("", "proxy CPU s in the run", "tps", "proxy_cpu_s", 2),
            ("", "proxy CPU µs / transaction", "tps", "cpu_us_per_tx", 1),
            ("", "… of which user / kernel (µs)", "tps", ("user_us_per_tx", "sys_us_per_tx"), 1),
            ("", "machine CPU busy (all processes, %)", "tps", "machine_busy_pct", 0),
            ("", "machine CPU µs / transaction (all processes)", "tps", "machine_us_per_tx", 1),
            ("", "… of which pgbench / PostgreSQL (µs; PostgreSQL's includes starting the "
             "backends of a proxy that does not pool)", "tps",
             ("client_us_per_tx", "postgres_us_per_tx"), 1),
            ("`-S -C -c 4 -j 2 -T %d`" % CONN_T, "new connections/s", "conn", "tps", 0),
            ("", "proxy CPU µs / connection", "conn", "cpu_us_per_conn", 0),
            ("`-S -c 1 -T %d`" % LAT_T, "latency median (µs, per transaction)", "lat", "lat_med_us", 0),
            ("", "latency p99 (µs)", "lat", "lat_p99_us", 0),
            ("", "TPS", "lat", "tps", 0),
            ("COPY %.2f GB TO STDOUT" % (COPY_BYTES / 1e9), "MB/s (10^6 B)", "copy", "mb_s", 0),
            ("", "proxy CPU s per GB", "copy", "cpu_s_per_gb", 2),
            ("`-C -f hs.sql -c 8 -j 2 -T %d` to the trivial backend" % HS_T, "TLS handshakes/s",
             "hs", "tps", 0),
            ("", "proxy CPU µs / handshake", "hs", "cpu_us_per_hs", 0),
            ("", "trivial backend CPU µs / handshake", "hs", "backend_us_per_hs", 0),
        ]
        for wl, metric, w, key, nd in rows:
            if isinstance(key, tuple):
                cells = []
                for t in TARGETS:
                    u, k = self.m(w, t, key[0]), self.m(w, t, key[1])
                    cells.append("%s / %s" % (fmt(u, nd), fmt(k, nd)) if u is not None else "—")
                L.append("| %s | %s | %s %s" % (wl, metric, " | ".join(cells), blank))
                continue
            vals = {t: self.m(w, t, key) for t in TARGETS}
            cells = [fmt(vals[t], nd) for t in TARGETS]
            if key == "machine_busy_pct":
                L.append("| %s | %s | %s %s" % (wl, metric, " | ".join(cells), blank))
                continue
            others = ["direct-tls", "pgbouncer", "stunnel"] + ([BASE] if BASELINE else [])
            L.append("| %s | %s | %s | %s |" % (wl, metric, " | ".join(cells), " | ".join(
                self.paired_ratio_cell(w, key, "drawbridge", o) for o in others)))
        added = {t: self.paired("lat", "lat_med_us", t, "direct-tls")[0] for t in TARGETS}
        # (the ratio cells: median over rounds of the ratio within each round, and its min–max)
        L.append("| | added latency over direct TLS (µs, median of per-round differences) | %s %s" %
                 (" | ".join(fmt(added[t], 1) for t in TARGETS), blank))
        L.append("")
        # Peak memory of the proxies over the rounds.
        if self.meta.get("proxy_status"):
            L.append("Proxy processes over the interleaved rounds (one instance each, from start to end):")
            L.append("")
            L.append("| proxy | CPU s total | peak RSS (VmHWM) | RSS at end | threads |")
            L.append("|---|---|---|---|---|")
            for k in PROXIES:
                st = self.meta["proxy_status"].get(k)
                if st:
                    L.append("| %s | %.1f | %.1f MiB | %.1f MiB | %d |" % (
                        LABEL[k], st["cpu_s"], st["VmHWM"] / 1024, st["VmRSS"] / 1024, st["Threads"]))
            L.append("")
        return L

    def idle_table(self):
        if not self.idle:
            return []
        L = ["## Idle TLS connections held at once", ""]
        L.append("Each connection: TCP connect, SSLRequest, `S`, TLS handshake, then nothing (no "
                 "StartupMessage), so the proxy holds one TLS session and no PostgreSQL backend. "
                 "A fresh proxy instance per row; RSS from /proc/PID/status before opening and "
                 "after all are open and have been held %d s. Opened 64 at a time by "
                 "`bench/idle_conns.py` (Python ssl). Drawbridge%s ran with `--handshake-timeout-ms "
                 "600000` for this test only (its default 10 s handshake deadline would close "
                 "them) and `--max-handshakes-in-flight` at twice N (all N connections come from "
                 "127.0.0.1 and are still in their handshake; the per-source limits are off in "
                 "every run, see the command lines); PgBouncer with `client_login_timeout = 600`. "
                 "stunnel connects upstream "
                 "as soon as its TLS handshake is done, so its instance points at a TCP sink "
                 "(`idle_conns.py --sink`) instead of PostgreSQL, and each of its connections "
                 "costs two descriptors and one thread. Direct TLS is not measured: PostgreSQL "
                 "forks a process per connection." % (
                     IDLE_HOLD_S, " (and its baseline binary)" if BASELINE else ""))
        L.append("")
        L.append("| proxy | N | held | refused | open time (s) | RSS before (MiB) | RSS held (MiB) | "
                 "KiB RSS per connection | VmHWM (MiB) | threads | fds | CPU s | refusal reasons |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for i in self.idle:
            at = i.get("at_check", {})
            reasons = i.get("check_msg", {}).get("reasons", {})
            L.append("| %s | %d | %d | %d | %s | %.1f | %s | %s | %s | %s | %s | %s | %s |" % (
                LABEL[i["proxy"]], i["n"], i["alive"], i["refused"],
                fmt(i.get("held_msg", {}).get("open_seconds")), i["before"]["VmRSS"] / 1024,
                fmt(at.get("VmRSS", 0) / 1024, 1) if at else "—",
                fmt(i.get("kib_per_conn"), 1), fmt(at.get("VmHWM", 0) / 1024, 1) if at else "—",
                at.get("Threads", "—"), at.get("fds", "—"), fmt(i.get("cpu_s")),
                "; ".join("%s: %d" % kv for kv in reasons.items()) or "—"))
        L.append("")
        return L

    def machine(self):
        meta = self.meta
        L = ["## Machine, versions, TLS", ""]
        L.append("- Date: %s; host: %s, %d cores, %.0f GiB RAM, kernel %s" % (
            meta["date"], meta["cpu"], os.cpu_count(), meta["mem_gib"], platform.release()))
        L.append("- Shared, noisy machine: client, proxy and PostgreSQL share the 2 cores; "
                 "rounds are interleaved and medians reported. Load average at start %s, at end %s. "
                 "CPU used by processes outside this benchmark during the run (approximate: machine "
                 "busy time from /proc/stat minus this harness's processes): %s CPU-s of %s "
                 "available (%s); steal %s s." % (
                     meta["load_start"], meta["load_end"], fmt(meta.get("other_cpu_s")),
                     fmt(meta.get("avail_cpu_s")), meta.get("other_pct", "?"), fmt(meta.get("steal_s"))))
        for k, v in meta["versions"].items():
            L.append("- %s: %s" % (k, v))
        L.append("- Certificate: one self-signed ECDSA P-256 certificate for every TLS terminator; "
                 "clients use `sslmode=require` (no verification), host given as 127.0.0.1 (no SNI).")
        L.append("- Negotiated (openssl s_client -starttls postgres):")
        for t, info in self.s.tls_info.items():
            L.append("  - %s: %s" % (LABEL[t], ", ".join("%s %s" % kv for kv in info.items())))
        L.append("- Threads: Drawbridge uses its default (one event loop per core, %d here), and "
                 "\"Drawbridge, 1 loop\" `--threads 1`; PgBouncer is single-threaded; stunnel runs "
                 "a thread per connection.%s" % (
                     len(os.sched_getaffinity(0)),
                     " \"Drawbridge (baseline)\" runs with exactly the flags of \"Drawbridge\"."
                     if BASELINE else ""))
        L.append("- Logging: Drawbridge `--log-level warn`, PgBouncer `log_connections = 0`, "
                 "`log_disconnections = 0`, stunnel `debug = warning`.")
        if self.b.skipped:
            L.append("- Skipped for the time budget (%d s): %s" % (BUDGET_S, ", ".join(self.b.skipped)))
        L.append("")
        return L

    def raw(self):
        L = ["## Per-round numbers", ""]
        L.append("| round | workload | target | TPS | latency avg ms | median µs | p99 µs | MB/s | proxy CPU s | wall s | error |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in self.b.results:
            L.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["round"], r["workload"], LABEL[r["target"]], fmt(r.get("tps"), 0),
                fmt(r.get("lat_ms"), 3), fmt(r.get("lat_med_us"), 0), fmt(r.get("lat_p99_us"), 0),
                fmt(r.get("mb_s"), 0), fmt(r.get("proxy_cpu_s"), 2), fmt(r.get("wall_s"), 1),
                r.get("error", "").replace("|", "/").replace("\n", " ")))
        L.append("")
        return L

    def commands(self):
        s = self.s
        L = ["## Exact commands", ""]
        L.append("Client environment for every command: `PGGSSENCMODE=disable`, and "
                 "`PGSSLMODE=disable` for direct plaintext, `PGSSLMODE=require` for the others. "
                 "Ports: " + ", ".join("%s %d" % (LABEL[t], s.ports[t]) for t in TARGETS) + ".")
        L.append("")
        L.append("```")
        L.append("# setup")
        L.append("initdb -D PGDATA -U postgres --auth=trust --no-sync -E UTF8   # as postgres")
        L.append("# postgresql.conf: listen_addresses='127.0.0.1' ssl=on ssl_cert_file/ssl_key_file "
                 "max_connections=200 shared_buffers=256MB fsync=off synchronous_commit=off "
                 "full_page_writes=off autovacuum=off")
        L.append(s.commands.get("init", ""))
        for k in PROXIES:
            L.append(s.commands.get(k, ""))
        L.append("# workloads, in each round for each target in turn")
        for k, c in self.b.commands().items():
            L.append(c)
        L.append("# idle connections")
        for n in IDLE_NS:
            L.append("python3 bench/idle_conns.py --port <port> --n %d --hold %d" % (n, IDLE_HOLD_S))
        for k in ("idle-drawbridge", "idle-" + BASE, "idle-pgbouncer", "idle-stunnel"):
            if k in s.commands:
                L.append(s.commands[k])
        L.append("```")
        L.append("")
        for title, path in (("PgBouncer configuration", getattr(s, "pgbouncer_ini", None)),
                            ("stunnel configuration", getattr(s, "stunnel_conf_path", None)),
                            ("Drawbridge fly.toml", getattr(s, "fly_toml", None)),
                            ("Drawbridge (baseline) fly.toml", getattr(s, "base_fly_toml", None))):
            if path and os.path.exists(path):
                L.append("%s:" % title)
                L.append("")
                L.append("```")
                L.append(open(path).read().rstrip())
                L.append("```")
                L.append("")
        return L


# ---------------------------------------------------------------- main

def build_info(binary):
    """Build type and source directory from the CMakeCache.txt of the build tree holding binary
    (<build>/src/drawbridge), when there is one."""
    found = {}
    try:
        for line in open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(binary))),
                                      "CMakeCache.txt")):
            for key in ("CMAKE_BUILD_TYPE:", "CMAKE_HOME_DIRECTORY:"):
                if line.startswith(key):
                    found[key] = line.split("=", 1)[1].strip()
    except OSError:
        return "build type unknown"
    return "%s, sources %s" % (found.get("CMAKE_BUILD_TYPE:") or "no build type",
                               found.get("CMAKE_HOME_DIRECTORY:", "?"))


def versions(s):
    v = {}
    git = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", "src"],
                check=False).stdout.strip()
    v["Drawbridge"] = "%s, git %s%s; binary %s (%s) built %s, sha256 %s…" % (
        first_line([DRAWBRIDGE, "version"]), git,
        " (uncommitted changes under src/)" if dirty else "",
        os.path.relpath(s.binary_source, ROOT), build_info(s.binary_source),
        datetime.datetime.fromtimestamp(s.binary_mtime, datetime.timezone.utc)
        .strftime("%Y-%m-%d %H:%M UTC"), s.binary_sha)
    if BASELINE:
        v["Drawbridge (baseline)"] = "%s%s; binary %s (%s) built %s, sha256 %s…%s" % (
            first_line([BASELINE_BIN, "version"]), ", " + BASELINE_REV if BASELINE_REV else "",
            s.base_source, build_info(s.base_source),
            datetime.datetime.fromtimestamp(s.base_mtime, datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC"), s.base_sha,
            " (identical to the current binary)" if s.base_sha == s.binary_sha else "")
    v["PostgreSQL"] = run(["psql", "-X", "-At", "-h", s.pg_socket, "-p", str(s.pg_port), "-U",
                           "postgres", "-c", "SHOW server_version"], check=False).stdout.strip()
    v["pgbench"] = first_line(["pgbench", "--version"])
    v["PgBouncer"] = first_line(["/usr/sbin/pgbouncer", "--version"])
    st = run(["/usr/bin/stunnel4", "-version"], check=False)
    v["stunnel"] = "; ".join(l.strip() for l in (st.stdout + st.stderr).splitlines()
                             if l.startswith(("stunnel ", "Running", "Threading")))
    v["OpenSSL"] = first_line(["openssl", "version"])
    v["Python (idle client)"] = platform.python_version()
    return v


def main():
    nofile = raise_nofile()
    if not os.access(DRAWBRIDGE, os.X_OK):
        sys.exit("bench: no drawbridge binary at %s (bench/run.sh builds it)" % DRAWBRIDGE)
    if BASELINE and not os.access(BASELINE, os.X_OK):
        sys.exit("bench: BASELINE=%s is not an executable file" % BASELINE)
    date = datetime.datetime.now(datetime.timezone.utc)
    meta = {"date": date.strftime("%Y-%m-%d %H:%M UTC"), "load_start": loadavg()}
    with open("/proc/meminfo") as f:
        meta["mem_gib"] = int(f.readline().split()[1]) / 1024 / 1024
    meta["cpu"] = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                        if l.startswith("model name")), platform.processor())
    cpu_start = machine_cpu()
    self_start = resource.getrusage(resource.RUSAGE_SELF)
    log("%s mode, %d round(s), RLIMIT_NOFILE %d, budget %.0f s%s" % (
        "QUICK" if QUICK else "full", ROUNDS, nofile, BUDGET_S,
        "; baseline " + BASELINE if BASELINE else ""))

    s = Setup()
    b = Bench(s)
    idle = []
    postmaster_cpu = 0.0

    def on_signal(sig, frame):
        raise SystemExit("bench: signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        s.start_all()
        meta["versions"] = versions(s)
        if not ONLY_IDLE:
            meta["crypto"] = crypto_rates()
            log("openssl speed: %s" % meta["crypto"])
        if BASELINE:
            meta["baseline"] = {"source": s.base_source, "sha256_12": s.base_sha, "rev": BASELINE_REV,
                                "current_source": s.binary_source, "current_sha256_12": s.binary_sha}
        if not ONLY_IDLE:
            b.rounds()
        meta["proxy_status"] = {}
        for k in PROXIES:
            st = proc_status(s.procs[k].pid)
            st["cpu_s"] = proc_cpu(s.procs[k].pid)
            meta["proxy_status"][k] = st
        s.stop_proxies()
        if not SKIP_IDLE:
            for k, n in enumerate(IDLE_NS, 1):
                for proxy in pair_order(IDLE_PROXIES, k):
                    if over_budget():
                        b.skipped.append("idle %s N=%d" % (proxy, n))
                        continue
                    try:
                        idle.append(idle_test(s, proxy, n))
                    except Exception as e:  # noqa: BLE001 - report and go on
                        log("idle %s N=%d failed: %s" % (proxy, n, e))
                        b.skipped.append("idle %s N=%d (error: %s)" % (proxy, n, str(e)[:100]))
        postmaster_cpu = proc_cpu_with_children(s.postmaster_pid)
    finally:
        s.cleanup()

    cpu_end = machine_cpu()
    self_end = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (kids.ru_utime + kids.ru_stime + self_end.ru_utime + self_end.ru_stime
            - self_start.ru_utime - self_start.ru_stime + postmaster_cpu)
    busy = cpu_end["busy"] - cpu_start["busy"]
    avail = (cpu_end["all"] - cpu_start["all"])
    meta["other_cpu_s"] = max(0.0, busy - ours)
    meta["avail_cpu_s"] = avail
    meta["other_pct"] = "%.0f%%" % (100 * meta["other_cpu_s"] / avail) if avail else "?"
    meta["steal_s"] = cpu_end["steal"] - cpu_start["steal"]
    meta["load_end"] = loadavg()
    meta["elapsed"] = time.monotonic() - T0

    text = Report(s, b, idle, meta).render()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    partial = ONLY_IDLE or SKIP_IDLE or "IDLE_NS" in os.environ or "ROUNDS" in os.environ
    suffix = "-quick" if QUICK else ("-partial" if partial else "")
    if BASELINE:
        suffix += "-vs-baseline"
    out = os.path.join(HERE, "results", date.strftime("%Y-%m-%d") + suffix + ".md")
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.join(HERE, "results", "raw-" + date.strftime("%Y-%m-%d") + suffix + ".json"),
              "w") as f:
        json.dump({"meta": meta, "results": b.results, "idle": idle, "tls": s.tls_info,
                   "commands": s.commands, "ports": s.ports, "workloads": b.commands()},
                  f, indent=1, default=str)
    print(text)
    log("wrote " + os.path.relpath(out, ROOT))


if __name__ == "__main__":
    main()
