"""``ironlb.io/proxy-protocol`` end to end: nginx in the lab's pods, listening with
``proxy_protocol``, serves a LoadBalancer Service through the speakers; what nginx read
from the header is the client's own address and port (v1 and v2), while its TCP peer is
a node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironlb.lab.netlab import LabHost
from tests.nginx import start_proxy_protocol_nginx
from tests.support import eventually

from .cluster import Cluster

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

NGINX_PORT = 9000
ASK = """
import http.client, json, socket, sys
sock = socket.create_connection((sys.argv[1], 80), timeout=5)
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
conn.sock = sock
conn.request("GET", "/")
print(json.dumps({"body": conn.getresponse().read().decode(), "me": sock.getsockname()[:2]}))
"""


@pytest.fixture
def nginx_pods(lab_cluster: Cluster, tmp_path: Path) -> Iterator[list[LabHost]]:
    pods = lab_cluster.lab.pods[:2]
    procs = []
    try:
        for pod in pods:
            prefix = tmp_path / f"nginx-{pod.name}"
            procs.append(
                start_proxy_protocol_nginx(lab_cluster.lab, pod, prefix, str(pod.ipv4), NGINX_PORT)
            )
        yield pods
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_pods_behind_a_proxy_protocol_service_see_the_client(
    lab_cluster: Cluster, nginx_pods: list[LabHost], version: str
) -> None:
    cl = lab_cluster
    ports = [{"name": "http", "port": 80, "targetPort": NGINX_PORT, "protocol": "TCP"}]
    vip = await cl.expose(
        "pp", nginx_pods, ports=ports, annotations={"ironlb.io/proxy-protocol": version}
    )

    def ask() -> dict[str, object] | None:
        out = cl.lab.run(cl.lab.client, "python3", "-c", ASK, vip, check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    nodes = {str(n.ipv4) for n in cl.lab.nodes}
    for _ in range(4):  # round-robin: both pods answer
        answer = await eventually(ask, what="nginx answering through the VIP")
        client_addr, client_port, dest_addr, dest_port, peer = str(answer["body"]).split()
        assert [client_addr, int(client_port)] == answer["me"]
        assert (dest_addr, dest_port) == (vip, "80")
        assert client_addr == str(cl.lab.client.ipv4) and peer in nodes
    assert "InvalidProxyProtocol" not in await cl.event_reasons("pp")
