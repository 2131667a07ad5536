"""``ironlb controller`` as a lab Pod: the kubelet runs the project's own process end to end.

The Pod (image ``ironlb:dev``, its own network namespace) logs in with the
per-pod kubeconfig through the API bridge, turns Ready by its ``/readyz``
httpGet probe, and allocates an address to a LoadBalancer Service.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ironlb.lab.labcluster import LabCluster
from tests.support import ApiClient, eventually

pytestmark = pytest.mark.root

CRD = Path(__file__).resolve().parents[2] / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
NS = "/api/v1/namespaces/default"


@pytest.fixture
def cluster_nodes() -> int:
    return 1


def _controller_pod() -> dict[str, Any]:
    field = {"fieldRef": {"fieldPath": "metadata.name"}}
    return {
        "metadata": {"name": "controller-0"},
        "spec": {
            "nodeName": "node1",
            "containers": [
                {
                    "name": "controller",
                    "image": "ironlb:dev",
                    "args": ["controller", "--metrics-address", "0.0.0.0:7472"],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": field},
                        {
                            "name": "POD_NAMESPACE",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                    ],
                    "ports": [{"name": "metrics", "containerPort": 7472}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}},
                }
            ],
        },
    }


async def test_a_controller_pod_logs_in_turns_ready_and_allocates(
    cluster: LabCluster, api: ApiClient
) -> None:
    await api.create(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(CRD.read_text())
    )
    pools = "/apis/ironlb.io/v1alpha1/ipaddresspools"

    async def served() -> bool:
        async with api.http.get(pools) as rsp:
            return rsp.status == 200

    await eventually(served, what="CRD served")
    await api.create(
        pools,
        {
            "apiVersion": "ironlb.io/v1alpha1",
            "kind": "IPAddressPool",
            "metadata": {"name": "lab"},
            "spec": {"addresses": ["198.18.0.200-198.18.0.209"]},
        },
    )
    await api.create(f"{NS}/pods", _controller_pod())

    async def ready() -> dict[str, Any] | None:
        pod = await api.get(f"{NS}/pods/controller-0")
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
        return pod if conds.get("Ready") == "True" else None

    pod = await eventually(ready, timeout=60, what="controller pod Ready (/readyz)")
    assert pod["status"]["podIP"].startswith("198.19.1.")
    await api.create(
        f"{NS}/services",
        {
            "metadata": {"name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "allocateLoadBalancerNodePorts": False,
                "ports": [{"port": 80}],
            },
        },
    )

    async def allocated() -> list[str] | None:
        svc = await api.get(f"{NS}/services/web")
        ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return [i["ip"] for i in ingress] or None

    assert await eventually(allocated, timeout=30, what="an ingress IP") == ["198.18.0.200"]
    leases = await api.items("/apis/coordination.k8s.io/v1/namespaces/default/leases")
    assert [lease["spec"].get("holderIdentity") for lease in leases] == ["controller-0"]


async def test_a_host_network_speaker_pod_holds_its_node_lease_until_deleted(
    cluster: LabCluster, api: ApiClient
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    await api.create(
        f"{NS}/secrets", {"metadata": {"name": "ironlb-heartbeat"}, "data": {"key": key}}
    )
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    await api.create(
        f"{NS}/pods",
        {
            "metadata": {"name": "speaker-node1"},
            "spec": {
                "nodeName": "node1",
                "hostNetwork": True,
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": "speaker",
                        "image": "ironlb:dev",
                        "command": ["ironlb", "speaker", "--drain-seconds", "0"],
                        "env": env,
                    }
                ],
            },
        },
    )
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/ironlb-speaker-node1"

    async def holder() -> str | None:
        async with api.http.get(lease_path) as rsp:
            if rsp.status != 200:
                return None
            lease = await rsp.json()
        return lease["spec"].get("holderIdentity") or None

    assert await eventually(holder, timeout=60, what="the node Lease held")
    pod = await api.get(f"{NS}/pods/speaker-node1")
    assert pod["status"]["podIP"] == "198.18.0.11"
    await api.delete(f"{NS}/pods/speaker-node1")

    async def released() -> bool:
        return await holder() is None

    # SIGTERM reached the speaker, which hands over and releases its Lease.
    await eventually(released, timeout=20, what="the node Lease released")
