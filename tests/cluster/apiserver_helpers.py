"""Small helpers shared by the local API server's own tests (CRD bodies, polling,
running a kopf operator, running kubectl against it)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import kopf

T = TypeVar("T")


def widget_crd(
    *, scope: str = "Namespaced", status: bool = True, group: str = "lab.ironlb.io"
) -> dict[str, Any]:
    """A CustomResourceDefinition for ``widgets.<group>`` with versions v1 (storage) and v1beta1."""
    subresources: dict[str, Any] = {"status": {}} if status else {}
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": schema,
                    "subresources": subresources,
                },
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": False,
                    "schema": schema,
                    "subresources": subresources,
                },
            ],
        },
    }


@contextlib.asynccontextmanager
async def running_operator(
    registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings
) -> AsyncIterator[None]:
    """Run a kopf operator (standalone, clusterwide) as a task of this loop until the
    block ends; the block starts once kopf is ready. Hang guard: 30 s each way."""
    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    )
    try:
        async with asyncio.timeout(30):
            await ready_flag.wait()
        yield
    finally:
        stop_flag.set()
        async with asyncio.timeout(30):
            await operator


async def call(
    http: aiohttp.ClientSession, method: str, path: str, expect: int, **kwargs: Any
) -> dict[str, Any]:
    """One request; asserts the status code and a JSON reply, returns the body."""
    async with http.request(method, path, **kwargs) as rsp:
        body: dict[str, Any] = await rsp.json(content_type=None)
        assert rsp.status == expect, body
        assert rsp.headers["Content-Type"].startswith("application/json")
        return body


def run_kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl --kubeconfig=KUBECONFIG ARGS`` (its discovery cache beside the
    kubeconfig, so no test shares one); text output, 60 s at most."""
    return subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={kubeconfig.parent / 'cache'}",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def kubectl_ok(kubeconfig: str | Path, *args: str, stdin: str | None = None) -> str:
    """:func:`run_kubectl` that must succeed; its stdout."""
    res = run_kubectl(Path(kubeconfig), *args, stdin=stdin)
    assert res.returncode == 0, (args, res.stderr)
    return res.stdout
