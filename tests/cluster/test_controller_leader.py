"""Two ``ironlb controller`` processes, one Lease: one writes; kill it, the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.controller_support import (
    LEASES,
    POOLS,
    Api,
    api_client,
    controllers,
    ingress_ips,
    pool_body,
    service_body,
    services_path,
)
from tests.support import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


async def holder(api: Api) -> str | None:
    async with api.http.get(f"{LEASES}/ironlb-controller") as rsp:
        if rsp.status != 200:
            return None
        lease: dict[str, Any] = await rsp.json()
    value = lease["spec"].get("holderIdentity")
    return str(value) if value else None


async def reporters(api: Api) -> set[str]:
    events = await api.items("/api/v1/namespaces/default/events")
    return {e["reportingInstance"] for e in events}


async def test_failover_keeps_ips_and_only_the_leader_writes(
    apiserver: LocalApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.60.0/28"]))
        async with controllers(kubeconfig, ["ctl-a", "ctl-b"], tmp_path) as procs:
            leader = await eventually(lambda: holder(api), timeout=60)
            standby = next(name for name in procs if name != leader)
            for i in range(5):
                await api.create(services_path(), service_body(f"before-{i}"))

            async def all_assigned(prefix: str, count: int) -> dict[str, list[str]] | None:
                found = {
                    s["metadata"]["name"]: ingress_ips(s)
                    for s in await api.items(services_path())
                    if s["metadata"]["name"].startswith(prefix)
                }
                ok = len(found) == count and all(found.values())
                return found if ok else None

            before = await eventually(lambda: all_assigned("before-", 5), timeout=60)
            assert await eventually(lambda: reporters(api)) == {leader}
            assert await holder(api) == leader
            assert "controller active" not in (tmp_path / f"{standby}.log").read_text()

            # Kill the leader without a chance to release the Lease.
            procs[leader].send_signal(signal.SIGKILL)
            await procs[leader].wait()
            for i in range(3):
                await api.create(services_path(), service_body(f"after-{i}"))

            async def taken_over() -> bool:
                return await holder(api) == standby

            await eventually(taken_over, timeout=60)
            after = await eventually(lambda: all_assigned("after-", 3), timeout=60)
            now = await eventually(lambda: all_assigned("before-", 5))
            assert now == before
            every_ip = [ips[0] for ips in [*before.values(), *after.values()]]
            assert len(set(every_ip)) == 8
            assert await reporters(api) == {leader, standby}
            lease = await api.get(f"{LEASES}/ironlb-controller")
            assert lease["spec"]["leaseTransitions"] >= 1
            assert "controller active" in (tmp_path / f"{standby}.log").read_text()
            assert procs[standby].returncode is None


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--lease-duration", "1"], {}, "--lease-duration must be at least 3 s"),
        (["--renew-period", "10"], {}, "--renew-period must be positive and under half"),
        (["--webhook-cert", "/x.pem"], {}, "--webhook-cert and --webhook-key go together"),
        ([], {"KUBECONFIG": "", "HOME": "/nonexistent"}, "no credentials"),
    ],
)
async def test_cli_refuses_bad_settings(args: list[str], env: dict[str, str], needle: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ironlb.cli",
        "controller",
        *args,
        env={**environ, **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert needle in err.decode()


async def test_a_missing_lease_namespace_is_named_once_with_the_fix(
    apiserver: LocalApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """Issue 8, item 5: no bare ``lease round failed: 404`` forever."""
    async with controllers(kubeconfig, ["solo"], tmp_path):
        log = tmp_path / "solo.log"

        async def said() -> bool:
            return "namespace 'ironlb-system' does not exist" in log.read_text()

        await eventually(said, timeout=30)
        await asyncio.sleep(2.0)  # several more rounds
        text = log.read_text()
    assert text.count("does not exist") == 1
    assert "kubectl create namespace ironlb-system" in text
    assert "lease round failed: 404" not in text
