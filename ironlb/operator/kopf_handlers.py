"""The kopf side of the controller: watch handlers and the pool admission webhook.

Builds a private :class:`kopf.OperatorRegistry` whose handlers only forward
to an :class:`~ironlb.operator.controller.AllocationController`:

- ``kopf.on.event`` for Services, IPAddressPools and Namespaces (no
  finalizers, no progress annotations: every event is handled from the
  object itself, which is what makes 10,000 Services cheap);
- ``kopf.on.validate`` for IPAddressPools: refuses invalid specs and pools
  overlapping an existing one (:mod:`ironlb.operator.webhook`);
- ``kopf.on.login`` returning the connection the controller was given.

The handlers run on both replicas; the controller ignores events while it is
not the leader, and the webhook answers on both (the API server may call
either replica).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import kopf

from ironlb.operator.controller import AllocationController
from ironlb.operator.controller_metrics import ControllerMetrics
from ironlb.operator.k8s_adapter import KubeApi
from ironlb.operator.pool_status import POOLS
from ironlb.operator.webhook import pool_admission_problem

__all__ = ["VALIDATE_POOL_ID", "build_registry"]

VALIDATE_POOL_ID = "validate-ipaddresspool"


def build_registry(
    controller: AllocationController,
    api: KubeApi,
    connection: kopf.ConnectionInfo,
    *,
    webhook: bool,
    metrics: ControllerMetrics | None = None,
) -> kopf.OperatorRegistry:
    """Handlers for ``controller``; the pool webhook only if ``webhook`` (a server is set).

    With ``metrics``, each watch event's handling time is observed per resource.
    """
    registry = kopf.OperatorRegistry()

    async def timed(resource: str, handle: Awaitable[None]) -> None:
        began = time.perf_counter()
        try:
            await handle
        finally:
            if metrics is not None:
                metrics.handled(resource, time.perf_counter() - began)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    @kopf.on.event("", "v1", "services", id="services", registry=registry)
    async def service_event(event: kopf.RawEvent, **_: Any) -> None:
        kind = event.get("type") or "ADDED"
        await timed("services", controller.on_service(kind, event["object"]))

    @kopf.on.event("ironlb.io", "v1alpha1", "ipaddresspools", id="pools", registry=registry)
    async def pool_event(event: kopf.RawEvent, **_: Any) -> None:
        await timed("pools", controller.on_pool(event.get("type") or "ADDED", event["object"]))

    @kopf.on.event("", "v1", "namespaces", id="namespaces", registry=registry)
    async def namespace_event(event: kopf.RawEvent, **_: Any) -> None:
        kind = event.get("type") or "ADDED"
        await timed("namespaces", controller.on_namespace(kind, event["object"]))

    if not webhook:
        return registry

    @kopf.on.validate(
        "ironlb.io",
        "v1alpha1",
        "ipaddresspools",
        id=VALIDATE_POOL_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    async def validate_pool(name: str | None, spec: kopf.Spec, **_: Any) -> None:
        others = [
            (str(obj["metadata"]["name"]), obj.get("spec") or {}) async for obj in api.list(POOLS)
        ]
        problem = pool_admission_problem(name or "", dict(spec), others)
        if problem is not None:
            raise kopf.AdmissionError(problem, code=422)

    return registry
