"""Targeted controller behaviour: class filtering, type change, pool shrink/delete, bad pools."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.controller_support import (
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

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

ANNOTATION = "ironlb.io/ip-allocated-from-pool"


async def has_ips(api: Api, name: str, count: int = 1) -> list[str] | None:
    ips = ingress_ips(await api.service(name))
    return ips if len(ips) == count else None


async def conditions(api: Api, pool: str) -> dict[str, dict[str, Any]]:
    status = (await api.get(f"{POOLS}/{pool}")).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}


async def test_only_our_class_and_type_are_handled(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("main", ["198.18.40.0/29"]))
        async with running_controller(apiserver, load_balancer_class="example.com/custom"):
            await api.create(services_path(), service_body("unset"))
            await api.create(
                services_path(), service_body("custom", loadBalancerClass="example.com/custom")
            )
            await api.create(
                services_path(), service_body("default-class", loadBalancerClass="ironlb.io/ironlb")
            )
            await api.create(services_path(), service_body("plain", type_="ClusterIP"))
            await api.create(services_path(), service_body("last"))
            # Events are handled in order per object but not across objects: wait for all.
            await eventually(lambda: has_ips(api, "unset"))
            await eventually(lambda: has_ips(api, "custom"))
            await eventually(lambda: has_ips(api, "last"))
            await asyncio.sleep(0.5)
            for name in ("default-class", "plain"):
                svc = await api.service(name)
                assert ingress_ips(svc) == [], name
                assert ANNOTATION not in (svc["metadata"].get("annotations") or {}), name
                assert await api.events(name) == [], name
            assert await api.event_reasons("custom") == ["IPAllocated"]


async def test_type_change_releases_and_clears(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("tiny", ["198.18.41.1"]))
        async with running_controller(apiserver):
            await api.create(services_path(), service_body("first"))
            assert await eventually(lambda: has_ips(api, "first")) == ["198.18.41.1"]
            await api.create(services_path(), service_body("second"))

            async def refused() -> list[str] | None:
                return [e["message"] for e in await api.events("second")] or None

            assert (await eventually(refused))[0].startswith("NoAvailableIPs:")

            await api.patch(f"{services_path()}/first", {"spec": {"type": "ClusterIP"}})

            async def cleared() -> dict[str, Any] | None:
                svc = await api.service("first")
                annotations = svc["metadata"].get("annotations") or {}
                return svc if not ingress_ips(svc) and ANNOTATION not in annotations else None

            await eventually(cleared)
            reasons = await eventually(
                lambda: _reasons_with(api, "first", {"ClearAssignment", "IPReleased"})
            )
            assert "IPAllocated" in reasons
            messages = [e["message"] for e in await api.events("first")]
            assert any("type ClusterIP" in m and "198.18.41.1" in m for m in messages), messages
            # The waiting Service gets the released address.
            assert await eventually(lambda: has_ips(api, "second")) == ["198.18.41.1"]


async def _reasons_with(api: Api, name: str, wanted: set[str]) -> list[str] | None:
    reasons = await api.event_reasons(name)
    return reasons if wanted <= set(reasons) else None


async def test_pool_shrink_and_delete_move_or_clear_services(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("a-main", ["198.18.42.0/29"]))
        async with running_controller(apiserver):
            names = [f"svc-{i}" for i in range(6)]
            for name in names:  # one at a time: addresses in creation order
                await api.create(services_path(), service_body(name))
                await eventually(lambda: has_ips(api, name))  # noqa: B023 (awaited at once)
            before = {n: ingress_ips(await api.service(n))[0] for n in names}
            assert sorted(before.values()) == [f"198.18.42.{i}" for i in range(6)]
            await api.create(POOLS, pool_body("b-spare", ["198.18.43.0/30"]))

            # Shrink: .3-.5 leave the pool; their Services move to the spare pool.
            await api.patch(f"{POOLS}/a-main", {"spec": {"addresses": ["198.18.42.0-198.18.42.2"]}})
            spare = ipaddress.ip_network("198.18.43.0/30")

            async def moved() -> dict[str, str] | None:
                now = {n: ingress_ips(await api.service(n)) for n in names}
                ok = all(
                    (len(ips) == 1 and ipaddress.ip_address(ips[0]) in spare)
                    if before[n] >= "198.18.42.3"
                    else ips == [before[n]]
                    for n, ips in now.items()
                )
                return {n: ips[0] for n, ips in now.items()} if ok else None

            after_shrink = await eventually(moved)
            assert len(set(after_shrink.values())) == 6
            for name, ip in after_shrink.items():
                annotations = (await api.service(name))["metadata"]["annotations"]
                expected_pool = "b-spare" if ip.startswith("198.18.43.") else "a-main"
                assert annotations[ANNOTATION] == expected_pool

            # Delete the main pool: one spare address left for three Services.
            await api.delete(f"{POOLS}/a-main")

            async def resolved() -> dict[str, list[str]] | None:
                now = {n: ingress_ips(await api.service(n)) for n in names}
                with_ip = [ips[0] for ips in now.values() if ips]
                if len(with_ip) != 4 or any(
                    ipaddress.ip_address(ip) not in spare for ip in with_ip
                ):
                    return None
                return now

            final = await eventually(resolved)
            assert len({ips[0] for ips in final.values() if ips}) == 4
            stripped = [n for n, ips in final.items() if not ips]
            assert len(stripped) == 2
            for name in stripped:
                svc = await api.service(name)
                assert ANNOTATION not in (svc["metadata"].get("annotations") or {})
                messages = [
                    e["message"]
                    for e in await api.events(name)
                    if e["reason"] == "AllocationFailed"
                ]
                assert any(
                    m.startswith("NoAvailableIPs:") and "no longer in a usable pool" in m
                    for m in messages
                ), messages

            async def spare_full() -> bool:
                status = (await api.get(f"{POOLS}/b-spare")).get("status") or {}
                return (status.get("assignedIPv4"), status.get("availableIPv4")) == (4, 0)

            await eventually(spare_full)


async def test_invalid_pools_are_marked_and_never_used(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("good", ["198.18.44.0/30"]))
        # These slip past the schema (the webhook is not running) and must be refused.
        await api.create(POOLS, pool_body("reversed", ["198.18.45.9-198.18.45.1"]))
        await api.create(POOLS, pool_body("overlapping", ["198.18.44.2/31"]))
        async with running_controller(apiserver):

            async def marked() -> dict[str, dict[str, Any]] | None:
                found = {p: await conditions(api, p) for p in ("good", "reversed", "overlapping")}
                return found if all(found.values()) else None

            found = await eventually(marked)
            assert found["good"]["Ready"]["status"] == "True"
            assert found["good"]["Invalid"]["status"] == "False"
            bad = found["reversed"]["Invalid"]
            assert (bad["status"], bad["reason"]) == ("True", "InvalidSpec")
            assert "198.18.45.9-198.18.45.1" in bad["message"], bad
            assert found["reversed"]["Ready"]["status"] == "False"
            clash = found["overlapping"]["Invalid"]
            assert (clash["status"], clash["reason"]) == ("True", "Overlap")
            assert "good" in clash["message"], clash

            for pool in ("reversed", "overlapping"):
                await api.create(
                    services_path(),
                    service_body(f"wants-{pool}", annotations={"ironlb.io/address-pool": pool}),
                )

                async def refused(pool: str = pool) -> list[str] | None:
                    return [e["message"] for e in await api.events(f"wants-{pool}")] or None

                assert (await eventually(refused))[0].startswith("PoolNotFound:")
                assert ingress_ips(await api.service(f"wants-{pool}")) == []

            # Fixing the spec makes the pool usable, and the waiting Service gets an address.
            await api.patch(
                f"{POOLS}/reversed", {"spec": {"addresses": ["198.18.45.1-198.18.45.9"]}}
            )

            async def fixed() -> bool:
                found = await conditions(api, "reversed")
                return bool(
                    found["Ready"]["status"] == "True" and found["Invalid"]["status"] == "False"
                )

            await eventually(fixed)
            assert await eventually(lambda: has_ips(api, "wants-reversed")) == ["198.18.45.1"]
