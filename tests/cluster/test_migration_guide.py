"""docs/migrating-from-metallb.md, run as written against the lab API and the real controller.

The guide's checked blocks (``<!-- checked: NAME -->`` before a fenced block) are taken
from the file: the MetalLB manifest is written where the steps expect it and each shell
block runs in bash with the real ``lbctl`` and kubectl 1.32. The test plays MetalLB (a
small loop giving Services without a class the lowest free address of its pool, and letting
go when one stops being a LoadBalancer) and runs ``ironlb controller`` as the guide says:
first with ``--ignore-unset-class``, then, after the switch, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.controller_support import (
    POOLS,
    Api,
    api_client,
    controllers,
    ingress_ips,
    service_body,
    services_path,
)
from tests.support import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

GUIDE = Path(__file__).resolve().parents[2] / "docs/migrating-from-metallb.md"
METALLB_RANGE = ipaddress.ip_network("198.18.10.0/24")
POOL_NOTE = "ironlb.io/ip-allocated-from-pool"


def checked_blocks() -> dict[str, str]:
    """The guide's checked blocks by name."""
    found = re.findall(
        r"<!-- checked: (\S+) -->\n```\w+\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL
    )
    return dict(found)


async def run_block(block: str, cwd: Path, kubeconfig: Path) -> str:
    """Run one shell block as written (bash, stop at the first failure); its stdout."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        block,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{block}\n--- stderr:\n{err.decode()}"
    return out.decode()


@contextlib.asynccontextmanager
async def metallb(api: Api) -> AsyncIterator[None]:
    """MetalLB's controller, as far as this guide needs it: Services of type LoadBalancer
    without a class get the lowest address of 198.18.10.0/24 no Service shows; one that
    stops being a LoadBalancer (and has no class) has its address cleared."""

    async def loop() -> None:
        while True:
            services = await api.items("/api/v1/services")
            shown = {ip for s in services for ip in ingress_ips(s)}
            for svc in services:
                spec, meta = svc["spec"], svc["metadata"]
                if spec.get("loadBalancerClass"):
                    continue
                path = f"{services_path(meta['namespace'])}/{meta['name']}/status"
                if spec.get("type") == "LoadBalancer" and not ingress_ips(svc):
                    ip = next(str(a) for a in METALLB_RANGE if str(a) not in shown)
                    shown.add(ip)
                    await api.patch(path, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
                elif spec.get("type") != "LoadBalancer" and ingress_ips(svc):
                    await api.patch(path, {"status": {"loadBalancer": {"ingress": None}}})
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def shows(api: Api, name: str, ip: str, *, by_ironlb: bool) -> dict[str, Any] | None:
    """The Service once it shows ``ip``, written by ironlb (pool note, ``ipMode: Proxy``) or not."""
    svc = await api.service(name)
    ingress = svc["status"].get("loadBalancer", {}).get("ingress") or []
    ours = (svc["metadata"].get("annotations") or {}).get(POOL_NOTE) == "lan" and all(
        e.get("ipMode") == "Proxy" for e in ingress
    )
    return svc if ingress_ips(svc) == [ip] and ours == by_ironlb else None


async def test_migration_guide_steps_against_the_lab(
    apiserver: LocalApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    blocks = checked_blocks()
    assert set(blocks) == {"metallb.yaml", "import", "move", "switch"}
    text = GUIDE.read_text()
    assert "ironlb controller --ignore-unset-class" in text
    assert "--ignore-unset-class" in text.split("## 2.")[1].split("## 3.")[0]
    work = tmp_path / "work"
    work.mkdir()
    (work / "metallb.yaml").write_text(blocks["metallb.yaml"])

    async with api_client(apiserver) as api, metallb(api):
        await api.install()
        await api.ensure_namespace("default")
        for name, ip in (("web", "198.18.10.0"), ("legacy", "198.18.10.1")):
            await api.create(services_path(), service_body(name))
            await eventually(functools.partial(shows, api, name, ip, by_ironlb=False))

        # 1. The pools come over, not auto-assigning while MetalLB serves the same range.
        printed = await run_block(blocks["import"], work, kubeconfig)
        assert "kind: IPAddressPool" in printed and "name: lan" in printed
        lan = (await api.get(f"{POOLS}/lan"))["spec"]
        assert lan["addresses"] == ["198.18.10.0/24"] and lan["autoAssign"] is False
        assert lan["l2"] == {"interfaces": ["eth0"]}
        assert (work / "auto-assign.txt").read_text() == "lan true\n"

        # 2. ironlb beside MetalLB: it takes only its class, and never hands out MetalLB's.
        logs = tmp_path / "logs"
        logs.mkdir()
        async with controllers(
            kubeconfig, ["beside"], logs, extra={"beside": ["--ignore-unset-class"]}
        ):

            async def counted() -> dict[str, Any] | None:
                status = (await api.get(f"{POOLS}/lan")).get("status") or {}
                return status if status.get("usedText") == "2" else None

            await eventually(counted, timeout=60, what="MetalLB's two addresses held")
            fresh = service_body(
                "fresh",
                annotations={"ironlb.io/address-pool": "lan"},
                loadBalancerClass="ironlb.io/ironlb",
            )
            await api.create(services_path(), fresh)
            await eventually(lambda: shows(api, "fresh", "198.18.10.2", by_ironlb=True))

            # 3. Move web as the guide says: same address, now ironlb's.
            await run_block(blocks["move"], work, kubeconfig)
            moved = await eventually(lambda: shows(api, "web", "198.18.10.0", by_ironlb=True))
            assert moved["spec"]["loadBalancerClass"] == "ironlb.io/ironlb"
            assert await shows(api, "legacy", "198.18.10.1", by_ironlb=False)  # left alone
            legacy_events = await api.event_reasons("legacy")
            assert not {"IPAllocated", "AllocationFailed", "ClearAssignment"} & set(legacy_events)

    # 4. MetalLB is gone; the pools auto-assign again; ironlb restarts without the flag.
    async with api_client(apiserver) as api:
        await run_block(blocks["switch"], work, kubeconfig)
        assert (await api.get(f"{POOLS}/lan"))["spec"]["autoAssign"] is True
        async with controllers(kubeconfig, ["after"], logs):
            await eventually(
                lambda: shows(api, "legacy", "198.18.10.1", by_ironlb=True), timeout=60
            )
            await api.create(services_path(), service_body("later"))
            await eventually(lambda: shows(api, "later", "198.18.10.3", by_ironlb=True))
            assert await shows(api, "web", "198.18.10.0", by_ironlb=True)
            assert await shows(api, "fresh", "198.18.10.2", by_ironlb=True)
