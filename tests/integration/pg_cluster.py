"""Several real PostgreSQL 15 clusters on loopback addresses of their own, for the tests of
health, concurrency and roles (test_health.py, test_admission.py).

A machine of an app is a bare address and every machine of a service listens on the service's
`internal_port`, so each cluster here listens on one address of 127.0.0.0/8 (127.0.0.21, .22, ...)
and the clusters of one test share one port. Behind the edge they speak plain TCP (ssl off) and
trust every loopback client (the edge connects from 127.0.0.1; the tests log in as `probe` or
`alice` without a password exchange, so a login costs no SCRAM round trips). `log_connections`
is on, so a test can tell from a cluster's log whether a connection ever reached it.

`standby_of` makes a streaming standby with `pg_basebackup -R` (a `replicator` role with a
`replication` line in pg_hba for loopback), and waits until the primary reports it streaming;
`promote` is `pg_ctl promote -w`.

Each cluster runs as the `postgres` user in a temporary directory (as harness.start_postgres
does), is stopped by its postmaster's PID (SIGINT: fast shutdown) and removed by `destroy`.
Every wait has a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (PG_BIN, dsn, pid_alive, read_whole_lines, run, run_psql, stop_pid,
                     wait_until)

# Settings every cluster gets (the standby inherits them from its base backup).
_CONF = """
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{sockdir}'
ssl = off
max_connections = 40
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
synchronous_commit = off
full_page_writes = off
log_connections = on
log_min_messages = warning
"""

_HBA = """\
local all all trust
host replication replicator 127.0.0.0/8 trust
host all all 127.0.0.0/8 trust
"""


@dataclass
class PgNode:
    """One PostgreSQL cluster listening on `host`:`port` (and on a Unix socket in `base`)."""
    name: str
    host: str
    port: int
    base: Path
    pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log_text(self) -> str:
        return read_whole_lines(self.logfile)

    def _as_pg(self, *cmd: str, timeout: float = 120):
        return run(["runuser", "-u", "postgres", "--", *cmd], timeout=timeout, cwd=self.base)

    def _read_pid(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split("\n")[0])

    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def start(self) -> None:
        """pg_ctl start -w (bounded), then remembers the postmaster's PID."""
        self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                    "-w", "-t", "60", "start", timeout=90)
        self.pid = self._read_pid()

    def stop_fast(self) -> None:
        """`pg_ctl stop -m fast -w`: every session ends, the port closes; returns once the
        postmaster is gone."""
        self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                    "-t", "60", "stop", timeout=90)
        if self.pid is not None:
            wait_until(lambda: not pid_alive(self.pid), 30, what=f"postmaster {self.pid} gone")
        self.pid = None

    def promote(self) -> None:
        """`pg_ctl promote -w`: returns once the standby has left recovery."""
        self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
                    "promote", timeout=90)

    def query(self, sql: str, params=None) -> list[tuple]:
        """One query through a fresh psycopg connection over the Unix socket, as postgres."""
        import psycopg
        with psycopg.connect(host=str(self.base), port=self.port, user="postgres",
                             dbname="postgres", autocommit=True, connect_timeout=10) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def psql(self, sql: str, db: str = "postgres"):
        return run_psql(dsn(host=str(self.base), port=self.port, user="postgres", dbname=db),
                        "-c", sql)

    def in_recovery(self) -> bool:
        return self.query("SELECT pg_is_in_recovery()")[0][0]

    def client_backends(self, application_name: str) -> int:
        return self.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                          "AND backend_type = 'client backend'", (application_name,))[0][0]


def _new_base(name: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=f"drawbridge-it-{name}-"))
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres", "postgres")
    return base


def _append_conf(node: PgNode) -> None:
    with open(node.datadir / "postgresql.conf", "a") as f:
        f.write(_CONF.format(host=node.host, port=node.port, sockdir=node.base))


def init_cluster(name: str, host: str, port: int) -> PgNode:
    """A new primary on host:port with the roles the tests log in as (`alice`, the owner of
    database `app`, `probe`, and `replicator` for standbys), started."""
    node = PgNode(name=name, host=host, port=port, base=_new_base(name))
    try:
        node._as_pg(str(PG_BIN / "initdb"), "-D", str(node.datadir), "-U", "postgres",
                    "-E", "UTF8", "--locale=C", "--auth=trust", "--no-sync")
        (node.datadir / "pg_hba.conf").write_text(_HBA)
        _append_conf(node)
        node.start()
        node.psql("CREATE ROLE alice LOGIN PASSWORD 'alice-secret'")
        node.psql("CREATE DATABASE app OWNER alice")
        node.psql("CREATE ROLE probe LOGIN")
        node.psql("CREATE ROLE replicator LOGIN REPLICATION")
        node.psql("GRANT ALL ON SCHEMA public TO probe", db="app")
    except BaseException:
        destroy(node)
        raise
    return node


def standby_of(primary: PgNode, name: str, host: str, timeout: float = 60) -> PgNode:
    """A streaming standby of `primary` on host:primary.port: `pg_basebackup -R -X stream`,
    its own listen address and socket directory, started, and waited for until the primary's
    pg_stat_replication says `streaming` and a row written on the primary is visible on it."""
    node = PgNode(name=name, host=host, port=primary.port, base=_new_base(name))
    try:
        node._as_pg(str(PG_BIN / "pg_basebackup"), "-h", primary.host, "-p", str(primary.port),
                    "-U", "replicator", "-D", str(node.datadir), "-R", "-X", "stream",
                    "-c", "fast", "--no-sync", timeout=timeout)
        _append_conf(node)  # later lines win over the primary's address and socket directory
        node.start()
        wait_until(lambda: node.in_recovery(), timeout, interval=0.1,
                   what=f"{name} in recovery")

        def streaming() -> bool:
            rows = primary.query("SELECT state FROM pg_stat_replication "
                                 "WHERE client_addr IS NOT NULL")
            return any(r[0] == "streaming" for r in rows)
        wait_until(streaming, timeout, interval=0.1, what=f"{name} streaming from {primary.name}")
        tag = f"seen_{int(time.time() * 1000)}"
        primary.psql("CREATE TABLE IF NOT EXISTS replication_probe(tag text)", db="app")
        primary.psql(f"INSERT INTO replication_probe VALUES ('{tag}')", db="app")

        def replicated() -> bool:
            import psycopg
            with psycopg.connect(host=str(node.base), port=node.port, user="postgres",
                                 dbname="app", autocommit=True, connect_timeout=10) as c:
                try:
                    return bool(c.execute("SELECT 1 FROM replication_probe WHERE tag = %s",
                                          (tag,)).fetchall())
                except psycopg.errors.UndefinedTable:
                    return False
        wait_until(replicated, timeout, interval=0.1, what=f"a row replicated to {name}")
    except BaseException:
        destroy(node)
        raise
    return node


def destroy(node: PgNode) -> None:
    """Stops the cluster by its postmaster's PID (fast shutdown) and removes its directory."""
    if node.pid is not None:
        stop_pid(node.pid, signal.SIGINT, timeout=30)
        node.pid = None
    shutil.rmtree(node.base, ignore_errors=True)
