"""``kubectl get ipaddresspools`` (real kubectl 1.32) against the lab API and the real controller.

The printer columns must read like kubectl's own: ADDRESSES as plain text, USED and FREE
exactly as the Ready condition's message says them (also for a /64, whose size does not fit
the int64 counters), STATUS ``Ready`` or ``Invalid (reason)``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.controller_support import (
    POOLS,
    api_client,
    pool_body,
    running_controller,
    service_body,
    services_path,
)
from tests.support import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

KUBECTL = "/usr/bin/kubectl"


async def kubectl(kubeconfig: Path, *args: str) -> str:
    """Run the real kubectl without blocking the loop the lab API runs on; stdout."""
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def columns(text: str) -> dict[str, dict[str, str]]:
    """kubectl's table as {NAME: {COLUMN: cell}} (cells are split on runs of 2+ spaces)."""
    header, *rows = text.splitlines()
    names = re.split(r"\s{2,}", header.strip())
    table = {}
    for row in rows:
        cells = re.split(r"\s{2,}", row.strip())
        assert len(cells) == len(names), row
        table[cells[0]] = dict(zip(names, cells, strict=True))
    return table


def ready_message(pool: dict[str, Any]) -> str:
    conditions = (pool.get("status") or {}).get("conditions") or []
    return str(next(c["message"] for c in conditions if c["type"] == "Ready"))


async def test_kubectl_get_pools_reads_like_kubectl(
    apiserver: LocalApiServer, kubeconfig: Path
) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("web", ["198.18.10.0/24", "198.18.11.1-198.18.11.9"]))
        await api.create(POOLS, pool_body("huge", ["fd00:198:18:10::/64"], autoAssign=False))
        await api.create(POOLS, pool_body("bad", ["198.18.12.1/24"]))  # host bits set
        await api.create(services_path(), service_body("shop"))
        async with running_controller(apiserver):

            async def settled() -> dict[str, dict[str, str]] | None:
                table = columns(await kubectl(kubeconfig, "get", "ipaddresspools"))
                done = table.get("web", {}).get("USED") == "1" and all(
                    table.get(n, {}).get("STATUS", "<none>") != "<none>" for n in table
                )
                return table if done and len(table) == 3 else None

            table = await eventually(settled, timeout=30, interval=0.3)
            by_name = {p["metadata"]["name"]: p for p in await api.items(POOLS)}

    assert list(table["web"]) == [
        "NAME",
        "ADDRESSES",
        "USED",
        "FREE",
        "AUTO-ASSIGN",
        "STATUS",
        "AGE",
    ]
    web, huge, bad = table["web"], table["huge"], table["bad"]
    assert web["ADDRESSES"] == "198.18.10.0/24,198.18.11.1-198.18.11.9"  # no JSON list
    assert (web["USED"], web["FREE"], web["STATUS"]) == ("1", str(256 + 9 - 1), "Ready")
    assert (huge["USED"], huge["FREE"]) == ("0", str(2**64))
    assert (huge["AUTO-ASSIGN"], huge["STATUS"]) == ("false", "Ready")
    assert by_name["huge"]["status"]["free"] == 2**63 - 1  # the int64 counter is capped ...
    for name in ("web", "huge"):  # ... the columns say what the condition says
        row = table[name]
        assert ready_message(by_name[name]) == (
            f"{row['USED']} addresses assigned, {row['FREE']} available"
        )
    assert bad["STATUS"] == "Invalid (InvalidSpec)"
    assert bad["ADDRESSES"] == "198.18.12.1/24"
    assert (bad["USED"], bad["FREE"]) == ("0", "0")
