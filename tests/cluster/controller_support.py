"""Helpers for the controller's cluster tests: the CRD, object bodies, a running controller."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
import yaml

from ironlb.lab.apiserver import LocalApiServer
from ironlb.operator.controller import AllocationController
from ironlb.operator.controller_runtime import ControllerConfig, run_controller
from tests.support import ApiClient, eventually
from tests.support import api_client as support_client

CRD_PATH = Path(__file__).resolve().parents[2] / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
POOLS = "/apis/ironlb.io/v1alpha1/ipaddresspools"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases"


def services_path(namespace: str = "default") -> str:
    return f"/api/v1/namespaces/{namespace}/services"


def pool_body(name: str, addresses: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ironlb.io/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": addresses, **spec},
    }


def service_body(
    name: str,
    *,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    ports: list[tuple[str, int]] = (("TCP", 80),),  # type: ignore[assignment]
    type_: str = "LoadBalancer",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "type": type_,
            "selector": {"app": name},
            "allocateLoadBalancerNodePorts": False,
            "ports": [
                {"name": f"p{i}", "protocol": proto, "port": port}
                for i, (proto, port) in enumerate(ports)
            ],
            **spec,
        },
    }


def ingress_ips(service: dict[str, Any]) -> list[str]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [entry["ip"] for entry in ingress]


class Api(ApiClient):
    """The shared JSON client plus this package's set-up steps (CRD, namespaces)."""

    async def install(self) -> None:
        """The CRD and the controller namespace."""
        crd = yaml.safe_load(CRD_PATH.read_text())
        await self.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        await self.ensure_namespace("ironlb-system")

        async def served() -> bool:
            async with self.http.get(POOLS) as rsp:
                return rsp.status == 200

        await eventually(served)

    async def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        async with self.http.get(f"/api/v1/namespaces/{name}") as rsp:
            if rsp.status == 200:
                return
        await self.create(
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            },
        )


@contextlib.asynccontextmanager
async def api_client(server: LocalApiServer) -> AsyncIterator[Api]:
    """An :class:`Api` for ``server`` (a fresh connection per request, 30 s guard)."""
    async with support_client(server.url) as client:
        yield Api(client.http)


@contextlib.asynccontextmanager
async def controllers(
    kubeconfig: Path,
    identities: list[str],
    logs: Path,
    *,
    extra: dict[str, list[str]] | None = None,
) -> AsyncIterator[dict[str, asyncio.subprocess.Process]]:
    """``ironlb controller`` processes (4 s lease), logs in ``logs/<identity>.log``, killed after.

    ``extra`` adds arguments per identity.
    """
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for identity in identities:
            log = (logs / f"{identity}.log").open("wb")
            procs[identity] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ironlb.cli",
                "controller",
                "--identity",
                identity,
                "--namespace",
                "ironlb-system",
                "--lease-duration",
                "4",
                "--renew-period",
                "0.5",
                *(extra or {}).get(identity, []),
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            log.close()
        yield procs
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def running_controller(
    server: LocalApiServer, *, wait_active: bool = True, **overrides: Any
) -> AsyncIterator[AllocationController]:
    """An in-process controller (kopf task + election); stopped cleanly on exit."""
    options: dict[str, Any] = {
        "namespace": "ironlb-system",
        "identity": "test-controller",
        "lease_duration": 4,
        "renew_period": 0.5,
        "pool_status_interval": 0.2,
    }
    options.update(overrides)
    config = ControllerConfig(**options)
    stop = asyncio.Event()
    box: list[AllocationController] = []
    task = asyncio.create_task(
        run_controller(
            config, kopf.ConnectionInfo(server=server.url), stop=stop, controller_box=box
        )
    )
    try:
        await eventually(lambda: _first(box), timeout=10)
        controller = box[0]
        if wait_active:

            async def active() -> bool:
                if task.done():
                    task.result()
                return controller.ready

            await eventually(active, timeout=30)
        yield controller
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await task


async def _first(box: list[AllocationController]) -> bool:
    return bool(box)
