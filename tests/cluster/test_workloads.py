"""The lab workload controllers against the lab API over real HTTP, driven by kubectl 1.32.

The controllers run in a thread (``ironlb.lab.workloads.run``, registering
node1..node3); the tests play the kubelet by patching pod status
(``Json.kubelet_pass`` / ``set_ready``), which is what the controllers read.
"""

from __future__ import annotations

import ipaddress
import json
import logging
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


NAMED_PORTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: server
        image: podserver
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 8053, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  clusterIP: None
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: api}
  ports:
  - {name: web, port: 80, targetPort: http}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
"""


def test_named_ports_both_families_and_terminating(lab: Lab) -> None:
    lab.kubectl("apply", "-f", "-", stdin=NAMED_PORTS)
    pods = lab.settle("api-", 2, what="2 ready api pods")

    def two_families() -> list[dict[str, Any]]:
        slices = [
            s
            for s in lab.api.items(SLICES)
            if s["metadata"]["labels"]["kubernetes.io/service-name"] == "api"
            and len(s.get("endpoints") or []) == 2
        ]
        return slices if len(slices) == 2 else []

    slices = wait_for(two_families, timeout=10, what="an IPv4 and an IPv6 slice")
    assert sorted(s["addressType"] for s in slices) == ["IPv4", "IPv6"]
    for slice_obj in slices:
        assert sorted(slice_obj["ports"], key=lambda p: p["name"]) == [
            {"name": "dns", "protocol": "UDP", "port": 8053},
            {"name": "web", "protocol": "TCP", "port": 8080},
        ]
        family = 4 if slice_obj["addressType"] == "IPv4" else 6
        for endpoint in slice_obj["endpoints"]:
            assert ipaddress.ip_address(endpoint["addresses"][0]).version == family
    wanted_v6 = sorted(p["status"]["podIPs"][1]["ip"] for p in pods)
    v6 = next(s for s in slices if s["addressType"] == "IPv6")
    assert sorted(e["addresses"][0] for e in v6["endpoints"]) == wanted_v6

    # a pod held by a finalizer while deleted: terminating, serving, not ready
    victim = pods[0]["metadata"]["name"]
    lab.api.call("PATCH", f"{PODS}/{victim}", {"metadata": {"finalizers": ["lab.test/hold"]}})
    lab.kubectl("delete", "pod", victim, "--wait=false")

    def terminating() -> dict[str, Any]:
        eps = [e for e in _endpoints(lab.api, "api") if e["targetRef"]["name"] == victim]
        return eps[0] if eps and eps[0]["conditions"]["terminating"] else {}

    endpoint = wait_for(terminating, timeout=10, what="the deleted pod's endpoint terminating")
    assert endpoint["conditions"] == {"ready": False, "serving": True, "terminating": True}
    # the deployment replaced it meanwhile
    lab.settle("api-", 3, what="a replacement pod next to the terminating one")
    lab.api.call("PATCH", f"{PODS}/{victim}", {"metadata": {"finalizers": None}})
    wait_for(
        lambda: victim not in {e["targetRef"]["name"] for e in _endpoints(lab.api, "api")},
        what="the finished pod to leave the slices",
    )


def test_service_without_selector_gets_no_slices(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=1")
    lab.settle("web-", 1, what="a ready web pod")
    lab.kubectl("create", "service", "clusterip", "manual", "--tcp=80:8080")
    lab.api.call(
        "PATCH", "/api/v1/namespaces/default/services/manual", {"spec": {"selector": None}}
    )
    lab.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    wait_for(lambda: len(_endpoints(lab.api, "web")) == 1, what="the web slice")
    services = {
        s["metadata"]["labels"]["kubernetes.io/service-name"] for s in lab.api.items(SLICES)
    }
    assert services == {"web"}
    lab.kubectl("delete", "service", "web")
    wait_for(lambda: not lab.api.items(SLICES), what="the web slice to go with its service")


def test_cordon_and_node_labels_steer_new_pods(lab: Lab) -> None:
    lab.kubectl("cordon", "node1")
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=4")
    pods = lab.settle("web-", 4, what="4 ready web pods")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node2", "node2", "node3", "node3"]
    lab.kubectl("uncordon", "node1")
    lab.kubectl("label", "node", "node3", "disk=ssd")
    lab.kubectl(
        "patch",
        "deployment",
        "web",
        "-p",
        '{"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd"}}}}}',
    )
    wait_for(
        lambda: (
            lab.api.kubelet_pass() >= 0
            and {p["spec"].get("nodeName") for p in lab.api.pods("web-")} == {"node3"}
            and len([p for p in lab.api.pods("web-") if _ready(p)]) == 4
        ),
        timeout=20,
        what="every pod on the labelled node",
    )


GPU_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {gpu: "yes"}
      containers: [{name: nginx, image: nginx}]
"""


def test_unschedulable_pod_waits_for_a_node(lab: Lab) -> None:
    lab.kubectl("apply", "-f", "-", stdin=GPU_DEPLOYMENT)
    wait_for(lambda: lab.api.pods("web-"), what="a web pod")
    time.sleep(0.5)
    assert not lab.api.pods("web-")[0]["spec"].get("nodeName")
    lab.kubectl("label", "node", "node2", "gpu=yes")
    (placed,) = lab.settle("web-", 1, what="the pod placed once a node fits")
    assert placed["spec"]["nodeName"] == "node2"


DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: agent, image: "agent:%s"}]
"""


def test_daemonset_one_pod_per_node_even_cordoned_and_rolls(lab: Lab) -> None:
    lab.kubectl("cordon", "node3")
    lab.kubectl("apply", "-f", "-", stdin=DAEMONSET % "1")
    pods = lab.settle("agent-", 3, what="one agent pod per node")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node2", "node3"]
    for pod in pods:
        assert re.match(rf"^agent-[{ALPHABET}]{{5}}$", pod["metadata"]["name"])
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    out = lab.kubectl("rollout", "status", "daemonset/agent", "--timeout=20s")
    assert 'daemon set "agent" successfully rolled out' in out
    status = lab.api.get("/apis/apps/v1/namespaces/default/daemonsets/agent")["status"]
    assert status["desiredNumberScheduled"] == status["numberReady"] == 3

    lab.kubectl("apply", "-f", "-", stdin=DAEMONSET % "2")
    old = {p["metadata"]["name"] for p in pods}

    def rolled() -> bool:
        lab.api.kubelet_pass()
        now = lab.api.pods("agent-")
        images = {p["spec"]["containers"][0]["image"] for p in now}
        return len(now) == 3 and images == {"agent:2"} and all(_ready(p) for p in now)

    wait_for(rolled, timeout=20, what="every agent pod replaced")
    assert not old & {p["metadata"]["name"] for p in lab.api.pods("agent-")}
    assert "successfully rolled out" in lab.kubectl(
        "rollout", "status", "daemonset/agent", "--timeout=20s"
    )
    # a node leaving the selector loses its pod
    lab.kubectl("label", "node", "node1", "kubernetes.io/os=windows", "--overwrite")
    wait_for(
        lambda: sorted(p["spec"]["nodeName"] for p in lab.api.pods("agent-")) == ["node2", "node3"],
        what="node1's agent pod removed",
    )
    lab.kubectl("delete", "daemonset", "agent")
    wait_for(lambda: not lab.api.pods("agent-"), what="the agent pods collected")


def test_delete_deployment_removes_pods_and_lost_pods_come_back(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    pods = lab.settle("web-", 2, what="2 ready web pods")
    lab.kubectl("delete", "pod", pods[0]["metadata"]["name"])
    again = lab.settle("web-", 2, what="the lost pod replaced")
    assert pods[0]["metadata"]["name"] not in {p["metadata"]["name"] for p in again}
    lab.kubectl("delete", "deployment", "web")
    wait_for(lambda: not lab.api.pods("web-"), what="the web pods collected")


def test_recreate_strategy_deletes_old_pods_first(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    lab.kubectl(
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/strategy","value":{"type":"Recreate"}}]',
    )
    before = _hashes(lab.settle("web-", 2, what="2 ready web pods"))
    lab.kubectl("set", "image", "deployment/web", "nginx=nginx:2")
    mixed = False

    def rolled() -> bool:
        nonlocal mixed
        pods = lab.api.pods("web-")
        mixed = mixed or len(_hashes(pods)) > 1
        lab.api.kubelet_pass()
        return len(pods) == 2 and all(_ready(p) for p in pods) and not _hashes(pods) & before

    wait_for(rolled, timeout=20, what="the recreate rollout")
    assert not mixed  # never old and new pods at once


def test_scale_refusals_leave_the_deployment(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    generation = lab.api.get(path)["metadata"]["generation"]
    answer = lab.api.call("PATCH", f"{path}/scale", {"spec": {"replicas": -1}}, expect=422)
    assert "spec.replicas" in answer["message"]
    answer = lab.api.call("PATCH", f"{path}/scale", {"spec": {"replicas": "many"}}, expect=422)
    assert lab.api.get(path)["spec"]["replicas"] == 2
    assert lab.api.get(path)["metadata"]["generation"] == generation
    stale = lab.api.get(f"{path}/scale")
    lab.kubectl("scale", "deployment", "web", "--replicas=3")
    stale["spec"]["replicas"] = 7
    lab.api.call("PUT", f"{path}/scale", stale, expect=409)
    assert lab.api.get(path)["spec"]["replicas"] == 3
    lab.api.call("GET", "/apis/apps/v1/namespaces/default/daemonsets/x/scale", expect=404)
    scale = lab.api.get(f"{path}/scale")
    assert scale["kind"] == "Scale" and scale["status"]["selector"] == "app=web"


ODD_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: odd}
spec:
  replicas: 2
  strategy: {type: Sideways}
  selector: {matchLabels: {app: odd}}
  template:
    metadata: {labels: {app: odd}}
    spec:
      containers: [{name: nginx, image: nginx}]
"""


def test_bad_spec_is_skipped_and_others_still_work(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ironlb.lab.workloads")
    lab.kubectl("apply", "-f", "-", stdin=ODD_DEPLOYMENT)
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    lab.settle("web-", 2, what="2 ready web pods despite the odd deployment")
    wait_for(
        lambda: any('Unsupported value: "Sideways"' in r.getMessage() for r in caplog.records),
        what="a warning naming the bad strategy",
    )
    time.sleep(0.3)
    assert not lab.api.pods("odd-")
    warnings = [r for r in caplog.records if "Sideways" in r.getMessage()]
    assert len(warnings) == 1  # once per generation, not once per pass
    assert "\n" not in warnings[0].getMessage()
    lab.kubectl(
        "patch",
        "deployment",
        "odd",
        "--type=merge",
        "-p",
        '{"spec":{"strategy":{"type":"Recreate"}}}',
    )
    lab.settle("odd-", 2, what="odd's pods once its strategy is valid")


def test_kubectl_get_columns_for_workloads(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    lab.kubectl("apply", "-f", "-", stdin=DAEMONSET % "1")
    lab.settle("web-", 2, what="2 ready web pods")
    lab.settle("agent-", 3, what="3 ready agent pods")
    lab.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    lab.kubectl("cordon", "node2")

    def rows(*args: str) -> list[list[str]]:
        return [line.split() for line in lab.kubectl("get", *args).splitlines()]

    wait_for(
        lambda: [r[:4] for r in rows("deployments")[1:]] == [["web", "2/2", "2", "2"]],
        what="the deployment row",
    )
    assert rows("deployments")[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    wide = rows("deployments", "-o", "wide")
    assert wide[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"] and wide[1][-3:] == [
        "nginx",
        "nginx",
        "app=web",
    ]
    ds = rows("daemonsets")
    assert ds[0] == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE",
        "SELECTOR",
        "AGE",
    ]
    assert ds[1][:7] == ["agent", "3", "3", "3", "3", "3", "kubernetes.io/os=linux"]
    slices = wait_for(
        lambda: [r for r in rows("endpointslices")[1:] if r[0].startswith("web-") and "," in r[3]],
        what="the web slice row",
    )
    assert slices[0][1:3] == ["IPv4", "8080"]
    nodes = {r[0]: r[1] for r in rows("nodes")[1:]}
    assert nodes == {"node1": "Ready", "node2": "Ready,SchedulingDisabled", "node3": "Ready"}


def test_a_malformed_pod_breaks_only_its_own_service(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ironlb.lab.workloads")
    weird = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "weird", "labels": {"app": "weird"}},
        "spec": {"nodeSelector": "not-a-map", "containers": "not-a-list"},
    }
    lab.api.call("POST", PODS, weird)
    lab.kubectl("create", "service", "clusterip", "weird", "--tcp=80:http")
    lab.api.call(
        "PATCH",
        "/api/v1/namespaces/default/services/weird",
        {"spec": {"selector": {"app": "weird"}}},
    )
    lab.api.call(
        "PATCH",
        f"{PODS}/weird/status",
        {"status": {"phase": "Running", "podIPs": [{"ip": "198.19.1.99"}]}},
    )
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    lab.settle("web-", 2, what="2 ready web pods next to the weird one")
    lab.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    wait_for(lambda: len(_endpoints(lab.api, "web")) == 2, what="web's endpoints")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("scheduling pod default/weird: unexpected failure") for m in messages)
    assert any(
        m.startswith("endpointslices of default/weird: unexpected failure") for m in messages
    )
    assert not lab.api.get(f"{PODS}/weird")["spec"].get("nodeName")
    assert sum(1 for m in messages if m.startswith("scheduling pod default/weird")) == 1


def test_a_refused_pod_is_reported_once_and_retried_quietly(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ironlb.lab.workloads")
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {
                "metadata": {"labels": {"app": "bad", "count": 5}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    lab.api.call("POST", "/apis/apps/v1/namespaces/default/deployments", bad)
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3")
    lab.settle("web-", 3, what="3 ready web pods next to the refused ones")
    refusals = [
        r.getMessage()
        for r in caplog.records
        if "POST /api/v1/namespaces/default/pods" in r.getMessage()
    ]
    assert len(refusals) == 1, refusals
    assert "HTTP 4" in refusals[0] and "\n" not in refusals[0]
    assert not lab.api.pods("bad-")


def test_drain_moves_deployment_pods_and_keeps_daemonset_pods(lab: Lab) -> None:
    lab.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3")
    lab.kubectl("apply", "-f", "-", stdin=DAEMONSET % "1")
    lab.settle("web-", 3, what="3 ready web pods")
    lab.settle("agent-", 3, what="3 ready agent pods")
    out = lab.kubectl("drain", "node1", "--ignore-daemonsets", "--timeout=20s")
    assert "node/node1 drained" in out
    pods = lab.settle("web-", 3, what="the drained pod replaced elsewhere")
    assert "node1" not in {p["spec"]["nodeName"] for p in pods}
    agents = lab.api.pods("agent-")
    assert sorted(p["spec"]["nodeName"] for p in agents) == ["node1", "node2", "node3"]
