"""The lab kubelet against a real lab: Pods over HTTP become processes in namespaces.

Each test runs a :class:`~ironlb.lab.labcluster.LabCluster` (API server, a
2-node LAN with pod networks, bridges, kubelets) that is torn down afterwards,
also on failure.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import time
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.labcluster import LabCluster
from ironlb.lab.netlab.nsutil import list_netns
from tests.support import ApiClient, eventually

pytestmark = pytest.mark.root

PODS = "/api/v1/namespaces/default/pods"


def _condition(pod: dict[str, Any], kind: str) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def _pid(pod: dict[str, Any]) -> int:
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    assert cid.startswith("lab://"), cid
    return int(cid.removeprefix("lab://"))


async def _ready(api: ApiClient, name: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        pod = await api.get(f"{PODS}/{name}")
        return pod if _condition(pod, "Ready") == "True" else None

    return await eventually(probe, timeout=20, interval=0.02, what=f"pod {name} Ready")


def _web_pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [
                        {"containerPort": 8080, "protocol": "TCP"},
                        {"containerPort": 8053, "protocol": "UDP"},
                    ],
                }
            ],
        },
    }


def _tcp_answer(cluster: LabCluster, address: str, port: int) -> str:
    family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
    with cluster.lab.in_netns(cluster.lab.client):
        sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5)
        sock.connect((address, port))
        return sock.recv(4096).decode()


def _udp_answer(cluster: LabCluster, address: str, port: int) -> str:
    family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
    with cluster.lab.in_netns(cluster.lab.client):
        sock = socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(5)
        sock.sendto(b"who?", (address, port))
        return sock.recv(4096).decode()


async def test_a_pod_runs_answers_restarts_and_goes(cluster: LabCluster, api: ApiClient) -> None:
    await api.create(PODS, _web_pod("web-a", "node2"))
    pod = await _ready(api, "web-a")
    status = pod["status"]
    ips = [a["ip"] for a in status["podIPs"]]
    assert status["podIP"] == ips[0] and status["phase"] == "Running"
    assert ip_address(ips[0]) in ip_network("198.19.2.0/24")
    assert ip_address(ips[1]) in ip_network("fd00:198:19:2::/64")
    assert status["hostIP"] == "198.18.0.12"
    assert _condition(pod, "ContainersReady") == "True"
    netns = f"{cluster.prefix}-node2-pod1"
    assert netns in list_netns(cluster.prefix)
    for address in ips:
        tcp = await asyncio.to_thread(_tcp_answer, cluster, address, 8080)
        udp = await asyncio.to_thread(_udp_answer, cluster, address, 8053)
        assert tcp.startswith("web-a 198.18.0.1:") or tcp.startswith("web-a [fd00:198:18::1]:")
        assert udp.split()[0] == "web-a"

    # Kill the server: not ready within a second, then restarted and ready again.
    first = _pid(pod)
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()

    async def not_ready() -> bool:
        return _condition(await api.get(f"{PODS}/web-a"), "Ready") == "False"

    await eventually(not_ready, timeout=5, interval=0.01, what="Ready False")
    took = time.monotonic() - killed
    print(f"\nkilled -> Ready False seen: {took * 1000:.0f} ms")
    assert took < 1.0
    again = await _ready(api, "web-a")
    restarted = again["status"]["containerStatuses"][0]
    assert restarted["restartCount"] == 1
    assert restarted["lastState"]["terminated"] == {"exitCode": 137, "reason": "Error"}
    assert _pid(again) != first
    assert again["status"]["podIP"] == status["podIP"]  # a restart keeps the address
    assert (await asyncio.to_thread(_tcp_answer, cluster, ips[0], 8080)).startswith("web-a ")

    # Delete: the namespace goes; the next Pod reuses the freed address.
    await api.delete(f"{PODS}/web-a")
    await eventually(
        lambda: netns not in list_netns(cluster.prefix), timeout=20, what="pod netns removed"
    )
    await api.create(PODS, _web_pod("web-b", "node2"))
    reused = await _ready(api, "web-b")
    assert reused["status"]["podIP"] == status["podIP"]
    # A Pod bound to another node is not this node's: node1 runs it, in node1's CIDR.
    await api.create(PODS, _web_pod("web-c", "node1"))
    other = await _ready(api, "web-c")
    assert ip_address(other["status"]["podIP"]) in ip_network("198.19.1.0/24")


async def test_an_ironlb_image_host_network_pod_runs_its_command_with_env_and_files(
    cluster: LabCluster, api: ApiClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    secret = base64.b64encode(b"s3cret").decode()
    await api.create(
        "/api/v1/namespaces/default/secrets",
        {"metadata": {"name": "hb"}, "data": {"key": secret}},
    )
    await api.create(
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "conf"}, "data": {"mode": "kernel"}},
    )
    script = (
        f"env > {out}/env; ip -o -4 addr show eth0 > {out}/addr; "
        f"cat /etc/hb/key > {out}/secret; "
        f"cat /var/run/secrets/kubernetes.io/serviceaccount/namespace > {out}/ns; "
        f"kubectl get pod speaker -o jsonpath={{.spec.nodeName}} > {out}/kubectl 2>&1; "
        f"touch {out}/done"
    )
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HB_KEY", "valueFrom": {"secretKeyRef": {"name": "hb", "key": "key"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "mode"}}},
        {"name": "GREETING", "value": "hi $(NODE_NAME) $$(NODE_NAME)"},
    ]
    await api.create(
        PODS,
        {
            "metadata": {"name": "speaker"},
            "spec": {
                "nodeName": "node1",
                "hostNetwork": True,
                "restartPolicy": "Never",
                "volumes": [{"name": "hb", "secret": {"secretName": "hb"}}],
                "containers": [
                    {
                        "name": "main",
                        "image": "ghcr.io/acme/ironlb:0.1.0",
                        "command": ["sh", "-c", script],
                        "env": env,
                        "volumeMounts": [{"name": "hb", "mountPath": "/etc/hb"}],
                    },
                    {"name": "version", "image": "ironlb:dev", "args": ["--version"]},
                ],
            },
        },
    )

    async def finished() -> dict[str, Any] | None:
        pod = await api.get(f"{PODS}/speaker")
        return pod if pod.get("status", {}).get("phase") == "Succeeded" else None

    pod = await eventually(finished, timeout=30, what="speaker pod Succeeded")
    assert (out / "done").exists()
    seen = dict(
        line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line
    )
    assert seen["NODE_NAME"] == "node1"
    assert seen["POD_NAMESPACE"] == "default"
    assert seen["POD_IP"] == "198.18.0.11" == pod["status"]["podIP"]
    assert seen["HB_KEY"] == "s3cret"
    assert seen["MODE"] == "kernel"
    assert seen["GREETING"] == "hi node1 $(NODE_NAME)"
    assert seen["HOSTNAME"] == "node1"
    assert "198.18.0.11/24" in (out / "addr").read_text()  # the node's namespace
    assert (out / "secret").read_text() == "s3cret"
    assert (out / "ns").read_text() == "default"
    assert (out / "kubectl").read_text() == "node1"  # the lab API, from inside the node
    # `ironlb` as the entry point ran this tree's CLI.
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert statuses["version"]["state"]["terminated"]["exitCode"] == 0
    pod_dir = next((cluster.state_dir / "kubelet" / "node1" / "pods").iterdir())
    assert (pod_dir / "version.log").read_text().startswith("ironlb ")


async def test_a_missing_secret_holds_the_pod_until_it_exists(
    cluster: LabCluster, api: ApiClient
) -> None:
    pod = _web_pod("needs-secret", "node1")
    pod["spec"]["containers"][0]["env"] = [
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}
    ]
    await api.create(PODS, pod)

    async def refused() -> dict[str, Any] | None:
        got = await api.get(f"{PODS}/needs-secret")
        states = (got.get("status") or {}).get("containerStatuses") or [{}]
        waiting = states[0].get("state", {}).get("waiting") or {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = await eventually(refused, timeout=20, what="CreateContainerConfigError")
    assert waiting["message"] == 'secret "later" not found'
    await api.create(
        "/api/v1/namespaces/default/secrets",
        {"metadata": {"name": "later"}, "stringData": {"k": "v"}},
    )
    await _ready(api, "needs-secret")


async def test_readiness_follows_an_http_probe_of_a_hung_server(
    cluster: LabCluster, api: ApiClient
) -> None:
    pod = _web_pod("probed", "node1")
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/", "port": 8080},
        "timeoutSeconds": 1,
        "failureThreshold": 1,
    }
    await api.create(PODS, pod)
    ready = await _ready(api, "probed")
    pid = _pid(ready)
    # Stopped, the process lives and its socket still accepts: only the HTTP
    # answer is missing, and only the probe can tell.
    os.kill(pid, signal.SIGSTOP)
    try:

        async def not_ready() -> dict[str, Any] | None:
            got = await api.get(f"{PODS}/probed")
            return got if _condition(got, "Ready") == "False" else None

        hung = await eventually(not_ready, timeout=10, interval=0.02, what="Ready False")
        assert hung["status"]["containerStatuses"][0]["state"]["running"]
        assert _pid(hung) == pid
    finally:
        os.kill(pid, signal.SIGCONT)
    back = await _ready(api, "probed")
    assert back["status"]["containerStatuses"][0]["restartCount"] == 0


async def test_deletion_waits_the_grace_period_then_kills(
    cluster: LabCluster, api: ApiClient
) -> None:
    script = "trap '' TERM; echo up; exec sleep 600"
    await api.create(
        PODS,
        {
            "metadata": {"name": "stubborn"},
            "spec": {
                "nodeName": "node2",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "main", "image": "ironlb:dev", "command": ["sh", "-c", script]}
                ],
            },
        },
    )
    pod = await _ready(api, "stubborn")
    pid = _pid(pod)
    netns = f"{cluster.prefix}-node2-pod1"
    assert netns in list_netns(cluster.prefix)
    asked = time.monotonic()
    await api.delete(f"{PODS}/stubborn")
    await eventually(lambda: netns not in list_netns(cluster.prefix), timeout=20, what="netns gone")
    took = time.monotonic() - asked
    assert 0.9 <= took < 5, took  # SIGTERM ignored: killed after the 1 s grace period
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


async def test_a_pod_held_by_a_finalizer_is_stopped_on_its_deletion_timestamp(
    cluster: LabCluster, api: ApiClient
) -> None:
    pod = _web_pod("held", "node1")
    pod["metadata"]["finalizers"] = ["example.com/hold"]
    await api.create(PODS, pod)
    await _ready(api, "held")
    netns = f"{cluster.prefix}-node1-pod1"
    assert netns in list_netns(cluster.prefix)
    await api.delete(f"{PODS}/held")
    assert (await api.get(f"{PODS}/held"))["metadata"]["deletionTimestamp"]
    await eventually(lambda: netns not in list_netns(cluster.prefix), timeout=20, what="netns gone")
    await api.patch(f"{PODS}/held", {"metadata": {"finalizers": None}})
    items = await api.items(PODS)
    assert [p["metadata"]["name"] for p in items] == []


def _script_pod(name: str, script: str, policy: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": "node1",
            "restartPolicy": policy,
            "containers": [
                {"name": "main", "image": "ironlb:dev", "command": ["sh", "-c", script]}
            ],
        },
    }


async def test_a_crashing_container_backs_off_and_restart_policy_is_honoured(
    cluster: LabCluster, api: ApiClient
) -> None:
    await api.create(PODS, _script_pod("crashy", "exit 3", "Always"))
    await api.create(PODS, _script_pod("once", "exit 0", "OnFailure"))
    await api.create(PODS, _script_pod("never", "exit 4", "Never"))
    seen: list[tuple[int, str]] = []

    async def looping() -> dict[str, Any] | None:
        statuses = (await api.get(f"{PODS}/crashy")).get("status", {}).get("containerStatuses")
        if not statuses:
            return None
        state = statuses[0]
        waiting = state["state"].get("waiting") or {}
        seen.append((state["restartCount"], waiting.get("reason", "")))
        ok = state["restartCount"] >= 3 and waiting.get("reason") == "CrashLoopBackOff"
        return state if ok else None

    state = await eventually(looping, timeout=30, interval=0.02, what="CrashLoopBackOff")
    assert state["lastState"]["terminated"] == {"exitCode": 3, "reason": "Error"}
    counts = [count for count, _ in seen]
    assert counts == sorted(counts)  # restartCount only grows

    async def phase(name: str, want: str) -> dict[str, Any] | None:
        pod = await api.get(f"{PODS}/{name}")
        return pod if pod.get("status", {}).get("phase") == want else None

    once = await eventually(lambda: phase("once", "Succeeded"), timeout=20, what="once Succeeded")
    never = await eventually(lambda: phase("never", "Failed"), timeout=20, what="never Failed")
    for pod, code in ((once, 0), (never, 4)):
        status = pod["status"]["containerStatuses"][0]
        assert status["restartCount"] == 0
        assert status["state"]["terminated"]["exitCode"] == code
