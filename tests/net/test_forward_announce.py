"""``ironlb forward`` with an ``announce`` section, in the namespace lab: the
standalone data plane owns its listener addresses on the LAN (bound on ``lo``,
ARP answered by this node only), a client on the LAN reaches the backends
through it, a reload moves the set of owned VIPs, and SIGTERM releases them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ironlb.lab.netlab import Lab, LabHost
from tests.net.forward_helpers import forward_without_capability, start_forward
from tests.net.l2_helpers import CLIENT, probe_arp, wait_for

pytestmark = pytest.mark.root


# Answers every connection with its name, until killed.
NAMED_SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(64)
print("listening", flush=True)
while True:
    conn, _ = srv.accept()
    conn.sendall(sys.argv[3].encode())
    conn.close()
"""


def _config(vips: list[IPv4Address], backend: LabHost) -> str:
    listeners = "".join(
        f"  - address: {vip}\n    port: 8080\n    backends: ['{backend.ipv4}:9000']\n"
        for vip in vips
    )
    return f"listeners:\n{listeners}announce:\n  interfaces: [eth0]\n  garp: {{repeat: [0]}}\n"


def _lo_addresses(lab: Lab, node: LabHost) -> str:
    return lab.run(node, "ip", "-o", "addr", "show", "dev", "lo").stdout


@pytest.fixture
def backend_server(lab: Lab) -> Iterator[LabHost]:
    backend = lab.backends[0]
    proc = lab.popen(
        backend,
        sys.executable,
        "-c",
        NAMED_SERVER,
        str(backend.ipv4),
        "9000",
        backend.name,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "listening"
    yield backend
    proc.kill()
    proc.wait(5)


def test_forward_owns_announces_and_releases_its_vips(
    lab: Lab, backend_server: LabHost, tmp_path: Path
) -> None:
    node1, node2 = lab.nodes
    vip_a, vip_b = lab.vip(0), lab.vip(1)
    config = tmp_path / "lb.yaml"
    config.write_text(_config([vip_a], backend_server))
    proc = start_forward(lab, node1, config)
    try:
        # Only node1 answers, with its own MAC; the VIP lives on node1's lo.
        wait_for(lambda: probe_arp(lab, lab.client, vip_a) == [node1.mac], what="ARP for VIP a")
        assert f"{vip_a}/32" in _lo_addresses(lab, node1)
        assert f"{vip_a}/32" not in _lo_addresses(lab, node2)
        out = lab.run(lab.client, sys.executable, "-c", CLIENT, str(vip_a), "8080")
        assert out.stdout.strip() == backend_server.name

        # Reload with a second VIP: it is bound and answered too.
        config.write_text(_config([vip_a, vip_b], backend_server))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: probe_arp(lab, lab.client, vip_b) == [node1.mac], what="ARP for VIP b")
        out = lab.run(lab.client, sys.executable, "-c", CLIENT, str(vip_b), "8080")
        assert out.stdout.strip() == backend_server.name

        # Reload without the first: no longer answered, no longer on lo.
        config.write_text(_config([vip_b], backend_server))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: f"{vip_a}/32" not in _lo_addresses(lab, node1), what="VIP a unbound")
        assert probe_arp(lab, lab.client, vip_a) == []
        assert probe_arp(lab, lab.client, vip_b) == [node1.mac]

        # SIGTERM: clean exit, nothing of ours left on lo, nobody answers.
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert f"{vip_b}/32" not in _lo_addresses(lab, node1)
        assert probe_arp(lab, lab.client, vip_b) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_forward_without_raw_socket_rights_says_so(
    lab: Lab, backend_server: LabHost, tmp_path: Path
) -> None:
    """Announcing needs CAP_NET_RAW: without it, start-up fails with a clear line."""
    node1 = lab.nodes[0]
    config = tmp_path / "lb.yaml"
    config.write_text(_config([lab.vip(0)], backend_server))
    out = forward_without_capability(lab, node1, "net_raw", config)
    assert out.returncode == 1, out.stderr
    assert "cannot announce" in out.stderr
    assert f"{lab.vip(0)}/32" not in _lo_addresses(lab, node1)


# Echoes every connection until the peer closes (one thread per connection).
ECHO_SERVER = """
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(64)
print("listening", flush=True)
def echo(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
while True:
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
"""

# Connects, says "connected", waits for "go" on stdin, then has one byte echoed
# every 0.2 s until that fails; prints how long it worked after "go" and how it
# ended: "reset" or "eof" (the client was told) or "timeout" (3 s of silence:
# stranded).
EXCHANGE_CLIENT = """
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(3.0)
s.sendall(b"x"); assert s.recv(1) == b"x"
print("connected", flush=True)
sys.stdin.readline()
start = time.monotonic()
while True:
    try:
        s.sendall(b"x")
        data = s.recv(1)
        end = "eof" if not data else None
    except ConnectionResetError:
        end = "reset"
    except (TimeoutError, socket.timeout):
        end = "timeout"
    if end:
        break
    time.sleep(0.2)
print(json.dumps({"worked": time.monotonic() - start, "end": end}), flush=True)
"""


def test_reload_removing_an_announced_listener_drains_then_tells_the_client(
    lab: Lab, tmp_path: Path
) -> None:
    """Issue 12 (stopping strands clients), the reload case: the listener goes
    with its VIP; the VIP stops being announced at once, its open connection
    keeps working for ``--drain-seconds``, then the client is reset (not left
    hanging on an address that vanished), and only then the VIP leaves lo."""
    node1 = lab.nodes[0]
    backend = lab.backends[0]
    vip_a, vip_b = lab.vip(0), lab.vip(1)
    server = lab.popen(
        backend, sys.executable, "-c", ECHO_SERVER, str(backend.ipv4), "9000",
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    client: subprocess.Popen[str] | None = None
    config = tmp_path / "lb.yaml"
    config.write_text(_config([vip_a, vip_b], backend))
    proc = start_forward(lab, node1, config, "--drain-seconds", "6")
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        wait_for(lambda: probe_arp(lab, lab.client, vip_a) == [node1.mac], what="ARP for VIP a")
        client = lab.popen(
            lab.client, sys.executable, "-c", EXCHANGE_CLIENT, str(vip_a), "8080",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdin is not None and client.stdout is not None
        assert client.stdout.readline().strip() == "connected"
        config.write_text(_config([vip_b], backend))
        proc.send_signal(signal.SIGHUP)
        client.stdin.write("go\n")
        client.stdin.flush()
        wait_for(lambda: probe_arp(lab, lab.client, vip_a) == [], what="VIP a no longer answered")
        assert f"{vip_a}/32" in _lo_addresses(lab, node1)  # still bound while it drains
        result = json.loads(client.stdout.readline())
        assert result["end"] in ("reset", "eof"), result  # told, not stranded
        assert 5.0 <= result["worked"] <= 9.0, result  # the drain, then the end
        wait_for(lambda: f"{vip_a}/32" not in _lo_addresses(lab, node1), what="VIP a unbound")
        assert f"{vip_b}/32" in _lo_addresses(lab, node1)
    finally:
        for p in (client, proc, server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
