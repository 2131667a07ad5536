"""A small cluster in the lab for end-to-end tests: nodes with pods, the local API,
the controller and one real ``ironlb speaker`` process per node.

What a real cluster's other components would do, the harness does itself, as
the issue asks: it creates the Nodes (with their ``InternalIP``), the
heartbeat Secret, and the EndpointSlices of each Service (the endpointslice
controller's job), pointing at the lab's pods. The controller and the
speakers run as the ServiceAccounts ``ironlb-controller`` and
``ironlb-speaker`` (tokens from TokenRequest), and the API keeps an audit log
of who asked for what (``Cluster.requests_of``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

from ironlb.lab.api_bridge import ApiBridge
from ironlb.lab.apiserver.audit import AuditLog, RequestInfo, event_request
from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
from ironlb.lab.apiserver.server import ServerThread
from ironlb.lab.netlab import Lab, LabHost
from tests.arping import arping_args, reply_macs
from tests.support import ApiClient, api_client, eventually

IRONLB = str(Path(sys.executable).with_name("ironlb"))
CRD = Path(__file__).resolve().parents[2] / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
NS = "ironlb-system"
CONTROLLER_SA = "ironlb-controller"
SPEAKER_SA = "ironlb-speaker"
POOL_RANGE = "198.18.0.200-198.18.0.220"
POOL6_RANGE = "fd00:198:18::200-fd00:198:18::220"
POD_TCP = 8080
POD_UDP = 8053
METRICS_PORT = 7472


def speaker_args(node: str) -> list[str]:
    """``speaker ...`` as the harness runs it on lab node ``node`` (short Lease and
    drain, one worker, the LAN interface, metrics on loopback)."""
    return [
        "speaker",
        "--node-name",
        node,
        "--namespace",
        NS,
        "--lease-duration",
        "4",
        "--drain-seconds",
        "3",
        "--workers",
        "1",
        "--interfaces",
        "eth0",
        "--metrics-address",
        f"127.0.0.1:{METRICS_PORT}",
    ]


class Cluster:
    """Everything of one end-to-end run; :func:`cluster` builds and removes it."""

    def __init__(self, lab: Lab, api: ServerThread, bridge: ApiBridge, tmp: Path) -> None:
        self.lab = lab
        self.api = api
        self.bridge = bridge
        self.tmp = tmp
        self.client: ApiClient | None = None
        self.speakers: dict[str, subprocess.Popen[bytes]] = {}
        self.controller: subprocess.Popen[bytes] | None = None
        self.kubeconfig_node = tmp / "node.kubeconfig"
        self.kubeconfig_root = tmp / "root.kubeconfig"

    # -- API -----------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        """JSON to the lab API (PATCH = merge patch); an error status raises."""
        assert self.client is not None
        return await self.client.call(method, path, body, **params)

    async def service(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "GET", f"/api/v1/namespaces/default/services/{name}"
        )
        return result

    async def event_reasons(self, name: str) -> list[str]:
        data = await self.call(
            "GET",
            "/api/v1/namespaces/default/events",
            fieldSelector=f"involvedObject.name={name}",
        )
        return [e["reason"] for e in data["items"]]

    # -- set-up ------------------------------------------------------------------------

    async def install(self) -> None:
        await self.call(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml.safe_load(CRD.read_text()),
        )
        await self.call(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        )
        key = base64.b64encode(base64.b64encode(secrets.token_bytes(32))).decode()
        await self.call(
            "POST",
            f"/api/v1/namespaces/{NS}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "ironlb-heartbeat"},
                "data": {"key": key},
            },
        )
        for node in self.lab.nodes:
            await self.call(
                "POST",
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node.name,
                        "labels": {"kubernetes.io/hostname": node.name},
                    },
                    "status": {
                        "addresses": [
                            {"type": "InternalIP", "address": str(node.ipv4)},
                            {"type": "Hostname", "address": node.name},
                        ],
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                },
            )
        await self.pool("lab", [POOL_RANGE, POOL6_RANGE])
        # The controller and the speakers run as their ServiceAccounts (tokens from
        # TokenRequest), so the audit log says which of them made each request.
        for account, path, url in (
            (CONTROLLER_SA, self.kubeconfig_root, self.api.url),
            (SPEAKER_SA, self.kubeconfig_node, self.bridge.url),
        ):
            await self.call(
                "POST",
                f"/api/v1/namespaces/{NS}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
            )
            answer = await self.call(
                "POST",
                f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            )
            write_kubeconfig(path, url, token=answer["status"]["token"])

    def requests_of(self, account: str) -> list[RequestInfo]:
        """Every request the ServiceAccount ``account`` (of the ironlb namespace) made."""
        audit = self.api.server.audit
        assert audit is not None
        user = f"system:serviceaccount:{NS}:{account}"
        return [event_request(e) for e in audit.events if e["user"]["username"] == user]

    async def pool(self, name: str, addresses: list[str], **spec: Any) -> None:
        await self.call(
            "POST",
            "/apis/ironlb.io/v1alpha1/ipaddresspools",
            {
                "apiVersion": "ironlb.io/v1alpha1",
                "kind": "IPAddressPool",
                "metadata": {"name": name},
                "spec": {"addresses": addresses, **spec},
            },
        )

    def start_controller(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_root)}
        log = (self.tmp / "controller.log").open("wb")
        self.controller = subprocess.Popen(
            [
                IRONLB,
                "controller",
                "--namespace",
                NS,
                "--lease-duration",
                "5",
                "--renew-period",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_speaker(self, node: LabHost, *extra: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_node)}
        log = (self.tmp / f"speaker-{node.name}.log").open("ab")
        proc = self.lab.popen(
            node,
            IRONLB,
            *speaker_args(node.name),
            *extra,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.speakers[node.name] = proc
        return proc

    def metrics(self, node: LabHost) -> str:
        """The speaker's Prometheus page, fetched inside the node's namespace."""
        code = (
            "import urllib.request;print(urllib.request.urlopen("
            f"'http://127.0.0.1:{METRICS_PORT}/metrics',timeout=5).read().decode())"
        )
        return self.lab.run(node, sys.executable, "-c", code, check=False).stdout  # "" until up

    def speaker_log(self, name: str) -> str:
        return (self.tmp / f"speaker-{name}.log").read_text(errors="replace")

    def stop_speaker(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.speakers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)

    # -- workloads -----------------------------------------------------------------------

    async def expose(
        self,
        name: str,
        pods: list[LabHost],
        *,
        ports: list[dict[str, Any]] | None = None,
        annotations: dict[str, str] | None = None,
        ready: Callable[[LabHost], bool] = lambda _pod: True,
        families: tuple[int, ...] = (4,),
        **spec: Any,
    ) -> str:
        """A LoadBalancer Service and its EndpointSlices; returns its first external IP."""
        ports = ports or [{"name": "http", "port": 80, "targetPort": POD_TCP, "protocol": "TCP"}]
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": name},
                "ports": ports,
                "allocateLoadBalancerNodePorts": False,
                "ipFamilies": ["IPv4" if f == 4 else "IPv6" for f in families],
                "ipFamilyPolicy": "RequireDualStack" if len(families) > 1 else "SingleStack",
                **spec,
            },
        }
        await self.call("POST", "/api/v1/namespaces/default/services", body)
        await self.set_endpoints(name, pods, ports=ports, ready=ready, families=families)
        return (await self.wait_ips(name))[0]

    async def set_endpoints(
        self,
        name: str,
        pods: list[LabHost],
        *,
        ports: list[dict[str, Any]] | None = None,
        ready: Callable[[LabHost], bool] = lambda _pod: True,
        families: tuple[int, ...] = (4,),
    ) -> None:
        ports = ports or [{"name": "http", "port": 80, "targetPort": POD_TCP, "protocol": "TCP"}]
        for family in families:
            slice_name = f"{name}-v{family}"
            body: dict[str, Any] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": f"IPv{family}",
                "ports": [
                    {
                        "name": p.get("name", ""),
                        "port": p["targetPort"],
                        "protocol": p.get("protocol", "TCP"),
                    }
                    for p in ports
                ],
                "endpoints": [
                    {
                        "addresses": [str(pod.ipv4 if family == 4 else pod.ipv6)],
                        "conditions": {"ready": ready(pod)},
                        "nodeName": pod.node,
                        "targetRef": {"kind": "Pod", "name": pod.name},
                    }
                    for pod in pods
                ],
            }
            path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
            try:
                current = await self.call("GET", f"{path}/{slice_name}")
            except AssertionError:
                await self.call("POST", path, body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self.call("PUT", f"{path}/{slice_name}", body)

    async def wait_ips(self, name: str, timeout: float = 30) -> list[str]:
        async def ips() -> list[str]:
            svc = await self.service(name)
            ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            return [i["ip"] for i in ingress]

        found: list[str] = await eventually(ips, timeout=timeout, what=f"an IP for {name}")
        return found

    async def announcing_node(self, name: str) -> str | None:
        svc = await self.service(name)
        value = (svc["metadata"].get("annotations") or {}).get("ironlb.io/announcing-node")
        return str(value) if value else None

    # -- the client's view -------------------------------------------------------------------

    def client_run(self, code: str, timeout: float = 60) -> str:
        out = self.lab.run(self.lab.client, sys.executable, "-c", code, timeout=timeout)
        return out.stdout

    def ask(self, vip: str, port: int = 80, count: int = 1, timeout: float = 2.0) -> list[str]:
        """``count`` new TCP connections from the client; each answer's first word
        (the pod name) or ``"ERR:<error>"``."""
        code = CLIENT_SCRIPT % {"vip": vip, "port": port, "count": count, "timeout": timeout}
        answers: list[str] = json.loads(self.client_run(code, timeout=count * timeout + 30))
        return answers

    def arp_macs(self, vip: str) -> list[str]:
        """MACs that answer ARP for ``vip`` on the LAN, seen from the client."""
        out = self.lab.run(self.lab.client, *arping_args(vip, count=3), check=False)
        return reply_macs(out.stdout)

    def node_by_mac(self, mac: str) -> str:
        for node in self.lab.nodes:
            if node.mac.lower() == mac:
                return node.name
        raise AssertionError(f"no node has MAC {mac}")


CLIENT_SCRIPT = """
import json, socket, time
out = []
for _ in range(%(count)d):
    try:
        s = socket.create_connection(("%(vip)s", %(port)d), timeout=%(timeout)s)
        s.settimeout(%(timeout)s)
        s.sendall(b"hi\\n")  # the pod server answers at once when the client speaks first
        data = b""
        while not data.endswith(b"\\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        s.close()
        out.append(data.decode().split()[0] if data else "ERR:empty")
    except OSError as exc:
        out.append("ERR:" + type(exc).__name__)
print(json.dumps(out))
"""


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, nodes: int = 3, pods_per_node: int = 2, *, processes: bool = True
) -> AsyncIterator[Cluster]:
    """Lab with pods + local API + bridge + controller + a speaker per node.

    ``processes=False`` starts neither the controller nor the speakers: the
    caller runs them some other way (the image tests run them in containers).
    The API is then also bridged into the client's namespace."""
    lab = Lab(nodes=nodes, backends=0, pods_per_node=pods_per_node)
    await asyncio.to_thread(lab.up)
    api = ServerThread()
    api.server.audit = AuditLog(tmp / "audit.log")
    bridge: ApiBridge | None = None
    the: Cluster | None = None
    try:
        await asyncio.to_thread(api.start)
        url = api.url
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        bridge = ApiBridge((host, int(port)))
        for node in lab.nodes:
            await bridge.add(node.netns)
        if not processes:
            await bridge.add(lab.client.netns)
        the = Cluster(lab, api, bridge, tmp)
        await asyncio.to_thread(lab.start_pod_servers, (POD_TCP,), (POD_UDP,))
        async with api_client(url) as client:
            the.client = client
            await the.install()
            if processes:
                the.start_controller()
                for node in lab.nodes:
                    the.start_speaker(node)
            yield the
    finally:
        if the is not None:
            for name in list(the.speakers):
                with contextlib.suppress(Exception):
                    the.stop_speaker(name, signal.SIGKILL, timeout=10)
            if the.controller is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(the.controller.pid, signal.SIGKILL)
                the.controller.wait(10)
        if bridge is not None:
            await bridge.close()
        await asyncio.to_thread(lab.down)
        await asyncio.to_thread(api.stop)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)
