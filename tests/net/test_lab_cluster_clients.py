"""Issue 9's checks against ``ironlb lab cluster up``, with the real clients unchanged:
kubectl 1.32 (create namespace, create deployment, scale, expose, get pods -o wide, get
endpointslices, apply --server-side, delete) and Helm v4 through helm-python-sdk
(install and upgrade with --wait, uninstall), and the Deployment's pods answering from the
client host at the addresses their EndpointSlices list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.helm import Helm
from ironlb.lab.netlab.nsutil import list_netns
from ironlb.lab.netlab.plan import random_prefix
from tests.cluster.apiserver_helpers import kubectl_ok
from tests.support import wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

CLI = [sys.executable, "-m", "ironlb.cli", "lab", "cluster"]
HELLO = Path(__file__).resolve().parents[1] / "cluster" / "charts" / "hello"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``up --detach`` with 3 nodes; (prefix, kubeconfig); ``down`` afterwards, always."""
    prefix, state = random_prefix(), tmp_path / "state"
    try:
        up = subprocess.run(
            [*CLI, "up", "--detach", "--nodes", "3", "--prefix", prefix, "--dir", str(state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert up.returncode == 0, up.stderr
        yield prefix, str(state / "kubeconfig")
    finally:
        subprocess.run([*CLI, "down", "--prefix", prefix, "--dir", str(state)], timeout=120)
        assert list_netns(prefix) == []


def pods(kubeconfig: str, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        kubectl_ok(kubeconfig, "-n", ns, "get", "pods", "-l", "app=web", "-o", "json")
    )["items"]
    return items


def ready_ips(kubeconfig: str, ns: str) -> set[str]:
    return {
        p["status"]["podIP"]
        for p in pods(kubeconfig, ns)
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    }


def slice_ready(kubeconfig: str, ns: str) -> set[str]:
    out = kubectl_ok(
        kubeconfig,
        "-n",
        ns,
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    )
    return {
        ep["addresses"][0]
        for s in json.loads(out)["items"]
        if s["addressType"] == "IPv4"
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
    }


def ask(prefix: str, address: str, port: int) -> str:
    res = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            f"{prefix}-client",
            "curl",
            "-s",
            "-m",
            "5",
            f"http://{address}:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return res.stdout


def test_kubectl_drives_the_lab_cluster_and_pods_answer_through_their_slices(
    cluster: tuple[str, str],
) -> None:
    prefix, kc = cluster
    ns = "shop"
    kubectl_ok(kc, "create", "namespace", ns)
    kubectl_ok(kc, "-n", ns, "create", "deployment", "web", "--image=nginx", "--replicas=3")
    wait_for(lambda: len(ready_ips(kc, ns)) == 3, timeout=60, what="3 Ready pods")
    wide = kubectl_ok(kc, "-n", ns, "get", "pods", "-o", "wide")
    assert wide.split("\n")[0].split() == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
    ]
    for p in pods(kc, ns):
        row = next(
            line.split() for line in wide.splitlines() if line.startswith(p["metadata"]["name"])
        )
        assert p["metadata"]["name"].startswith("web-")  # web-<hash>-<5 chars>
        assert row[1:4] == ["1/1", "Running", "0"] and row[-2:] == [
            p["status"]["podIP"],
            p["spec"]["nodeName"],
        ]
    nodes_wide = kubectl_ok(kc, "get", "nodes", "-o", "wide")
    assert "INTERNAL-IP" in nodes_wide and "198.18.0.11" in nodes_wide
    assert {p["spec"]["nodeName"] for p in pods(kc, ns)} == {"node1", "node2", "node3"}
    kubectl_ok(kc, "-n", ns, "scale", "deployment", "web", "--replicas=5")
    wait_for(lambda: len(ready_ips(kc, ns)) == 5, timeout=60, what="5 Ready pods")
    kubectl_ok(kc, "-n", ns, "scale", "deployment", "web", "--replicas=2")
    wait_for(lambda: len(pods(kc, ns)) == 2, timeout=60, what="scaled down to 2")
    kubectl_ok(
        kc,
        "-n",
        ns,
        "expose",
        "deployment",
        "web",
        "--type=LoadBalancer",
        "--port=80",
        "--target-port=8080",
    )
    wait_for(
        lambda: slice_ready(kc, ns) == ready_ips(kc, ns) and len(slice_ready(kc, ns)) == 2,
        timeout=30,
        what="the EndpointSlice listing the two ready pods",
    )
    by_ip = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods(kc, ns)}
    for address in slice_ready(kc, ns):
        assert ask(prefix, address, 8080).split()[0] == by_ip[address]
    assert "web" in kubectl_ok(kc, "-n", ns, "get", "endpointslices")
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": ns},
        "data": {"colour": "blue"},
    }
    kubectl_ok(kc, "apply", "--server-side", "-f", "-", stdin=json.dumps(config))
    got = json.loads(
        kubectl_ok(
            kc, "-n", ns, "get", "configmap", "settings", "-o", "json", "--show-managed-fields"
        )
    )
    assert got["data"] == {"colour": "blue"}
    assert [m["manager"] for m in got["metadata"]["managedFields"]] == ["kubectl"]
    kubectl_ok(kc, "-n", ns, "delete", "deployment", "web")
    wait_for(lambda: pods(kc, ns) == [], timeout=60, what="the pods gone with their Deployment")
    kubectl_ok(kc, "delete", "namespace", ns)


def test_helm_installs_upgrades_and_uninstalls_with_waits(cluster: tuple[str, str]) -> None:
    """Helm's --wait (the kstatus watcher) sees the Deployment's pods become ready."""
    _prefix, kc = cluster
    with Helm(kc, namespace="default") as helm:
        first = helm.install(HELLO, "demo", {"greeting": "hi"}, wait="watcher", timeout=60)
        assert (first.revision, first.status) == (1, "deployed")
        config = json.loads(kubectl_ok(kc, "get", "configmap", "demo-config", "-o", "json"))
        assert config["data"]["greeting"] == "hi"
        second = helm.upgrade(
            HELLO,
            "demo",
            {"greeting": "yo", "deployment": {"replicas": 2}},
            wait="watcher",
            timeout=60,
        )
        assert (second.revision, second.status) == (2, "deployed")
        deployment = json.loads(kubectl_ok(kc, "get", "deployment", "demo-web", "-o", "json"))
        assert deployment["status"]["readyReplicas"] == 2  # real, ready pods
        helm.uninstall("demo")
    wait_for(
        lambda: "demo-web" not in kubectl_ok(kc, "get", "deployments", "-o", "name"),
        timeout=30,
        what="the release's objects gone",
    )
    assert "sh.helm.release.v1.demo" not in kubectl_ok(kc, "get", "secrets", "-o", "name")
