"""The chart's speaker RBAC against what real ``ironlb speaker`` processes ask the API for.

Two speakers run in lab nodes (as in test_speaker.py) against a recording local
API (tests/chart/rbac_check.py). The test plays the controller itself (it
writes the Service's ingress IP), so every request recorded is a speaker's:
start-up lists, watches, the heartbeat Secret, the node Leases (create, renew,
release on SIGTERM), the ``announcing-node`` annotation and the
``NodeAssigned`` Event. Each must be allowed by the rendered speaker
ClusterRole + Role, and each verb granted must have been used.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ironlb.lab.api_bridge import ApiBridge
from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
from ironlb.lab.apiserver.server import ServerThread
from ironlb.lab.netlab import Lab
from tests.chart.chart_support import NAMESPACE, one, render
from tests.chart.rbac_check import TEST_AGENT, RecordingServer, refused, unused
from tests.support import ApiClient, eventually

from .cluster import POD_TCP, Cluster

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


@contextlib.asynccontextmanager
async def recorded_cluster(tmp: Path) -> AsyncIterator[tuple[Cluster, RecordingServer]]:
    """Lab (2 nodes, a pod each) + recording API + bridge; speakers only, no controller."""
    lab = Lab(nodes=2, backends=0, pods_per_node=1)
    await asyncio.to_thread(lab.up)
    api = ServerThread()
    recorder = RecordingServer()
    api.server = recorder
    bridge: ApiBridge | None = None
    the: Cluster | None = None
    try:
        await asyncio.to_thread(api.start)
        host, port = api.url.rsplit("/", 1)[-1].rsplit(":", 1)
        bridge = ApiBridge((host, int(port)))
        for node in lab.nodes:
            await bridge.add(node.netns)
        the = Cluster(lab, api, bridge, tmp)
        write_kubeconfig(the.kubeconfig_node, bridge.url)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(
            api.url,
            connector=connector,
            headers={"User-Agent": TEST_AGENT},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as http:
            the.client = ApiClient(http)
            await the.install()
            yield the, recorder
    finally:
        if the is not None:
            for name in list(the.speakers):
                with contextlib.suppress(Exception):
                    the.stop_speaker(name, signal.SIGKILL, timeout=10)
        if bridge is not None:
            await bridge.close()
        await asyncio.to_thread(lab.down)
        await asyncio.to_thread(api.stop)


async def test_speaker_rbac_allows_every_request_and_nothing_unused(tmp_path: Path) -> None:
    objs = render()
    cluster_rules = one(objs, "ClusterRole", "ironlb-speaker")["rules"]
    role_rules = one(objs, "Role", "ironlb-speaker")["rules"]
    async with recorded_cluster(tmp_path) as (the, recorder):
        for node in the.lab.nodes:
            the.start_speaker(node)
        ports = [{"name": "http", "port": 80, "targetPort": POD_TCP, "protocol": "TCP"}]
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "ports": ports,
                "allocateLoadBalancerNodePorts": False,
            },
        }
        path = "/api/v1/namespaces/default/services/web"
        await the.call("POST", "/api/v1/namespaces/default/services", body)
        await the.set_endpoints("web", list(the.lab.pods), ports=ports)
        status = {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.200"}]}}}
        await the.call("PATCH", f"{path}/status", status)  # what the controller would write

        async def announced() -> bool:
            return await the.announcing_node(
                "web"
            ) is not None and "NodeAssigned" in await the.event_reasons("web")

        await eventually(announced, timeout=60, what="an announcing node and its Event")
        renewals = sum(1 for m, p, _ in recorder.seen if m == "PUT" and "leases" in p)
        await eventually(
            lambda: (
                sum(1 for m, p, _ in recorder.seen if m == "PUT" and "leases" in p) > renewals + 1
            ),
            timeout=10,
            what="node Lease renewals",
        )
        for name in list(the.speakers):
            the.stop_speaker(name)  # SIGTERM: releases its Lease

    requests = recorder.requests()
    problems = refused(requests, cluster_rules, role_rules, NAMESPACE)
    assert problems == [], f"the chart's RBAC would refuse: {problems}"
    needless = unused(requests, cluster_rules, role_rules, NAMESPACE)
    assert needless == [], f"granted but never used: {needless}"
