"""The chart's controller RBAC against what the controller really asks the API for.

A recording local API server (tests/chart/rbac_check.py) notes every request
the in-process controller makes while it allocates an address, posts an
Event, writes pool status and renews and releases its Lease. Each request must
be allowed by the rendered ClusterRole + Role, and each verb the chart grants
must have been used (least privilege: no rule the code does not need).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ironlb.lab.apiserver import LocalApiServer
from ironlb.lab.apiserver.audit import RequestInfo, request_info
from ironlb.lab.rbac import allows, parse_rule
from tests.chart.chart_support import NAMESPACE, one, render
from tests.chart.rbac_check import TEST_AGENT, RecordingServer, grants, refused, unused
from tests.cluster.controller_support import (
    POOLS,
    Api,
    ingress_ips,
    pool_body,
    running_controller,
    service_body,
    services_path,
)
from tests.support import eventually

pytestmark = pytest.mark.cluster


@contextlib.asynccontextmanager
async def client_for(server: LocalApiServer) -> AsyncIterator[Api]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(
        server.url,
        connector=connector,
        headers={"User-Agent": TEST_AGENT},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as http:
        yield Api(http)


async def test_controller_rbac_allows_every_request_and_nothing_unused() -> None:
    objs = render()
    cluster_rules = one(objs, "ClusterRole", "ironlb-controller")["rules"]
    role_rules = one(objs, "Role", "ironlb-controller")["rules"]
    server = RecordingServer()
    await server.start()
    try:
        async with client_for(server) as api:
            await api.install()
            await api.create(POOLS, pool_body("web", ["198.18.60.0/24"]))
            async with running_controller(server, webhook_port=None):
                await api.create(services_path(), service_body("web"))

                async def allocated() -> bool:
                    svc = await api.service("web")
                    return bool(ingress_ips(svc)) and "IPAllocated" in await api.event_reasons(
                        "web"
                    )

                await eventually(allocated, timeout=30)

                async def pool_status() -> bool:
                    pool = await api.get(f"{POOLS}/web")
                    return bool((pool.get("status") or {}).get("usedText") == "1")

                await eventually(pool_status, timeout=30)
                renewals = server.count("update", "leases")
                await eventually(lambda: server.count("update", "leases") > renewals, timeout=10)
    finally:
        await server.stop()

    requests = server.requests()
    problems = refused(requests, cluster_rules, role_rules, NAMESPACE)
    assert problems == [], f"the chart's RBAC would refuse: {problems}"
    needless = unused(requests, cluster_rules, role_rules, NAMESPACE)
    assert needless == [], f"granted but never used: {needless}"


def test_the_check_refuses_what_the_rules_do_not_grant() -> None:
    """The check above can fail: other verbs, resources, names and namespaces are refused."""
    cluster_rules = one(render(), "ClusterRole", "ironlb-controller")["rules"]
    role_rules = one(render(), "Role", "ironlb-controller")["rules"]
    rules = [parse_rule(r) for r in [*cluster_rules, *role_rules]]
    secret = request_info("GET", "/api/v1/namespaces/ironlb-system/secrets/ironlb-heartbeat", {})
    delete = request_info("DELETE", "/api/v1/namespaces/default/services/web", {})
    other_lease = request_info(
        "PUT", "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases/x", {}
    )
    for request in (secret, delete, other_lease):
        assert not any(allows(rule, request) for rule in rules)
    assert refused([delete], cluster_rules, role_rules, NAMESPACE) == [
        "used, not granted (1x): delete core/services web in default"
    ]
    renew = request_info(
        "PUT", "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases/ironlb-controller", {}
    )
    assert (renew.verb, renew.group, renew.resource, renew.namespace, renew.name) == (
        "update",
        "coordination.k8s.io",
        "leases",
        "ironlb-system",
        "ironlb-controller",
    )
    role = grants([], role_rules, NAMESPACE)
    assert any(allows(g.rule, renew) for g in role)
    elsewhere = RequestInfo(
        renew.verb, "", renew.group, "", renew.resource, "", "other", renew.name
    )
    assert refused([elsewhere], [], role_rules, NAMESPACE) != []  # a Role binds in its namespace
