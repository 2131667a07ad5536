"""PROXY protocol towards backends, in the namespace lab, parsed by a real server: nginx
(``listen ... proxy_protocol``) behind ``ironlb forward`` reports the client's own
address and port and the VIP it connected to, for v1 and v2, IPv4 and IPv6; the same
nginx refuses a connection that carries no header, so the header is what it reads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironlb.lab.netlab import Lab, LabHost
from tests.net.forward_helpers import start_forward
from tests.net.l2_helpers import probe_arp, wait_for
from tests.nginx import start_proxy_protocol_nginx

pytestmark = pytest.mark.root

# GET / through the VIP from a fixed source port; prints the answer and the client's
# own socket address as JSON.
CLIENT = """
import http.client, json, socket, sys
vip, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in vip else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect((vip, port))
conn = http.client.HTTPConnection(vip, port, timeout=10)
conn.sock = sock
conn.request("GET", "/")
answer = conn.getresponse()
print(json.dumps({"status": answer.status, "body": answer.read().decode(),
                  "me": list(sock.getsockname()[:2])}))
"""


@pytest.fixture
def nginx(lab: Lab, tmp_path: Path) -> Iterator[LabHost]:
    """nginx on the backend (IPv4 and IPv6, port 9000), requiring a PROXY header."""
    backend = lab.backends[0]
    procs = [
        start_proxy_protocol_nginx(lab, backend, tmp_path / f"nginx{family}", address, 9000)
        for family, address in (("4", str(backend.ipv4)), ("6", str(backend.ipv6)))
    ]
    try:
        for host in (str(backend.ipv4), f"[{backend.ipv6}]"):
            wait_for(
                lambda host=host: lab.run(backend, "ss", "-Htln", f"src {host}:9000").stdout != "",  # type: ignore[misc]
                what=f"nginx listening on {host}:9000",
            )
        yield backend
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)


def _ask(lab: Lab, vip: str, port: int) -> dict[str, object]:
    out = lab.run(lab.client, sys.executable, "-c", CLIENT, vip, str(port), check=False)
    assert out.returncode == 0, out.stderr
    answer: dict[str, object] = json.loads(out.stdout)
    return answer


def test_nginx_behind_the_vip_reads_the_client_from_proxy_v1_and_v2(
    lab: Lab, nginx: LabHost, tmp_path: Path
) -> None:
    node = lab.nodes[0]
    vip4, vip6 = lab.vip(0), lab.vip(0, 6)
    listeners = []
    for port, version in ((8081, "v1"), (8082, "v2"), (8083, "none")):
        for vip, backend in ((vip4, f"{nginx.ipv4}:9000"), (vip6, f"[{nginx.ipv6}]:9000")):
            listeners.append(
                f"  - address: '{vip}'\n    port: {port}\n    proxy_protocol: {version}\n"
                f"    backends: ['{backend}']\n"
            )
    config = tmp_path / "lb.yaml"
    config.write_text(
        "listeners:\n" + "".join(listeners) + "announce:\n  interfaces: [eth0]\n"
        "  garp: {repeat: [0]}\n"
    )
    proc = start_forward(lab, node, config)
    try:
        wait_for(lambda: probe_arp(lab, lab.client, vip4) == [node.mac], what="ARP for the VIP")
        for address in (str(vip4), str(vip6)):
            for port in (8081, 8082):
                answer = _ask(lab, address, port)
                assert answer["status"] == 200, answer
                client_addr, client_port, dest_addr, dest_port, peer = str(answer["body"]).split()
                me = answer["me"]
                assert isinstance(me, list)
                # What the header said is the client's own socket and the VIP it asked.
                assert (client_addr, int(client_port)) == (me[0], me[1])
                assert (dest_addr, int(dest_port)) == (address, port)
                # ... while the TCP peer nginx saw is the node, not the client.
                assert peer in (str(node.ipv4), str(node.ipv6))
            # Without a header this nginx refuses to serve: the header is what it read.
            out = lab.run(lab.client, sys.executable, "-c", CLIENT, address, "8083", check=False)
            assert out.returncode != 0 and "RemoteDisconnected" in out.stderr, out
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
