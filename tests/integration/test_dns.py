"""The authoritative DNS server against real `dig` (docs/architecture.md, "DNS"), over UDP
and TCP.

Most tests run dns_test_server (tests/unit/dns/dns_server_main.cc), which serves a fixed zone
from a JSON file on 127.0.0.1 and a free port and prints `ready <port>`; SIGHUP re-reads the file
and prints `reloaded <serial>`. The last test runs the real daemon with --dns-port and checks
that allocating and releasing an IP through the admin API changes dig's answer at once.

Run from the repo root:
    DNS_TEST_SERVER=build/tests/unit/dns_test_server /usr/bin/python3 -m pytest -q \
        tests/integration/test_dns.py
A missing dns_test_server or dig makes the tests fail, never skip (dig: apt-get install
dnsutils).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness

REPO_ROOT = Path(__file__).resolve().parents[2]

ZONE = {
    "domain": "drawbridge.test",
    "ns_name": "ns1.drawbridge.test",
    "ns_addresses": ["127.0.0.53", "fd00::53"],
    "serial": 42,
    "ttl": 60,
    "public_ips": {
        "pgapp": ["127.0.10.1", "fd5b:d8e0:7a1f::1"],
        "v4only": ["127.0.10.2"],
        "many": [f"10.1.0.{i}" for i in range(1, 41)],
    },
    "internal_ips": {
        "pgapp": ["10.0.0.5", "fd00::5", "db.example.com"],
    },
}


# ------------------------------------------------------------------------------ dig


@dataclass
class Record:
    name: str
    ttl: int
    klass: str
    type: str
    rdata: str


@dataclass
class DigResult:
    text: str
    status: str = ""
    opcode: str = ""
    id: int = 0
    flags: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    edns: str | None = None  # the "; EDNS: ..." line
    question: list[str] = field(default_factory=list)
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    transport: str = ""  # "UDP" or "TCP", from the ";; SERVER:" line

    def rdatas(self, rtype: str) -> list[str]:
        return [r.rdata for r in self.answer if r.type == rtype]


def dig_bin() -> str:
    path = shutil.which("dig")
    assert path, "dig not found: apt-get install dnsutils"
    return path


def parse_dig(text: str) -> DigResult:
    r = DigResult(text=text)
    section = None
    for line in text.splitlines():
        m = re.match(r";; ->>HEADER<<- opcode: (\w+), status: (\w+), id: (\d+)", line)
        if m:
            r.opcode, r.status, r.id = m.group(1), m.group(2), int(m.group(3))
            continue
        m = re.match(r";; flags:([^;]*); (.*)", line)
        if m:
            r.flags = set(m.group(1).split())
            for part in m.group(2).split(","):
                k, v = part.strip().split(":")
                r.counts[k.strip()] = int(v)
            continue
        if line.startswith("; EDNS:"):
            r.edns = line
            continue
        m = re.match(r";; SERVER: .*\((UDP|TCP)\)", line)
        if m:
            r.transport = m.group(1)
            continue
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            section = m.group(1)
            continue
        if not line.strip():
            section = None
            continue
        if section == "QUESTION":
            r.question.append(line.lstrip(";"))
        elif section in ("ANSWER", "AUTHORITY", "ADDITIONAL") and not line.startswith(";"):
            parts = line.split(None, 4)
            rec = Record(parts[0], int(parts[1]), parts[2], parts[3],
                         parts[4] if len(parts) > 4 else "")
            getattr(r, section.lower()).append(rec)
    return r


def dig(port: int, name: str, rtype: str = "A", *opts: str) -> DigResult:
    cmd = [dig_bin(), "@127.0.0.1", "-p", str(port), name, rtype, "+time=5", "+tries=1", *opts]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    r = parse_dig(out.stdout)
    assert r.status, f"no answer parsed from dig:\n{out.stdout}"
    return r


# ------------------------------------------------------------------------------ the server


def dns_server_bin() -> Path:
    p = Path(os.environ.get("DNS_TEST_SERVER", REPO_ROOT / "build/tests/unit/dns_test_server"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    assert p.is_file() and os.access(p, os.X_OK), \
        f"dns_test_server not found at {p} (build it, or set DNS_TEST_SERVER)"
    return p



class DnsServer:
    """dns_test_server on `address` and a free port; inside network namespace `netns` when
    given (`ip netns exec` execs it, so the PID is the server's own)."""

    def __init__(self, zone: dict, *args: str, address: str = "127.0.0.1",
                 netns: str | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="drawbridge-dns-"))
        self.zone_file = self.dir / "zone.json"
        self.zone_file.write_text(json.dumps(zone))
        wrapper = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            [*wrapper, str(dns_server_bin()), "--zone", str(self.zone_file), "--address",
             address, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=open(self.dir / "stderr", "wb"), text=True)
        line = self.proc.stdout.readline()  # blocks until ready, or EOF if it died
        m = re.match(r"ready (\d+)$", line.strip())
        assert m, f"dns_test_server did not get ready: {line!r}\n{self.stderr()}"
        self.port = int(m.group(1))

    def stderr(self) -> str:
        return (self.dir / "stderr").read_text(errors="replace")

    def reload(self, zone: dict) -> None:
        self.zone_file.write_text(json.dumps(zone))
        self.proc.send_signal(signal.SIGHUP)
        line = self.proc.stdout.readline().strip()
        assert line == f"reloaded {zone['serial']}", line

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            harness.stop_pid(self.proc.pid)
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = DnsServer(ZONE)
    yield s
    assert s.alive(), f"dns_test_server died:\n{s.stderr()}"
    s.stop()


@pytest.fixture(params=["udp", "tcp"])
def transport(request) -> tuple[str, ...]:
    return ("+tcp",) if request.param == "tcp" else ()


def expect_transport(r: DigResult, transport: tuple[str, ...]) -> None:
    assert r.transport == ("TCP" if transport else "UDP"), r.text


# ------------------------------------------------------------------------------ answers


def test_a(server, transport):
    r = dig(server.port, "pgapp.drawbridge.test", "A", *transport)
    expect_transport(r, transport)
    assert r.status == "NOERROR"
    assert {"qr", "aa"} <= r.flags and "ra" not in r.flags and "tc" not in r.flags
    assert [(a.name, a.ttl, a.klass, a.type, a.rdata) for a in r.answer] == \
        [("pgapp.drawbridge.test.", 60, "IN", "A", "127.0.10.1")]
    assert r.counts == {"QUERY": 1, "ANSWER": 1, "AUTHORITY": 0, "ADDITIONAL": 1}  # + OPT


def test_aaaa(server, transport):
    r = dig(server.port, "pgapp.drawbridge.test", "AAAA", *transport)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert r.rdatas("AAAA") == ["fd5b:d8e0:7a1f::1"]


def test_any_is_a_and_aaaa(server, transport):
    r = dig(server.port, "pgapp.drawbridge.test", "ANY", *transport)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert sorted((a.type, a.rdata) for a in r.answer) == \
        [("A", "127.0.10.1"), ("AAAA", "fd5b:d8e0:7a1f::1")]


def test_soa_at_the_apex(server, transport):
    r = dig(server.port, "drawbridge.test", "SOA", *transport)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert [(a.name, a.ttl, a.type) for a in r.answer] == [("drawbridge.test.", 60, "SOA")]
    assert r.answer[0].rdata.split() == \
        ["ns1.drawbridge.test.", "hostmaster.drawbridge.test.", "42", "3600", "600", "604800", "60"]


def test_ns_at_the_apex_with_glue(server, transport):
    r = dig(server.port, "drawbridge.test", "NS", *transport)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert [(a.name, a.type, a.rdata) for a in r.answer] == \
        [("drawbridge.test.", "NS", "ns1.drawbridge.test.")]
    assert sorted((a.name, a.type, a.rdata) for a in r.additional) == [
        ("ns1.drawbridge.test.", "A", "127.0.0.53"),
        ("ns1.drawbridge.test.", "AAAA", "fd00::53"),
    ]


def test_nxdomain_with_soa(server, transport):
    r = dig(server.port, "nope.drawbridge.test", "A", *transport)
    assert r.status == "NXDOMAIN" and "aa" in r.flags
    assert r.answer == []
    assert [(a.name, a.type) for a in r.authority] == [("drawbridge.test.", "SOA")]
    assert r.authority[0].rdata.split()[2] == "42"


def test_nodata_with_soa(server, transport):
    r = dig(server.port, "v4only.drawbridge.test", "AAAA", *transport)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert r.answer == []
    assert [(a.name, a.type) for a in r.authority] == [("drawbridge.test.", "SOA")]


def test_refused_outside_the_zone(server, transport):
    for name in ("example.com", "drawbridge.test.evil", "."):
        r = dig(server.port, name, "A", *transport)
        assert r.status == "REFUSED", r.text
        assert "aa" not in r.flags
        assert r.answer == [] and r.authority == []


def test_internal_names(server, transport):
    r = dig(server.port, "pgapp.internal", "A", *transport)
    assert r.status == "NOERROR" and "aa" in r.flags
    assert r.rdatas("A") == ["10.0.0.5"]  # the host-name machine is skipped
    r = dig(server.port, "pgapp.internal", "AAAA", *transport)
    assert r.rdatas("AAAA") == ["fd00::5"]
    r = dig(server.port, "nope.internal", "A", *transport)
    assert r.status == "NXDOMAIN"
    assert [(a.name, a.type) for a in r.authority] == [("internal.", "SOA")]


def test_case_insensitive_and_trailing_dot(server, transport):
    r = dig(server.port, "PgApp.DrawBridge.TEST.", "A", *transport)
    assert r.status == "NOERROR"
    assert r.rdatas("A") == ["127.0.10.1"]
    assert r.question[0].split()[0] == "PgApp.DrawBridge.TEST."  # echoed as sent


def test_edns_opt_is_echoed_with_our_size(server):
    r = dig(server.port, "pgapp.drawbridge.test", "A", "+bufsize=4096")
    assert r.edns is not None and "version: 0" in r.edns and "udp: 1232" in r.edns, r.text
    r = dig(server.port, "pgapp.drawbridge.test", "A", "+noedns")
    assert r.edns is None
    assert r.counts["ADDITIONAL"] == 0


def test_edns_unknown_version_is_badvers(server):
    r = dig(server.port, "pgapp.drawbridge.test", "A", "+edns=1", "+noednsnegotiation")
    assert r.status == "BADVERS", r.text


def test_other_opcodes_are_notimp(server):
    r = dig(server.port, "drawbridge.test", "SOA", "+opcode=status")
    assert r.status == "NOTIMP", r.text


# ------------------------------------------------------------------------------ truncation


def test_truncated_over_udp_without_edns(server):
    # 40 A records (678 bytes) do not fit in 512.
    r = dig(server.port, "many.drawbridge.test", "A", "+noedns", "+ignore")
    assert r.transport == "UDP"
    assert "tc" in r.flags and r.status == "NOERROR"
    assert r.counts["ANSWER"] == 0


def test_truncated_with_a_small_bufsize(server):
    r = dig(server.port, "many.drawbridge.test", "A", "+bufsize=600", "+ignore")
    assert "tc" in r.flags and r.counts["ANSWER"] == 0
    r = dig(server.port, "many.drawbridge.test", "A", "+bufsize=1232", "+ignore")
    assert "tc" not in r.flags and len(r.answer) == 40


def test_dig_retries_over_tcp_after_tc(server):
    r = dig(server.port, "many.drawbridge.test", "A", "+bufsize=512")
    assert "Truncated, retrying in TCP mode" in r.text
    assert r.transport == "TCP"
    assert "tc" not in r.flags
    assert sorted(r.rdatas("A")) == sorted(ZONE["public_ips"]["many"])


# ------------------------------------------------------------------------------ robustness


def _udp_raw(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        return s.recv(65535)


def test_malformed_queries_get_formerr_and_the_server_lives(server):
    header = struct.pack(">HHHHHH", 0xabcd, 0x0100, 1, 0, 0, 0)
    bad = [
        header + b"\xc0\x0c\x00\x01\x00\x01",                # pointer to itself
        header + b"\x01a\xc0\x0c\x00\x01\x00\x01",           # loop
        header + b"\xc0\x20\x00\x01\x00\x01",                # forward, out of range
        header + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # 64-byte label
        header + (b"\x3f" + b"x" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # over 255 bytes
        header + b"\x05pgapp",                                # truncated
        struct.pack(">HHHHHH", 0xabcd, 0x0100, 2, 0, 0, 0),  # QDCOUNT 2, nothing
    ]
    for payload in bad:
        reply = _udp_raw(server.port, payload)
        assert len(reply) == 12, payload
        rid, flags = struct.unpack(">HH", reply[:4])
        assert rid == 0xabcd and flags & 0x8000 and flags & 0xf == 1, (payload, reply)
    # A response and a runt get nothing; the next query is answered.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(struct.pack(">HHHHHH", 1, 0x8000, 0, 0, 0, 0), ("127.0.0.1", server.port))
        s.sendto(b"\x00\x01\x02", ("127.0.0.1", server.port))
        s.sendto(header[:2] + b"\x01\x00" + header[4:] +
                 b"\x05pgapp\x0adrawbridge\x04test\x00\x00\x01\x00\x01",
                 ("127.0.0.1", server.port))
        reply = s.recv(65535)
        assert reply[:2] == b"\xab\xcd" and reply[3] & 0xf == 0
    assert server.alive()
    assert dig(server.port, "pgapp.drawbridge.test").rdatas("A") == ["127.0.10.1"]


def test_tcp_several_queries_on_one_connection(server):
    def query(qid: int) -> bytes:
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + \
            b"\x05pgapp\x0adrawbridge\x04test\x00\x00\x01\x00\x01"
        return struct.pack(">H", len(q)) + q

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"".join(query(i) for i in range(1, 6)))
        f = s.makefile("rb")
        for i in range(1, 6):
            (n,) = struct.unpack(">H", f.read(2))
            msg = f.read(n)
            assert struct.unpack(">H", msg[:2])[0] == i
            assert msg.endswith(bytes([127, 0, 10, 1]))


def test_a_new_zone_is_answered_at_once():
    s = DnsServer(ZONE)
    try:
        assert dig(s.port, "pgapp.drawbridge.test").rdatas("A") == ["127.0.10.1"]
        zone = json.loads(json.dumps(ZONE))
        zone["serial"] = 43
        zone["public_ips"]["pgapp"] = ["127.0.10.7"]
        zone["public_ips"]["fresh"] = ["127.0.10.8"]
        s.reload(zone)
        assert dig(s.port, "pgapp.drawbridge.test").rdatas("A") == ["127.0.10.7"]
        assert dig(s.port, "fresh.drawbridge.test", "A", "+tcp").rdatas("A") == ["127.0.10.8"]
        assert dig(s.port, "drawbridge.test", "SOA").answer[0].rdata.split()[2] == "43"
    finally:
        s.stop()


def test_idle_tcp_connection_is_closed():
    s = DnsServer(ZONE, "--idle-ms", "200")
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            assert c.recv(1) == b""  # closed by the server, not by our timeout
    finally:
        s.stop()


# ------------------------------------------------------------------------------ the daemon


def _daemon_has_dns_port() -> bool:
    bin_ = harness.drawbridge_bin()
    if not bin_.is_file():
        return False
    try:
        out = subprocess.run([str(bin_), "serve", "--help"], capture_output=True, text=True,
                             timeout=30)
    except OSError:  # e.g. being relinked right now
        return False
    return "--dns-port" in out.stdout + out.stderr


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_daemon_allocation_and_release_change_the_answer_at_once():
    if not _daemon_has_dns_port():
        pytest.skip("drawbridge serve has no --dns-port yet (the DNS server is not wired in)")
    work = Path(tempfile.mkdtemp(prefix="drawbridge-dns-daemon-"))
    api_port, dns_port = harness.free_port(), harness.free_port()
    data = work / "data"
    log = work / "daemon.log"
    proc = subprocess.Popen(
        [str(harness.drawbridge_bin()), "serve", "--data-dir", str(data), "--api-port",
         str(api_port), "--dns-port", str(dns_port), "--domain", "drawbridge.test",
         "--v4-pool", "127.0.30.0/24", "--v6-pool", "fd00:db:3::/64", "--threads", "1",
         "--drain-timeout-ms", "500"],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        harness.wait_until(lambda: b"drawbridge: ready" in log.read_bytes()
                           or proc.poll() is not None, timeout=20, what="daemon ready")
        assert proc.poll() is None, log.read_text()

        def call(method: str, path: str, body: dict | None = None):
            token = (data / "admin.token").read_text().strip()
            req = urllib.request.Request(
                f"http://127.0.0.1:{api_port}{path}", method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}"})
            try:
                with _OPENER.open(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert call("POST", "/v1/apps", {"name": "dnsapp"})[0] == 201
        # A known app without addresses: NODATA.
        r = dig(dns_port, "dnsapp.drawbridge.test", "A")
        assert r.status in ("NOERROR", "NXDOMAIN") and r.answer == []
        status, v4 = call("POST", "/v1/apps/dnsapp/ips", {"type": "v4"})
        assert status == 201, v4
        status, v6 = call("POST", "/v1/apps/dnsapp/ips", {"type": "v6"})
        assert status == 201, v6
        # No sleep: the answer right after the API call must carry the new addresses.
        assert dig(dns_port, "dnsapp.drawbridge.test", "A").rdatas("A") == [v4["address"]]
        assert dig(dns_port, "dnsapp.drawbridge.test", "AAAA", "+tcp").rdatas("AAAA") == \
            [v6["address"]]
        status, m = call("POST", "/v1/apps/dnsapp/machines", {"address": "10.9.8.7"})
        assert status == 201, m
        assert dig(dns_port, "dnsapp.internal", "A").rdatas("A") == ["10.9.8.7"]
        status, _ = call("DELETE", f"/v1/apps/dnsapp/ips/{v4['address']}")
        assert status == 200
        r = dig(dns_port, "dnsapp.drawbridge.test", "A")
        assert r.answer == [] and r.status == "NOERROR", r.text
        assert [a.type for a in r.authority] == ["SOA"]
        assert dig(dns_port, "dnsapp.drawbridge.test", "AAAA").rdatas("AAAA") == [v6["address"]]
    finally:
        if proc.poll() is None:
            harness.stop_pid(proc.pid)
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------ other addresses
#
# An edge has addresses besides loopback, and a query may arrive at any of them. These tests
# make a network namespace of their own (so no traffic leaves this machine, and no address of
# the host changes) with a veth pair whose end `v0` holds two addresses of each family from the
# documentation ranges (192.0.2.0/24, 2001:db8::/32), run the server inside it and ask with
# `dig -b SOURCE @DESTINATION` inside it too. They need root, as in CI; without it they fail.

NS_V4 = ("192.0.2.1", "192.0.2.2")
NS_V6 = ("2001:db8::1", "2001:db8::2")


def _ip(*args: str) -> None:
    harness.run(["ip", *args], timeout=30)


@pytest.fixture(scope="module")
def netns():
    assert os.geteuid() == 0, "these tests make a network namespace: run them as root"
    assert shutil.which("ip"), "ip not found: apt-get install iproute2"
    name = f"dbdns-{os.getpid()}-{os.urandom(3).hex()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "link", "set", "v0", "up")
        _ip("-n", name, "link", "set", "v1", "up")
        for a in NS_V4:
            _ip("-n", name, "addr", "add", f"{a}/24", "dev", "v0")
        for a in NS_V6:
            _ip("-n", name, "-6", "addr", "add", f"{a}/64", "dev", "v0", "nodad")
        yield name
    finally:
        harness.run(["ip", "netns", "del", name], timeout=30, check=False)


def dig_in(netns: str, server: str, port: int, name: str, rtype: str, *opts: str,
           source: str | None = None) -> DigResult:
    """dig inside `netns`, from `source` (when given) to `server`; 2 s and one try, so a
    dropped answer fails fast with dig's own explanation in the message."""
    cmd = ["ip", "netns", "exec", netns, dig_bin(), f"@{server}", "-p", str(port), name,
           rtype, "+time=2", "+tries=1", *opts]
    if source:
        cmd[5:5] = ["-b", source]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    r = parse_dig(out.stdout)
    assert r.status, f"no answer parsed from dig:\n{out.stdout}"
    return r


@pytest.fixture(scope="module")
def ns_server(netns):
    s = DnsServer(ZONE, address="::", netns=netns)
    yield s
    assert s.alive(), f"dns_test_server died:\n{s.stderr()}"
    s.stop()


def test_internal_names_are_refused_to_non_loopback_sources(netns, ns_server, transport):
    """Item 3 of issue 12: `<app>.internal` is the machines' private addresses; a source
    outside loopback (the default set) gets REFUSED, without AA and without a hint whether
    the app exists, over UDP and TCP, IPv4 and IPv6. Loopback gets the answer; public names are
    answered to everyone."""
    p = ns_server.port
    for src in (NS_V4[0], NS_V6[0]):
        for name in ("pgapp.internal", "nope.internal", "internal"):
            r = dig_in(netns, src, p, name, "A", *transport, source=src)
            expect_transport(r, transport)
            assert r.status == "REFUSED", f"{name} from {src}:\n{r.text}"
            assert "aa" not in r.flags and r.answer == [] and r.authority == [], r.text
        r = dig_in(netns, src, p, "pgapp.drawbridge.test", "A", *transport, source=src)
        assert r.status == "NOERROR" and r.rdatas("A") == ["127.0.10.1"], r.text
    for src in ("127.0.0.1", "::1"):
        r = dig_in(netns, src, p, "pgapp.internal", "A", *transport, source=src)
        assert r.status == "NOERROR" and r.rdatas("A") == ["10.0.0.5"], f"from {src}:\n{r.text}"


def test_udp_answers_come_from_the_address_asked(netns, ns_server):
    """Item 4 of issue 12: over UDP, a query sent to an address that is not the one the
    kernel would pick for the way back (the second address of an interface, or any address
    when the client is on loopback) is answered from the address it was sent to; dig drops an
    answer from any other ("reply from unexpected source"). IPv4 and IPv6 on one dual-stack
    socket."""
    p = ns_server.port
    cases = [(NS_V4[0], NS_V4[1]), (NS_V4[1], NS_V4[0]), ("127.0.0.1", NS_V4[1]),
             (NS_V6[0], NS_V6[1]), (NS_V6[1], NS_V6[0]), ("::1", NS_V6[1]),
             ("127.0.0.1", "127.0.0.2")]
    for src, dst in cases:
        r = dig_in(netns, dst, p, "pgapp.drawbridge.test", "AAAA", "+notcp", source=src)
        assert r.transport == "UDP", r.text
        assert "unexpected source" not in r.text, r.text
        assert r.status == "NOERROR" and r.rdatas("AAAA") == ["fd5b:d8e0:7a1f::1"], \
            f"{src} -> {dst}:\n{r.text}"


def test_daemon_dns_internal_from_flag(netns):
    """`drawbridge serve --dns-internal-from 192.0.2.0/24` inside the namespace: a source in
    that network gets `<app>.internal` (over UDP, from the address asked), one outside it
    (an IPv6 address here) gets REFUSED, loopback still gets the answer, and the public name is
    answered to all. The CLI reaches the daemon through its Unix socket (--api-port 0)."""
    work = Path(tempfile.mkdtemp(prefix="drawbridge-dns-ns-"))
    data = work / "data"
    log = work / "daemon.log"
    dns_port = 53  # the namespace is ours: every port is free
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, str(harness.drawbridge_bin()), "serve", "--data-dir",
         str(data), "--api-port", "0", "--dns-port", str(dns_port), "--domain",
         "drawbridge.test", "--v4-pool", "127.0.31.0/24", "--v6-pool", "fd00:db:31::/64",
         "--threads", "1", "--drain-timeout-ms", "500", "--dns-internal-from", "192.0.2.0/24"],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        harness.wait_until(lambda: b"drawbridge: ready" in log.read_bytes()
                           or proc.poll() is not None, timeout=20, what="daemon ready")
        assert proc.poll() is None, log.read_text()

        def cli(*args: str) -> None:
            harness.run([str(harness.drawbridge_bin()), *args, "--data-dir", str(data)],
                        env=harness.cli_env(), stdin=subprocess.DEVNULL)

        cli("apps", "create", "nsapp")
        cli("machines", "add", "10.0.0.7", "-a", "nsapp")
        cli("ips", "allocate-v4", "--yes", "-a", "nsapp")
        r = dig_in(netns, NS_V4[1], dns_port, "nsapp.internal", "A", "+notcp", source=NS_V4[0])
        assert r.status == "NOERROR" and r.rdatas("A") == ["10.0.0.7"], r.text
        r = dig_in(netns, NS_V4[0], dns_port, "nsapp.internal", "A", "+tcp", source=NS_V4[0])
        assert r.rdatas("A") == ["10.0.0.7"], r.text
        r = dig_in(netns, "127.0.0.1", dns_port, "nsapp.internal", "A", source="127.0.0.1")
        assert r.rdatas("A") == ["10.0.0.7"], r.text
        for transport in ("+notcp", "+tcp"):
            r = dig_in(netns, NS_V6[1], dns_port, "nsapp.internal", "A", transport,
                       source=NS_V6[0])
            assert r.status == "REFUSED" and r.answer == [], r.text
            r = dig_in(netns, NS_V6[1], dns_port, "nsapp.drawbridge.test", "A", transport,
                       source=NS_V6[0])
            assert r.status == "NOERROR" and len(r.rdatas("A")) == 1, r.text
        assert "internal answered to loopback, 192.0.2.0/24" in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            harness.stop_pid(proc.pid)
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def test_daemon_refuses_a_bad_dns_internal_from(tmp_path):
    """A value that is not a network stops `drawbridge serve` at once, naming it."""
    out = subprocess.run(
        [str(harness.drawbridge_bin()), "serve", "--data-dir", str(tmp_path / "data"),
         "--api-port", "0", "--dns-port", "0", "--dns-internal-from", "192.0.2.0/33"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 1, out
    assert '--dns-internal-from: network "192.0.2.0/33"' in out.stderr, out.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was made
