"""The lab workload controllers against the lab API over real HTTP, driven by kubectl 1.32.

The controllers run in a thread (``ironlb.lab.workloads.run``, registering
node1..node3); the tests play the kubelet by patching pod status
(``Json.kubelet_pass`` / ``set_ready``), which is what the controllers read.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.apiserver import ServerThread
from ironlb.lab.workloads.names import ALPHABET
from tests.cluster.apiserver_helpers import run_kubectl
from tests.cluster.workload_helpers import PODS, ControllersThread, Json
from tests.support import wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

POD_NAME = re.compile(rf"^web-(?P<hash>[{ALPHABET}]{{6,10}})-[{ALPHABET}]{{5}}$")
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


@dataclass
class Lab:
    kubeconfig: Path
    api: Json
    controllers: ControllersThread

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = run_kubectl(self.kubeconfig, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def settle(self, prefix: str, count: int, *, what: str) -> list[dict[str, Any]]:
        """Play the kubelet until exactly ``count`` pods named ``prefix*`` run Ready."""

        def done() -> list[dict[str, Any]]:
            self.api.kubelet_pass()
            pods = self.api.pods(prefix)
            ready = [p for p in pods if _ready(p)]
            return pods if len(pods) == count and len(ready) == count else []

        return wait_for(done, timeout=20, what=what, interval=0.05)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _hashes(pods: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["labels"]["pod-template-hash"] for p in pods}


@pytest.fixture
def lab(api_thread: ServerThread, api_thread_kubeconfig: Path) -> Iterator[Lab]:
    controllers = ControllersThread(api_thread.url).start()
    api = Json(api_thread.url)
    try:
        wait_for(lambda: len(api.items("/api/v1/nodes")) == 3, what="3 lab nodes registered")
        yield Lab(api_thread_kubeconfig, api, controllers)
    finally:
        controllers.stop()


def test_nodes_registered_with_addresses_cidrs_and_labels(lab: Lab) -> None:
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json"))["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert sorted(by_name) == ["node1", "node2", "node3"]
    node2 = by_name["node2"]
    assert node2["metadata"]["labels"]["kubernetes.io/hostname"] == "node2"
    assert node2["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert node2["spec"]["podCIDRs"] == ["198.19.2.0/24", "fd00:198:19:2::/64"]
    assert node2["spec"]["podCIDR"] == "198.19.2.0/24"
    internal = [a["address"] for a in node2["status"]["addresses"] if a["type"] == "InternalIP"]
    assert internal == ["198.18.0.12", "fd00:198:18::12"]
    ready = [c for c in node2["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"


def test_register_nodes_is_idempotent_and_keeps_user_changes(lab: Lab) -> None:
    import asyncio

    from ironlb.lab.workloads.api import ClientConfig, WorkloadApi
    from ironlb.lab.workloads.nodes import register_nodes

    lab.kubectl("label", "node", "node1", "zone=a")
    lab.kubectl("cordon", "node1")

    async def again() -> list[str]:
        async with WorkloadApi(ClientConfig(lab.api.url)) as api:
            return await register_nodes(api, [1, 2, 3])

    assert asyncio.run(again()) == ["node1", "node2", "node3"]
    node1 = lab.api.get("/api/v1/nodes/node1")
    assert node1["metadata"]["labels"]["zone"] == "a"
    assert node1["spec"]["unschedulable"] is True
    assert len(lab.api.items("/api/v1/nodes")) == 3


def test_create_deployment_names_schedules_and_rolls_out(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3")
    pods = lab.settle("web-", 3, what="3 ready web pods")
    deploy = lab.api.get("/apis/apps/v1/namespaces/default/deployments/web")
    for pod in pods:
        match = POD_NAME.match(pod["metadata"]["name"])
        assert match, pod["metadata"]["name"]
        assert pod["metadata"]["labels"]["pod-template-hash"] == match["hash"]
        assert pod["metadata"]["labels"]["app"] == "web"
        (owner,) = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "Deployment",
            deploy["metadata"]["uid"],
            True,
        )
    assert len(_hashes(pods)) == 1
    # fewest pods first: one per node
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node2", "node3"]
    for pod in pods:
        node = lab.api.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
        for ip, cidr in zip(
            [i["ip"] for i in pod["status"]["podIPs"]], node["spec"]["podCIDRs"], strict=True
        ):
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    out = lab.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert 'deployment "web" successfully rolled out' in out
    status = lab.api.get("/apis/apps/v1/namespaces/default/deployments/web")["status"]
    assert status["replicas"] == status["readyReplicas"] == status["availableReplicas"] == 3
    assert status["updatedReplicas"] == 3
    assert status["observedGeneration"] == deploy["metadata"]["generation"]


def test_scale_up_and_down_deletes_not_ready_first(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3")
    lab.settle("web-", 3, what="3 ready web pods")
    lab.kubectl("scale", "deployment", "web", "--replicas=5")
    pods = lab.settle("web-", 5, what="5 ready web pods")
    assert sorted({p["spec"]["nodeName"] for p in pods}) == ["node1", "node2", "node3"]
    oldest = min(pods, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
    lab.api.set_ready(oldest["metadata"]["name"], False)
    lab.kubectl("scale", "deployment", "web", "--replicas=4")
    left = lab.settle("web-", 4, what="4 ready web pods")
    assert oldest["metadata"]["name"] not in {p["metadata"]["name"] for p in left}
    lab.kubectl("scale", "deployment", "web", "--replicas=1")
    lab.settle("web-", 1, what="1 ready web pod")
    out = lab.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert "successfully rolled out" in out


def test_set_image_rolls_pods_within_surge(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=4")
    before = _hashes(lab.settle("web-", 4, what="4 ready web pods"))
    lab.kubectl("set", "image", "deployment/web", "nginx=nginx:1.27")
    most = 0
    seen_hashes: set[str] = set()

    def rolled() -> bool:
        nonlocal most
        pods = lab.api.pods("web-")
        most = max(most, len(pods))
        seen_hashes.update(_hashes(pods))
        ready = [p for p in pods if _ready(p)]
        lab.api.kubelet_pass()
        return len(pods) == 4 and len(ready) == 4 and not (_hashes(pods) & before)

    wait_for(rolled, timeout=20, what="the rollout to replace every pod")
    after = _hashes(lab.api.pods("web-"))
    assert len(after) == 1 and after != before
    assert most <= 5  # replicas 4 + maxSurge 25% (1)
    assert seen_hashes == before | after
    out = lab.kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert "successfully rolled out" in out
    assert (
        lab.api.get(f"{PODS}/{lab.api.pods('web-')[0]['metadata']['name']}")["spec"]["containers"][
            0
        ]["image"]
        == "nginx:1.27"
    )


def _endpoints(api: Json, service: str) -> list[dict[str, Any]]:
    slices = [
        s
        for s in api.items(SLICES)
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == service
    ]
    return [e for s in slices for e in s.get("endpoints") or []]


def test_expose_makes_slice_and_not_ready_leaves_within_a_second(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3")
    pods = lab.settle("web-", 3, what="3 ready web pods")
    lab.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    svc = lab.api.get("/api/v1/namespaces/default/services/web")

    def three_ready() -> list[dict[str, Any]]:
        eps = _endpoints(lab.api, "web")
        return eps if len(eps) == 3 and all(e["conditions"]["ready"] for e in eps) else []

    wait_for(three_ready, timeout=10, what="3 ready endpoints")
    (slice_obj,) = [
        s
        for s in lab.api.items(SLICES)
        if s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    ]
    assert slice_obj["metadata"]["name"].startswith("web-")
    assert slice_obj["addressType"] == "IPv4"
    assert slice_obj["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    labels = slice_obj["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slice_obj["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    by_pod = {e["targetRef"]["name"]: e for e in slice_obj["endpoints"]}
    for pod in pods:
        endpoint = by_pod[pod["metadata"]["name"]]
        assert endpoint["addresses"] == [pod["status"]["podIP"]]
        assert endpoint["nodeName"] == pod["spec"]["nodeName"]
        assert endpoint["targetRef"]["uid"] == pod["metadata"]["uid"]
        assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}

    victim = pods[0]["metadata"]["name"]
    started = time.monotonic()
    lab.api.set_ready(victim, False)

    def victim_not_ready() -> bool:
        eps = {e["targetRef"]["name"]: e for e in _endpoints(lab.api, "web")}
        return eps[victim]["conditions"]["ready"] is False

    wait_for(
        victim_not_ready, timeout=5, what="the not-ready pod to leave the ready set", interval=0.01
    )
    took = time.monotonic() - started
    assert took < 1.0, f"{took:.3f} s"
    eps = {e["targetRef"]["name"]: e for e in _endpoints(lab.api, "web")}
    assert eps[victim]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert sum(1 for e in eps.values() if e["conditions"]["ready"]) == 2
