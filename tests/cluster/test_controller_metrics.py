"""Issue 8, item 8: the controller's Prometheus metrics and health probes, over real HTTP.

The controller runs against the lab API (in-process, or as ``ironlb
controller`` processes); the tests scrape ``--metrics-address`` and watch the
values follow the Services they create.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.controller_support import (
    POOLS,
    Api,
    api_client,
    controllers,
    ingress_ips,
    pool_body,
    running_controller,
    service_body,
    services_path,
)
from tests.support import eventually, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(port: int, path: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"http://127.0.0.1:{port}{path}") as rsp,
    ):
        return rsp.status, await rsp.text()


async def scrape(port: int) -> Samples:
    status, text = await get(port, "/metrics")
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_follow_allocations_and_failures(apiserver: LocalApiServer) -> None:
    port = free_port()
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.62.0/30", "fd00:62::/126"]))
        async with running_controller(apiserver, metrics_address=f"127.0.0.1:{port}"):
            assert await get(port, "/healthz") == (200, "ok\n")
            assert await get(port, "/readyz") == (200, "ok\n")

            async def pool_seen() -> Samples | None:
                samples = await scrape(port)
                total = value(
                    samples, "ironlb_allocator_addresses_total", pool="main", family="ipv4"
                )
                return samples if total is not None else None

            samples = await eventually(pool_seen, timeout=30)
            assert value(samples, "ironlb_controller_leader") == 1.0
            for family in ("ipv4", "ipv6"):
                labels = {"pool": "main", "family": family}
                assert value(samples, "ironlb_allocator_addresses_total", **labels) == 4.0
                assert value(samples, "ironlb_allocator_addresses_in_use_total", **labels) == 0.0
            assert value(samples, "ironlb_controller_allocations_total", pool="main") is None

            await api.create(services_path(), service_body("web"))
            await eventually(lambda: _assigned(api, "web"), timeout=30)

            async def in_use_is(n: float) -> Samples | None:
                samples = await scrape(port)
                in_use = value(
                    samples, "ironlb_allocator_addresses_in_use_total", pool="main", family="ipv4"
                )
                return samples if in_use == n else None

            samples = await eventually(lambda: in_use_is(1.0), timeout=30)
            assert value(samples, "ironlb_controller_allocations_total", pool="main") == 1.0

            # Bad requests: a malformed address, one outside every pool.
            await api.create(
                services_path(),
                service_body("bad", annotations={"ironlb.io/loadBalancerIPs": "not-an-ip"}),
            )
            await api.create(
                services_path(),
                service_body("outside", annotations={"ironlb.io/loadBalancerIPs": "198.18.99.1"}),
            )

            async def failures() -> Samples | None:
                samples = await scrape(port)
                name = "ironlb_controller_allocation_failures_total"
                invalid = value(samples, name, reason="InvalidRequest")
                outside = value(samples, name, reason="IPNotInAnyPool")
                return samples if invalid == 1.0 and outside == 1.0 else None

            samples = await eventually(failures, timeout=30)
            # Only "web" holds an address; handler latency was observed per resource.
            assert (
                value(
                    samples, "ironlb_allocator_addresses_in_use_total", pool="main", family="ipv4"
                )
                == 1.0
            )
            handled = value(
                samples, "ironlb_controller_handler_duration_seconds_count", resource="services"
            )
            assert handled is not None and handled >= 3

            await api.delete(f"{services_path()}/web")
            await eventually(lambda: in_use_is(0.0), timeout=30)


async def _assigned(api: Api, name: str) -> list[str]:
    return ingress_ips(await api.service(name))


async def test_two_replicas_ready_one_leader(
    apiserver: LocalApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """Both replicas are ready (leader rebuilt, standby following); one reports leader 1."""
    ports = {"ctl-a": free_port(), "ctl-b": free_port()}
    async with api_client(apiserver) as api:
        await api.install()
        extra = {name: ["--metrics-address", f"127.0.0.1:{port}"] for name, port in ports.items()}
        async with controllers(kubeconfig, list(ports), tmp_path, extra=extra):

            async def both_ready() -> bool:
                for port in ports.values():
                    try:
                        status, _ = await get(port, "/readyz")
                    except aiohttp.ClientConnectionError:
                        return False
                    if status != 200:
                        return False
                return True

            await eventually(both_ready, timeout=60)

            async def leaders() -> list[float | None] | None:
                found = [
                    value(await scrape(port), "ironlb_controller_leader") for port in ports.values()
                ]
                return found if sorted(f or 0.0 for f in found) == [0.0, 1.0] else None

            await eventually(leaders, timeout=30)


async def test_not_ready_while_the_lease_cannot_be_held(
    apiserver: LocalApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """No Lease namespace: alive (/healthz 200) but not ready (/readyz 503, saying why)."""
    port = free_port()
    extra = {"solo": ["--metrics-address", f"127.0.0.1:{port}"]}
    async with controllers(kubeconfig, ["solo"], tmp_path, extra=extra):

        async def said() -> bool:
            return "does not exist" in (tmp_path / "solo.log").read_text()

        await eventually(said, timeout=30)
        assert await get(port, "/healthz") == (200, "ok\n")

        async def lease_is_the_reason() -> bool:
            # Until kopf is watching the reason is that; then it is the Lease, and stays so.
            status, text = await get(port, "/readyz")
            assert status == 503, text
            return text == "not ready: cannot read or hold the Lease\n"

        await eventually(lease_is_the_reason, timeout=30)
        await asyncio.sleep(1.0)  # several election rounds later: still not ready
        assert await get(port, "/readyz") == (503, "not ready: cannot read or hold the Lease\n")
        async with api_client(apiserver) as api:
            await api.ensure_namespace("ironlb-system")

            async def ready() -> bool:
                return (await get(port, "/readyz"))[0] == 200

            await eventually(ready, timeout=30)


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:0x50", "127.0.0.1:70000"])
def test_a_bad_metrics_address_is_one_line_and_exit_2(address: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ironlb.cli", "controller", "--metrics-address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"ironlb controller: --metrics-address must be HOST:PORT, got {address!r}"
    ]


async def test_a_taken_metrics_address_is_one_line(kubeconfig: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ironlb.cli",
            "controller",
            "--metrics-address",
            f"127.0.0.1:{port}",
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().strip().splitlines()[-1] == (
        f"ironlb controller: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in err.decode()


async def test_rebuilding_leader_is_alive_but_not_ready(apiserver: LocalApiServer) -> None:
    """During a slow start-up rebuild: /healthz 200, /readyz 503 saying so, leader 1."""
    port = free_port()
    async with api_client(apiserver) as api:
        await api.install()
        apiserver.slow_paths["/api/v1/services"] = 6.0
        async with running_controller(
            apiserver, wait_active=False, metrics_address=f"127.0.0.1:{port}"
        ) as controller:

            async def rebuilding() -> bool:
                try:
                    status, text = await get(port, "/readyz")
                except aiohttp.ClientConnectionError:
                    return False
                return (status, text) == (503, "not ready: leader, rebuilding the state\n")

            await eventually(rebuilding, timeout=30)
            assert await get(port, "/healthz") == (200, "ok\n")
            assert value(await scrape(port), "ironlb_controller_leader") == 1.0
            assert not controller.ready

            async def ready() -> bool:
                return (await get(port, "/readyz"))[0] == 200

            await eventually(ready, timeout=60)
            assert controller.ready
