"""Issue 8, item 6: the controller's Lease is never starved, and writers stop when it lapses.

The lab API server's ``slow_paths`` knob holds back answers on one path, so
the start-up rebuild (which lists every Service) or a renewal really is slow
over real HTTP; the controller runs in-process against it.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ironlb.common.kubetime import format_micro_time, parse_time
from ironlb.lab.apiserver import LocalApiServer
from ironlb.operator.service_request import ALLOCATED_FROM_POOL
from tests.cluster.controller_support import (
    LEASES,
    POOLS,
    Api,
    api_client,
    ingress_ips,
    pool_body,
    running_controller,
    service_body,
    services_path,
)
from tests.support import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

LEASE = f"{LEASES}/ironlb-controller"
ALL_SERVICES = "/api/v1/services"  # what the rebuild lists


async def lease_spec(api: Api) -> dict[str, Any]:
    """The Lease's spec read through the collection (its own path may be slowed)."""
    for lease in await api.items(LEASES):
        if lease["metadata"]["name"] == "ironlb-controller":
            spec: dict[str, Any] = lease["spec"]
            return spec
    return {}


async def nothing_written(api: Api, names: list[str], *, seconds: float) -> None:
    """Assert for ``seconds`` that no Service in ``names`` shows an IP or our annotation."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for name in names:
            service = await api.service(name)
            assert ingress_ips(service) == [], f"{name} was written: {service['status']}"
            assert ALLOCATED_FROM_POOL not in service["metadata"]["annotations"]
            assert await api.event_reasons(name) == []
        await asyncio.sleep(0.2)


async def test_renewal_goes_on_during_a_slow_rebuild(apiserver: LocalApiServer) -> None:
    """The example: a rebuild longer than the lease; renewTime keeps advancing meanwhile."""
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.61.0/28"]))
        for i in range(3):
            await api.create(services_path(), service_body(f"s{i}"))
        apiserver.slow_paths[ALL_SERVICES] = 8.0  # twice the lease duration
        async with running_controller(apiserver, wait_active=False) as controller:
            seen: set[str] = set()

            async def rebuilt() -> bool:
                spec = await lease_spec(api)
                if spec.get("renewTime"):
                    assert spec["holderIdentity"] == "test-controller"
                    if not controller.ready:
                        seen.add(spec["renewTime"])
                return controller.ready

            await eventually(rebuilt, timeout=60, interval=0.2)
            assert apiserver.slowed_requests >= 1  # the rebuild did wait for the slow list
            # Renewed every 0.5 s while the 8 s list was pending: several distinct renewals.
            assert len(seen) >= 4, sorted(seen)

            async def assigned() -> bool:
                return all([ingress_ips(await api.service(f"s{i}")) for i in range(3)])

            await eventually(assigned, timeout=30)
            lease = await lease_spec(api)
            assert lease["holderIdentity"] == "test-controller"
            assert lease["leaseTransitions"] == 0  # never lapsed, never re-acquired


async def test_lease_taken_during_the_rebuild_means_no_writes(apiserver: LocalApiServer) -> None:
    """Another holder takes the Lease while we rebuild: the old leader writes nothing."""
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.61.0/28"]))
        names = [f"s{i}" for i in range(3)]
        for name in names:
            await api.create(services_path(), service_body(name))
        apiserver.slow_paths[ALL_SERVICES] = 6.0
        # A rebuild well within the renew deadline (10 s): only the other holder ends our term.
        async with running_controller(
            apiserver, wait_active=False, lease_duration=15
        ) as controller:

            async def held() -> bool:
                return (await lease_spec(api)).get("holderIdentity") == "test-controller"

            await eventually(held, timeout=30)
            assert not controller.ready  # still rebuilding
            lease = await api.get(LEASE)
            now = format_micro_time(datetime.now(UTC))
            lease["spec"].update(
                holderIdentity="other-controller",
                renewTime=now,
                acquireTime=now,
                leaseDurationSeconds=3600,
            )
            await api.call("PUT", LEASE, lease)

            async def list_answered() -> bool:
                return apiserver.slowed_requests >= 1

            await eventually(list_answered, timeout=30)
            await nothing_written(api, names, seconds=4.0)
            assert not controller.leading
            assert (await lease_spec(api))["holderIdentity"] == "other-controller"


async def test_writers_stop_when_renewals_hang(apiserver: LocalApiServer) -> None:
    """The API stops answering the Lease: once it has lapsed, nothing is written."""
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.61.0/28"]))
        async with running_controller(apiserver) as controller:
            await api.create(services_path(), service_body("before"))

            async def assigned(name: str) -> list[str]:
                return ingress_ips(await api.service(name))

            await eventually(lambda: assigned("before"), timeout=30)
            apiserver.slow_paths[LEASE] = 120.0  # renewals hang, every other path answers

            async def lapsed() -> bool:
                spec = await lease_spec(api)
                renewed = parse_time(spec["renewTime"])
                assert renewed is not None
                expiry = renewed + timedelta(seconds=spec["leaseDurationSeconds"])
                return datetime.now(UTC) > expiry

            await eventually(lapsed, timeout=60, interval=0.2)
            await api.create(services_path(), service_body("after"))
            await nothing_written(api, ["after"], seconds=4.0)
            assert not controller.leading

            del apiserver.slow_paths[LEASE]  # the API recovers: the lease is taken again
            await eventually(lambda: assigned("after"), timeout=60)


async def test_lease_held_through_a_10000_service_rebuild(apiserver: LocalApiServer) -> None:
    """The reported scale: the rebuild's own CPU work never holds the renewal past its deadline.

    A 3 s lease (renew deadline 2 s) against 10,000 Services: the Lease is
    renewed while the rebuild lists and allocates, and never lapses.
    """
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.64.0/18"]))
        sem = asyncio.Semaphore(16)

        async def create(i: int) -> None:
            async with sem:
                await api.create(services_path(), service_body(f"s{i}"))

        await asyncio.gather(*(create(i) for i in range(10_000)))
        async with running_controller(
            apiserver, wait_active=False, lease_duration=3, renew_period=0.5
        ) as controller:
            renewals: list[datetime] = []
            lapses = 0
            was_leading = False

            async def rebuilt() -> bool:
                nonlocal lapses, was_leading
                if was_leading and not controller.leading:
                    lapses += 1
                was_leading = was_leading or controller.leading
                spec = await lease_spec(api)
                renewed = parse_time(spec.get("renewTime"))
                if renewed is not None and renewed not in renewals:
                    renewals.append(renewed)
                return controller.ready

            await eventually(rebuilt, timeout=120, interval=0.05)
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(renewals)]
            # The acquisition and then renewals while the rebuild ran (before: only the first).
            assert len(renewals) >= 3, gaps
            assert lapses == 0, gaps
            assert (await lease_spec(api))["leaseTransitions"] == 0, gaps
