"""Kubelets with the lab workload controllers: a killed server leaves the EndpointSlice's ready set.

Skips while ``ironlb.lab.workloads`` (the Deployment and EndpointSlice
controllers) is not in the tree; :class:`LabCluster` runs them when it is.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from ironlb.lab.labcluster import LabCluster
from tests.support import ApiClient, eventually

pytest.importorskip("ironlb.lab.workloads")

pytestmark = pytest.mark.root

NS = "/api/v1/namespaces/default"


async def _slice_ready(api: ApiClient) -> dict[str, bool]:
    """Endpoint address -> ready, over the EndpointSlices of Service web."""
    slices = await api.items(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        labelSelector="kubernetes.io/service-name=web",
    )
    return {
        address: bool((ep.get("conditions") or {}).get("ready"))
        for s in slices
        for ep in s.get("endpoints") or []
        for address in ep.get("addresses") or []
    }


async def test_a_killed_pod_leaves_the_ready_set_within_a_second_and_returns(
    cluster: LabCluster, api: ApiClient
) -> None:
    assert cluster.workloads
    labels = {"app": "web"}
    await api.create(
        "/apis/apps/v1/namespaces/default/deployments",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}
                        ]
                    },
                },
            },
        },
    )
    await api.create(
        f"{NS}/services",
        {"metadata": {"name": "web"}, "spec": {"selector": labels, "ports": [{"port": 8080}]}},
    )

    async def two_ready() -> dict[str, bool] | None:
        found = await _slice_ready(api)
        v4 = {a: r for a, r in found.items() if ":" not in a}
        return found if len(v4) == 2 and all(v4.values()) else None

    await eventually(two_ready, timeout=30, what="2 ready endpoints")
    pods: list[dict[str, Any]] = await api.items(f"{NS}/pods", labelSelector="app=web")
    victim = pods[0]
    address = victim["status"]["podIP"]
    pid = int(victim["status"]["containerStatuses"][0]["containerID"].removeprefix("lab://"))
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    async def left() -> bool:
        return (await _slice_ready(api)).get(address) is not True

    await eventually(left, timeout=5, interval=0.01, what="endpoint not ready")
    took = time.monotonic() - killed
    print(f"\nkilled -> out of the EndpointSlice ready set: {took * 1000:.0f} ms")
    assert took < 1.0

    async def back() -> bool:
        return (await _slice_ready(api)).get(address) is True

    await eventually(back, timeout=20, what="endpoint ready again")
