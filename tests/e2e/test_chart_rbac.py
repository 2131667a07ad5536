"""The chart's RBAC against what the real controller and ``ironlb speaker`` processes ask
the API for, end to end in the lab.

The harness runs the controller and a speaker per node as the ServiceAccounts the
chart creates (tokens from TokenRequest), and the lab API's audit log records who made
each request: start-up lists, watches, the heartbeat Secret, the Leases (create,
renew, release on SIGTERM), Service status and the ``announcing-node`` annotation,
Events. Each request must be allowed by the rendered ClusterRole + Role of its
component, and each verb x resource granted must have been used.
"""

from __future__ import annotations

import pytest

from tests.chart.chart_support import NAMESPACE, one, render
from tests.chart.rbac_check import refused, unused
from tests.support import eventually

from .cluster import CONTROLLER_SA, NS, SPEAKER_SA, Cluster

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


async def test_chart_rbac_allows_every_request_and_nothing_unused(lab_cluster: Cluster) -> None:
    cl = lab_cluster
    assert NS == NAMESPACE
    vip = await cl.expose("web", list(cl.lab.pods))

    async def announced() -> bool:
        return await cl.announcing_node("web") is not None and "NodeAssigned" in (
            await cl.event_reasons("web")
        )

    await eventually(announced, timeout=60, what="an announcing node and its Event")
    assert vip

    def renewals(account: str) -> int:
        return sum(
            1 for r in cl.requests_of(account) if (r.verb, r.resource) == ("update", "leases")
        )

    before = {a: renewals(a) for a in (CONTROLLER_SA, SPEAKER_SA)}
    await eventually(
        lambda: all(renewals(a) > before[a] + 1 for a in before), timeout=15, what="renewals"
    )
    for name in list(cl.speakers):
        cl.stop_speaker(name)  # SIGTERM: releases its Lease
    objs = render()
    for account in (CONTROLLER_SA, SPEAKER_SA):
        cluster_rules = one(objs, "ClusterRole", account)["rules"]
        role_rules = one(objs, "Role", account)["rules"]
        requests = cl.requests_of(account)
        assert requests, f"no request recorded for {account}"
        problems = refused(requests, cluster_rules, role_rules, NAMESPACE)
        assert problems == [], f"the chart's RBAC would refuse {account}: {problems}"
        needless = unused(requests, cluster_rules, role_rules, NAMESPACE)
        assert needless == [], f"granted to {account} but never used: {needless}"
