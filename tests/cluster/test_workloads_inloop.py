"""``ironlb.lab.workloads.run`` in the same event loop as the lab API (as ``ironlb lab
cluster up`` runs them): it serves, reacts, and returns promptly once ``stop`` is set."""

from __future__ import annotations

import asyncio

import pytest

from ironlb.lab.apiserver import LocalApiServer
from ironlb.lab.workloads import ClientConfig, run
from tests.support import api_client, eventually

pytestmark = pytest.mark.cluster


async def test_run_in_the_api_loop_and_stop(apiserver: LocalApiServer) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run(ClientConfig(apiserver.url), stop=stop, nodes=[1, 2]))
    try:
        async with api_client(apiserver.url) as api:
            await eventually(
                lambda: api.items("/api/v1/nodes"), what="the nodes registered", timeout=10
            )
            await api.create(
                "/apis/apps/v1/namespaces/default/daemonsets",
                {
                    "metadata": {"name": "agent"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "agent"}},
                        "template": {
                            "metadata": {"labels": {"app": "agent"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]},
                        },
                    },
                },
            )

            async def two_pods() -> list[str]:
                pods = await api.items("/api/v1/namespaces/default/pods")
                nodes = sorted(p["spec"]["nodeName"] for p in pods)
                return nodes if nodes == ["node1", "node2"] else []

            await eventually(two_pods, what="one agent pod per node", timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    assert task.done() and task.exception() is None
