"""The chart's controller RBAC against what the controller really asks the API for.

A recording local API server notes every request the in-process controller
makes while it allocates an address, posts an Event, writes pool status and
renews and releases its Lease. Each request, turned into the attributes the
Kubernetes authorizer checks (verb, API group, resource/subresource,
namespace, name; see the Kubernetes "Authorization" docs, "Determine the
request verb"), must be allowed by the rendered ClusterRole + Role; and each
verb the chart grants must have been used (least privilege: no rule the code
does not need). Discovery (``/api``, ``/apis``, ``/version``) is allowed to
every authenticated user by Kubernetes' own ``system:discovery`` role.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ironlb.lab.apiserver import LocalApiServer
from tests.chart.chart_support import NAMESPACE, one, render
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

TEST_AGENT = "ironlb-chart-rbac-test"


@dataclass(frozen=True)
class Attributes:
    """A resource request as the authorizer sees it."""

    verb: str
    group: str
    resource: str  # "services" or "services/status"
    namespace: str | None
    name: str | None


class RecordingServer(LocalApiServer):
    """The local API, noting (method, path, watch?) of every request not sent by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, bool]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("User-Agent") != TEST_AGENT:
            watch = request.query.get("watch") in ("true", "1")
            self.seen.append((request.method, request.path, watch))
        return await super()._handle(request)


def attributes(method: str, path: str, watch: bool) -> Attributes | None:
    """The authorizer's view of one request; ``None`` for discovery (non-resource) paths."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "get" if name else ("watch" if watch else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return Attributes(verb, group, resource, namespace, name)


def allowed_by(rule: dict[str, Any], request: Attributes) -> bool:
    names = rule.get("resourceNames")
    return (
        request.group in rule["apiGroups"]
        and request.resource in rule["resources"]
        and request.verb in rule["verbs"]
        and (not names or request.name in names)
    )


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
                renewals = sum(1 for m, p, _ in server.seen if m == "PUT" and "leases" in p)
                await eventually(
                    lambda: (
                        sum(1 for m, p, _ in server.seen if m == "PUT" and "leases" in p) > renewals
                    ),
                    timeout=10,
                )
    finally:
        await server.stop()

    requests = {a for m, p, w in server.seen if (a := attributes(m, p, w)) is not None}
    refused = sorted(
        str(r)
        for r in requests
        if not any(allowed_by(rule, r) for rule in cluster_rules)
        and not (r.namespace == NAMESPACE and any(allowed_by(rule, r) for rule in role_rules))
    )
    assert refused == [], f"the chart's RBAC would refuse: {refused}"
    unused = sorted(
        f"{rule['resources']} {verb}"
        for rule in [*cluster_rules, *role_rules]
        for verb in rule["verbs"]
        if not any(
            allowed_by({**rule, "verbs": [verb]}, r)
            and (rule in cluster_rules or r.namespace == NAMESPACE)
            for r in requests
        )
    )
    assert unused == [], f"granted but never used: {unused}"


def test_the_check_refuses_what_the_rules_do_not_grant() -> None:
    """The check above can fail: other verbs, resources, names and namespaces are refused."""
    cluster_rules = one(render(), "ClusterRole", "ironlb-controller")["rules"]
    role_rules = one(render(), "Role", "ironlb-controller")["rules"]
    secret = attributes("GET", "/api/v1/namespaces/ironlb-system/secrets/ironlb-heartbeat", False)
    delete = attributes("DELETE", "/api/v1/namespaces/default/services/web", False)
    other_lease = attributes(
        "PUT", "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases/x", False
    )
    assert attributes("GET", "/apis/ironlb.io/v1alpha1", False) is None  # discovery
    for request in (secret, delete, other_lease):
        assert request is not None
        assert not any(allowed_by(rule, request) for rule in [*cluster_rules, *role_rules])
    renew = attributes(
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases/ironlb-controller",
        False,
    )
    assert renew == Attributes(
        "update", "coordination.k8s.io", "leases", "ironlb-system", "ironlb-controller"
    )
    assert any(allowed_by(rule, renew) for rule in role_rules)
