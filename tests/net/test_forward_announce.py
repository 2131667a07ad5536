"""``ironlb forward`` with an ``announce`` section, in the namespace lab: the
standalone data plane owns its listener addresses on the LAN (bound on ``lo``,
ARP answered by this node only), a client on the LAN reaches the backends
through it, a reload moves the set of owned VIPs, and SIGTERM releases them."""

from __future__ import annotations

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
