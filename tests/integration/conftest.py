"""Session fixtures: a real PostgreSQL 15, test certificates, fake PROXY-protocol machines and
one running drawbridge edge in front of them.

Run from the repo root (DRAWBRIDGE_BIN defaults to build/src/drawbridge):
    DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q tests/integration
A missing binary makes every edge test fail (never skip).
DRAWBRIDGE_SLOW_TESTS=0 skips the tests marked `slow` (1 GB copy, pgbench, memory under a
stalled reader), e.g. under ASan where they are slow and RSS is not meaningful.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import harness
from harness import ClosingMachine, EdgeProcess, FakeMachine, free_port, fly_toml

PG_PASSWORD = "postgres-superuser-secret"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; skipped when DRAWBRIDGE_SLOW_TESTS=0")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DRAWBRIDGE_SLOW_TESTS", "1") != "0":
        return
    skip = pytest.mark.skip(reason="DRAWBRIDGE_SLOW_TESTS=0")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _clean_client_home():
    yield
    harness.remove_client_home()


@pytest.fixture(scope="session")
def pg():
    server = harness.start_postgres(PG_PASSWORD)
    try:
        yield server
    finally:
        harness.stop_postgres(server)


@pytest.fixture(scope="session")
def certs():
    c = harness.make_certs()
    yield c
    shutil.rmtree(c.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def fake_v1():
    """Machine behind the ["proxy_proto", "pg_tls"] port (PROXY v1)."""
    m = FakeMachine()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def fake_v2():
    """Machine behind the ["proxy_proto"] port with proxy_proto_options v2."""
    m = FakeMachine()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def closing_machine():
    """Machine behind the raw "say_and_close" port: answers and closes at once."""
    m = ClosingMachine(b"last words")
    yield m
    m.stop()


@pytest.fixture(scope="session")
def dead_port():
    """A port on 127.0.0.1 on which nothing listens (the unreachable machine)."""
    return free_port()


def edge_services(pg, fake_v1, fake_v2, closing_machine, dead_port
                  ) -> tuple[dict[str, int], list[dict]]:
    ports = {name: free_port() for name in
             ("pg_tls", "tls", "raw", "proxy_pg_tls", "proxy_v2", "say_and_close", "unreachable")}
    services = [
        dict(internal_port=pg.port, port=ports["pg_tls"], handlers=["pg_tls"]),
        dict(internal_port=pg.port, port=ports["tls"], handlers=["tls"]),
        dict(internal_port=pg.port, port=ports["raw"], handlers=[]),
        dict(internal_port=fake_v1.port, port=ports["proxy_pg_tls"],
             handlers=["proxy_proto", "pg_tls"]),
        dict(internal_port=fake_v2.port, port=ports["proxy_v2"], handlers=["proxy_proto"],
             proxy_v2=True),
        dict(internal_port=closing_machine.port, port=ports["say_and_close"], handlers=[]),
        dict(internal_port=dead_port, port=ports["unreachable"], handlers=["pg_tls"]),
    ]
    return ports, services


@pytest.fixture(scope="session")
def edge(pg, certs, fake_v1, fake_v2, closing_machine, dead_port):
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-edge-"))
    ports, services = edge_services(pg, fake_v1, fake_v2, closing_machine, dead_port)
    e = EdgeProcess(workdir, fly_toml(services), certs, ports)
    try:
        e.start()
    except AssertionError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(str(exc), pytrace=False)
    try:
        yield e
    finally:
        # Bounded: longer than the edge's default 30 s drain, then SIGKILL.
        rc = e.stop(timeout=45)
        tail = e.log_text()[-4000:]
        shutil.rmtree(workdir, ignore_errors=True)
    if rc != 0:
        pytest.fail(f"drawbridge exited with {rc} after SIGTERM (want 0)\nstderr tail:\n{tail}",
                    pytrace=False)


@pytest.fixture(autouse=True)
def _edge_still_alive(request):
    """After every test that used the edge, the edge must still be running: a crash is
    reported against the test that caused it, with the tail of its stderr."""
    yield
    if "edge" not in request.fixturenames:
        return
    e = request.getfixturevalue("edge")
    if not e.alive():
        pytest.fail(f"drawbridge died (exit code {e.proc.returncode}) during this test\n"
                    f"stderr tail:\n{e.log_text()[-4000:]}", pytrace=False)


@pytest.fixture(autouse=True)
def _daemon_still_alive(request):
    """The same for a module's `daemon` fixture (a DrawbridgeDaemon), where it has one."""
    yield
    if "daemon" in request.fixturenames:
        harness.fail_if_dead(request.getfixturevalue("daemon"))
