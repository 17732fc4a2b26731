"""What `config validate` and `deploy` say about a fly.toml (docs/fly-toml.md), through the CLI
against the real daemon (`drawbridge serve`): every warning names file:line; enforced connection
limits pass without a word, and a concurrency type the edge does not count warns; UTF-8 comments and strings and a
byte order mark are accepted; a config that serves nothing, and raw TCP on the shared IPv4
address alone, warn; the template `config save` writes for a new app deploys without a warning
and serves pg_tls on 5432.

Each test creates its own app on one shared daemon. Nothing here skips: a missing binary fails.

Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q tests/integration/test_config_warnings.py
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness
import pgwire as w
from harness import free_port, wait_until

DOMAIN = "drawbridge.test"
V4_POOL = "127.0.120.0/24"
V6_POOL = "fd00:db:12::/64"
SHARED_V4 = "127.0.120.1"


@pytest.fixture(scope="module")
def daemon():
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-config-warnings-"))
    d = harness.DrawbridgeDaemon(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=DOMAIN)
    with harness.running(d):
        yield d


@pytest.fixture(autouse=True)
def _daemon_still_alive(request):
    yield
    if "daemon" in request.fixturenames:
        harness.fail_if_dead(request.getfixturevalue("daemon"))


def new_app(d: harness.DrawbridgeDaemon, name: str) -> str:
    p = d.cli("apps", "create", name)
    assert p.stdout == f"New app created: {name}\n", p.stdout + p.stderr
    return name


def write(d: harness.DrawbridgeDaemon, name: str, data: str | bytes) -> Path:
    path = d.workdir / name
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def warnings_of(p: subprocess.CompletedProcess) -> list[str]:
    """The CLI prints each warning as one `Warning: ` line on stderr, and nothing else there."""
    lines = p.stderr.splitlines()
    assert all(ln.startswith("Warning: ") for ln in lines), p.stderr
    return [ln[len("Warning: "):] for ln in lines]


def assert_file_and_line(warnings: list[str], path: Path | str) -> None:
    for text in warnings:
        assert re.match(rf"{re.escape(str(path))}:[1-9][0-9]*: ", text), (
            f"a warning without {path}:line: {text!r}")


def validate(d: harness.DrawbridgeDaemon, app: str, path: Path) -> list[str]:
    p = d.cli("config", "validate", "-a", app, "-c", str(path), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == "✓ Configuration is valid\n", p.stdout + p.stderr
    return warnings_of(p)


def deploy(d: harness.DrawbridgeDaemon, app: str, path: Path | str) -> list[str]:
    p = d.cli("deploy", "-a", app, "-c", str(path), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.fullmatch(r"Release v\d+ created\n", p.stdout), p.stdout + p.stderr
    return warnings_of(p)


def services_section(internal_port: int, port: int, handlers: list[str]) -> str:
    quoted = ", ".join(f'"{h}"' for h in handlers)
    return ("[[services]]\n"
            f"  internal_port = {internal_port}\n"
            '  protocol = "tcp"\n'
            "\n"
            "  [[services.ports]]\n"
            f"    handlers = [{quoted}]\n"
            f"    port = {port}\n")


# ------------------------------------------------------------------------------ the tests


def test_concurrency_limits_are_enforced_and_requests_warn_with_file_and_line(daemon):
    """[services.concurrency] hard_limit and soft_limit on connections are enforced by the edge
    now: validate and deploy accept them without a word. type = "requests" warns at its line
    that the edge counts connections (no IP: nothing served)."""
    d = daemon
    app = new_app(d, "limits")

    def toml(kind: str) -> Path:
        return write(d, f"limits-{kind}.toml", f'app = "{app}"\n\n'
                     "[[services]]\n"
                     "  internal_port = 5432\n"
                     '  protocol = "tcp"\n'
                     "  [services.concurrency]\n"
                     f'    type = "{kind}"\n'
                     "    hard_limit = 25\n"
                     "    soft_limit = 20\n"
                     "  [[services.ports]]\n"
                     '    handlers = ["pg_tls"]\n'
                     f"    port = {free_port()}\n")

    path = toml("connections")
    assert validate(d, app, path) == []
    assert deploy(d, app, path) == []
    path = toml("requests")
    expected = [f"{path}:7: services[0].concurrency.type: this edge counts connections, not "
                "requests: soft_limit and hard_limit apply to each machine's open connections"]
    assert validate(d, app, path) == expected
    assert deploy(d, app, path) == expected


def test_utf8_comments_and_strings_are_accepted(daemon):
    """TOML is UTF-8: comments, strings and quoted keys may hold any text. The release keeps the
    text byte for byte."""
    d = daemon
    app = new_app(d, "utf8")
    text = harness.fly_toml_fixture("utf8_comments_and_strings").replace(
        'app = "my-pg"', f'app = "{app}"')
    text = text.replace("port = 5432\n", f"port = {free_port()}\n")
    assert "é" in text and "東京" in text, text
    path = write(d, "utf8.toml", text)
    warnings = validate(d, app, path)
    assert_file_and_line(warnings, path)
    assert not any("ASCII" in x or "UTF-8" in x for x in warnings), warnings
    deploy(d, app, path)
    shown = d.cli("config", "show", "-a", app).stdout
    assert shown.rstrip("\n") == text.rstrip("\n"), shown


def test_a_byte_order_mark_is_accepted_and_lines_stay(daemon):
    d = daemon
    app = new_app(d, "bom")
    text = "\ufeff" + f'app = "{app}"\n' + services_section(5432, free_port(), ["pg_tls"]) + \
        "  flavour = 1\n"
    path = write(d, "bom.toml", text)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    # The mark is skipped, not taken as part of the key `app`; lines count as written.
    assert validate(d, app, path) == [
        f"{path}:9: services[0].ports[0].flavour: unknown key; kept as written"]
    assert deploy(d, app, path) == [
        f"{path}:9: services[0].ports[0].flavour: unknown key; kept as written"]


def test_an_empty_config_warns_that_nothing_is_served(daemon):
    d = daemon
    app = new_app(d, "empty")
    assert deploy(d, app, "/dev/null") == [
        "/dev/null:1: services: no [[services]]: nothing will be served for this app"]


def test_raw_tcp_on_the_shared_ipv4_alone_warns(daemon):
    """On the shared address only TLS SNI (or pg_tls's options=app=) tells apps apart: a raw TCP
    port there warns at its line until the app has an IPv4 of its own."""
    d = daemon
    app = new_app(d, "rawtcp")
    p = d.cli("ips", "allocate-v4", "--shared", "-a", app)
    assert SHARED_V4 in p.stdout, p.stdout + p.stderr
    port, tls_port = free_port(), free_port()
    path = write(d, "raw.toml", f'app = "{app}"\n\n' + services_section(6379, port, []) +
                 "\n" + services_section(6380, tls_port, ["tls"]))
    expected = [f"{path}:7: services[0].ports[0]: raw TCP (no \"tls\" or \"pg_tls\" handler) on "
                f"the shared IPv4 {SHARED_V4}, the app's only IPv4: that address cannot tell "
                f"apps apart without TLS SNI, so connections to it on port {port} are refused; "
                "allocate a dedicated IPv4 with `drawbridge ips allocate-v4`"]
    assert validate(d, app, path) == expected
    assert deploy(d, app, path) == expected
    # With a dedicated IPv4 the address says which app: no warning.
    d.cli("ips", "allocate-v4", "--yes", "-a", app)
    ips = json.loads(d.cli("ips", "list", "-a", app, "--json").stdout)
    assert sorted(i["type"] for i in ips) == ["shared_v4", "v4"], ips
    assert validate(d, app, path) == []


def test_the_saved_template_deploys_without_warnings_and_serves_pg_tls_on_5432(daemon):
    """`config save` for a new app writes what this edge serves (the guide's pg_tls service on
    5432) and no line its own deploy warns about; deployed as saved, the edge answers pg_tls
    there (SSLRequest, then TLS with the app's certificate)."""
    d = daemon
    app = new_app(d, "saved")
    d.cli("machines", "add", "127.0.0.1", "-a", app)
    d.cli("ips", "allocate-v4", "--yes", "-a", app)
    v4 = next(i["address"] for i in json.loads(d.cli("ips", "list", "-a", app, "--json").stdout)
              if i["type"] == "v4")
    path = d.workdir / "saved.toml"
    p = d.cli("config", "save", "-a", app, "-c", str(path))
    assert p.stdout == f"Wrote config file {path}\n", p.stdout + p.stderr
    saved = path.read_text()
    assert "primary_region" not in saved and '"http"' not in saved, saved
    assert validate(d, app, path) == []
    assert deploy(d, app, path) == []
    listed = d.cli("services", "list", "-a", app).stdout
    assert "5432 => 5432 [PG_TLS]" in listed, listed

    def answers_pg_tls() -> bool:
        try:
            with w.ssl_request_tls(v4, 5432, server_hostname=f"{app}.{DOMAIN}", timeout=5) as c:
                return c.sock.version() in ("TLSv1.3", "TLSv1.2")
        except (OSError, w.PgWireError):
            return False

    wait_until(answers_pg_tls, timeout=15, what=f"pg_tls on {v4}:5432")
