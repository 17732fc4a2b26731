"""Secrets that lie around and input that should have been refused (issue 12, item 8 and R1-R3),
against the real daemon and CLI:

- `apps destroy` takes the app's certificates (and keys) with it; `certs remove` removes one, and
  the edge stops serving it at once; a restart with another --domain drops the built-in CA's
  certificates of the old one and keeps the operator's;
- state.db and its -wal and -shm are 0600, also when an older install left them 0644;
- `machines add` refuses addresses no connection can reach (0.0.0.0, 999.1.1.1, ...) and an
  address the app already has;
- every "not found" is worded one way (`app "ghost" not found`, also by `status -a ghost`);
- `serve --domain 'BAD DOMAIN'` and `deploy --image 'evil image:with spaces'` are refused.

Nothing here skips: a missing binary fails every test. Run from the repo root:
  DRAWBRIDGE_BIN=build/src/drawbridge /usr/bin/python3 -m pytest -q -p no:cacheprovider \\
      tests/integration/test_secrets_and_input.py
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import ssl
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness
import pgwire as w
from harness import free_port

DOMAIN = "drawbridge.test"
V4_POOL = "127.0.112.0/24"
V6_POOL = "fd00:db:112::/64"


# ------------------------------------------------------------------------------ helpers


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """The CLI's error contract: exit 1 and an `Error: <message>` line on stderr (the last)."""
    assert p.returncode == 1, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("Error: ")]
    assert lines, f"no 'Error: ' line on stderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr and "terminate called" not in p.stderr, p.stderr
    return lines[-1]


def new_daemon(prefix: str, domain: str = DOMAIN) -> harness.DrawbridgeDaemon:
    workdir = Path(tempfile.mkdtemp(prefix=f"drawbridge-it-{prefix}-"))
    return harness.DrawbridgeDaemon(workdir, v4_pool=V4_POOL, v6_pool=V6_POOL, domain=domain)


@pytest.fixture(scope="module")
def daemon():
    with harness.running(new_daemon("secrets")) as d:
        yield d


def cert_hosts(d: harness.DrawbridgeDaemon) -> dict[str, str]:
    """host -> source of every certificate `certs list --json` shows."""
    return {c["host"]: c["source"] for c in json.loads(d.cli("certs", "list", "--json").stdout)}


def stored_cert_keys(d: harness.DrawbridgeDaemon) -> list[str]:
    """The certs/ keys in state.db itself (read-only, beside the running daemon)."""
    db = sqlite3.connect(f"file:{d.data / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        return [k for (k,) in db.execute("SELECT key FROM kv WHERE key LIKE 'certs/%'")]
    finally:
        db.close()


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def create_app_with_address(d: harness.DrawbridgeDaemon, app: str) -> str:
    """An app with a dedicated IPv4 address (which brings it the CA's certificate)."""
    d.cli("apps", "create", app)
    out = d.cli("ips", "allocate-v4", "--yes", "-a", app, "--json").stdout
    return json.loads(out)["address"]


def served_der(address: str, port: int, host: str) -> bytes:
    """The certificate the edge presents to a pg_tls client asking for `host` by SNI."""
    with w.ssl_request_tls(address, port, server_hostname=host) as t:
        return t.sock.getpeercert(binary_form=True)


# ------------------------------------------------------------------------------ item 8: secrets


def test_destroying_an_app_takes_its_certificates_and_keys(daemon):
    d = daemon
    create_app_with_address(d, "doomed")
    host = f"doomed.{DOMAIN}"
    assert cert_hosts(d).get(host) == "ca", cert_hosts(d)
    assert f"certs/{host}" in stored_cert_keys(d)
    d.cli("apps", "destroy", "doomed", "--yes")
    assert host not in cert_hosts(d), "the destroyed app's certificate is still listed"
    assert f"certs/{host}" not in stored_cert_keys(d), "its key is still in state.db"
    line = one_error_line(d.cli("certs", "show", host, check=False))
    assert line == f'Error: certificate for "{host}" not found', line


def test_certs_remove_asks_then_removes_and_the_edge_stops_serving_it(daemon):
    d = daemon
    address = create_app_with_address(d, "certgone")
    host = f"certgone.{DOMAIN}"
    port = free_port()
    d.cli("machines", "add", "127.0.0.1", "-a", "certgone")
    status, body = d.api("POST", "/v1/apps/certgone/deploy",
                         {"toml": harness.pg_tls_fly_toml(5432, port, "certgone")})
    assert status == 201, body
    status, body = d.api("GET", f"/v1/certs/{host}")
    assert status == 200, body
    chain = json.loads(body)["cert_pem"]  # the leaf, then the CA
    end = "-----END CERTIFICATE-----"
    issued = ssl.PEM_cert_to_DER_cert(chain[:chain.index(end) + len(end)])
    assert served_der(address, port, host) == issued

    # flyctl's contract: without a terminal, --yes is required; nothing is removed.
    line = one_error_line(d.cli("certs", "remove", host, check=False))
    assert "yes flag must be specified when not running interactively" in line, line
    assert "--yes" in line, line
    assert host in cert_hosts(d)

    p = d.cli("certs", "remove", host, "--yes")
    assert p.stdout == f"Certificate {host} deleted\n", p.stdout
    assert host not in cert_hosts(d)
    assert f"certs/{host}" not in stored_cert_keys(d)
    # At once: the command returned after the edge was rebuilt, so no waiting here.
    assert served_der(address, port, host) != issued, "the removed certificate is still served"

    line = one_error_line(d.cli("certs", "remove", host, "--yes", check=False))
    assert line == f'Error: certificate for "{host}" not found', line
    status, body = d.api("DELETE", f"/v1/certs/{host}")
    assert status == 404 and json.loads(body) == {"error": f'certificate for "{host}" not found'}
    d.cli("apps", "destroy", "certgone", "--yes")


def test_state_db_and_its_wal_and_shm_are_owner_only(daemon):
    data = daemon.data
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        path = data / name
        assert path.exists(), f"{name} should exist while the daemon runs (WAL mode)"
        assert mode(path) == "0o600", f"{name} is {mode(path)}: it holds private keys"


def test_restart_with_another_domain_drops_the_old_ca_certificates(certs):
    d = new_daemon("domain", domain="old.test")
    with harness.running(d):
        create_app_with_address(d, "moving")
        d.cli("certs", "add", "other.drawbridge.test", "--cert", str(certs.other_cert),
              "--key", str(certs.other_key))
        assert cert_hosts(d) == {"moving.old.test": "ca", "other.drawbridge.test": "operator"}
        d.stop()
        # An older install made state.db 0644: the next start narrows it.
        os.chmod(d.data / "state.db", 0o644)
        d.args[d.args.index("--domain") + 1] = "new.test"
        d.start()
        # The old domain's CA certificate and key are gone (and said so in the log); the app has
        # one for the new domain; the operator's own certificate is theirs to remove.
        assert cert_hosts(d) == {"moving.new.test": "ca", "other.drawbridge.test": "operator"}
        assert "certs/moving.old.test" not in stored_cert_keys(d)
        assert "certificate for moving.old.test removed" in d.log(), d.log()[-3000:]
        assert mode(d.data / "state.db") == "0o600"


# ------------------------------------------------------------------------------ R1: machines add


@pytest.mark.parametrize("address,why", [
    ("0.0.0.0", "the unspecified address cannot be a machine"),
    ("::", "the unspecified address cannot be a machine"),
    ("999.1.1.1", "not an IPv4 address: four numbers from 0 to 255, separated by dots"),
    ("255.255.255.255", "the broadcast address cannot be a machine"),
    ("224.0.0.1", "a multicast address cannot be a machine"),
    ("ff02::1", "a multicast address cannot be a machine"),
])
def test_machines_add_refuses_an_address_no_connection_can_reach(daemon, address, why):
    d = daemon
    app = "badaddr"
    if app not in {a["name"] for a in json.loads(d.cli("apps", "list", "--json").stdout)}:
        d.cli("apps", "create", app)
    line = one_error_line(d.cli("machines", "add", address, "-a", app, check=False))
    assert line == f'Error: invalid machine address "{address}": {why}', line
    assert json.loads(d.cli("machines", "list", "-a", app, "--json").stdout) == []


def test_machines_add_refuses_an_address_the_app_already_has(daemon):
    d = daemon
    d.cli("apps", "create", "dupes")
    first = json.loads(d.cli("machines", "add", "10.0.0.5", "-a", "dupes", "--json").stdout)
    line = one_error_line(d.cli("machines", "add", "10.0.0.5", "-a", "dupes", check=False))
    assert line == (f'Error: machine address "10.0.0.5" is already in app "dupes" '
                    f'(machine {first["id"]})'), line
    machines = json.loads(d.cli("machines", "list", "-a", "dupes", "--json").stdout)
    assert [m["address"] for m in machines] == ["10.0.0.5"]
    d.cli("apps", "destroy", "dupes", "--yes")


# ------------------------------------------------------------------------------ R2: not found


def test_not_found_is_worded_one_way(daemon):
    d = daemon
    for args in (("status", "-a", "ghost"), ("machines", "list", "-a", "ghost"),
                 ("ips", "list", "-a", "ghost"), ("apps", "destroy", "ghost", "--yes")):
        line = one_error_line(d.cli(*args, check=False))
        assert line == 'Error: app "ghost" not found', (args, line)
    d.cli("apps", "create", "present")
    line = one_error_line(d.cli("machines", "remove", "nope", "-a", "present", check=False))
    assert line == 'Error: machine "nope" not found in app "present"', line
    line = one_error_line(d.cli("ips", "release", "127.0.112.250", "-a", "present", check=False))
    assert line == 'Error: IP address "127.0.112.250" not found in app "present"', line
    line = one_error_line(d.cli("certs", "show", "nope.example.com", check=False))
    assert line == 'Error: certificate for "nope.example.com" not found', line
    d.cli("apps", "destroy", "present", "--yes")


# ------------------------------------------------------------------------------ R3: --domain, --image


@pytest.mark.parametrize("domain,why", [
    ("BAD DOMAIN", '--domain "BAD DOMAIN" is not a DNS name'),
    ("bad_domain.test", '--domain "bad_domain.test" is not a DNS name'),
    ("Drawbridge.TEST.", '--domain "Drawbridge.TEST.": write it in lower case and without a '
                         "trailing dot: drawbridge.test"),
])
def test_serve_refuses_a_domain_that_is_no_dns_name(domain, why):
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-it-baddomain-"))
    data = workdir / "data"
    cmd = [str(harness.drawbridge_bin()), "serve", "--data-dir", str(data), "--api-port", "0",
           "--dns-port", "0", "--domain", domain, "--v4-pool", V4_POOL,
           "--v6-pool", V6_POOL]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=workdir)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        harness.stop_pid(proc.pid)
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"serve --domain {domain!r} was still running after 20 s:\n"
                    f"{out.decode(errors='replace')[-3000:]}", pytrace=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = out.decode(errors="replace")
    assert proc.returncode == 1, (proc.returncode, text)
    assert why in text, text
    assert "drawbridge: ready" not in text, text


def test_deploy_refuses_an_image_no_registry_could_have(daemon, tmp_path):
    d = daemon
    d.cli("apps", "create", "imaged")
    config = tmp_path / "fly.toml"
    config.write_text(harness.pg_tls_fly_toml(5432, free_port(), "imaged"))
    image = "evil image:with spaces"
    line = one_error_line(d.cli("deploy", "-a", "imaged", "-c", str(config), "--image", image,
                                check=False))
    assert line.startswith(f'Error: invalid image "{image}": the repository "evil image" must be '
                           "lower-case letters and digits"), line
    status, body = d.api("GET", "/v1/apps/imaged/releases")
    assert status == 200 and json.loads(body) == [], body
    # The grammar's own examples pass.
    d.cli("deploy", "-a", "imaged", "-c", str(config), "--image", "flyio/postgres:15")
    d.cli("apps", "destroy", "imaged", "--yes")
