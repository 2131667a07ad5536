"""The controller end to end: 200 mixed Services, a restart, then deleting them all.

The controller runs in-process (kopf + Lease election) against the local API
server over HTTP; the test drives it only through the API, like a user.
"""

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

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

NS = "alpha"
MAIN_V4 = ipaddress.ip_network("198.18.10.0/24")
MAIN_V6 = ipaddress.ip_network("fd00:198:18:10::/120")
RESERVED = ipaddress.ip_network("198.18.20.0/28")
POOL_ANNOTATION = "ironlb.io/ip-allocated-from-pool"


def scenario() -> list[dict[str, Any]]:
    """200 Services: plain, dual-stack, pool-annotated, requested, shared, legacy, invalid."""
    bodies = []
    for i in range(121):
        bodies.append(service_body(f"plain-{i}", namespace=NS))
    for i in range(20):
        bodies.append(
            service_body(
                f"dual-{i}",
                namespace=NS,
                ipFamilyPolicy="RequireDualStack",
                ipFamilies=["IPv4", "IPv6"],
            )
        )
    for i in range(20):  # 20 Services for 16 addresses: 4 must be refused
        bodies.append(
            service_body(
                f"reserved-{i}", namespace=NS, annotations={"ironlb.io/address-pool": "reserved"}
            )
        )
    for i in range(20):
        bodies.append(
            service_body(
                f"asked-{i}",
                namespace=NS,
                annotations={"ironlb.io/loadBalancerIPs": f"198.18.10.{200 + i}"},
            )
        )
    for i in range(10):  # five pairs sharing an address, on different ports
        bodies.append(
            service_body(
                f"shared-{i}",
                namespace=NS,
                annotations={"ironlb.io/allow-shared-ip": f"key-{i // 2}"},
                ports=[("TCP", 80 if i % 2 else 443)],
            )
        )
    for i in range(5):
        bodies.append(
            service_body(f"legacy-{i}", namespace=NS, loadBalancerIP=f"198.18.10.{230 + i}")
        )
    bodies.append(
        service_body(
            "bad-both",
            namespace=NS,
            annotations={"ironlb.io/loadBalancerIPs": "198.18.10.240"},
            loadBalancerIP="198.18.10.241",
        )
    )
    bodies.append(
        service_body(
            "bad-outside", namespace=NS, annotations={"ironlb.io/loadBalancerIPs": "198.19.99.1"}
        )
    )
    bodies.append(
        service_body("bad-pool", namespace=NS, annotations={"ironlb.io/address-pool": "nope"})
    )
    bodies.append(
        service_body(
            "bad-syntax", namespace=NS, annotations={"ironlb.io/loadBalancerIPs": "not-an-ip"}
        )
    )
    return bodies


REFUSED = {
    "bad-both": "InvalidRequest",
    "bad-outside": "IPNotInAnyPool",
    "bad-pool": "PoolNotFound",
    "bad-syntax": "InvalidRequest",
}


async def create_all(api: Api, bodies: list[dict[str, Any]]) -> None:
    sem = asyncio.Semaphore(8)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await api.create(services_path(NS), body)

    await asyncio.gather(*(one(b) for b in bodies))


async def snapshot(api: Api) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in await api.items(services_path(NS))}


async def failure_reasons(api: Api) -> dict[str, list[str]]:
    """Service name -> the messages of its AllocationFailed Events."""
    found: dict[str, list[str]] = {}
    events = await api.items(f"/api/v1/namespaces/{NS}/events")
    for event in events:
        if event["reason"] == "AllocationFailed":
            found.setdefault(event["involvedObject"]["name"], []).append(event["message"])
    return found


async def pool_status(api: Api, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (await api.get(f"{POOLS}/{name}")).get("status") or {}
    return status


async def test_200_services_restart_and_delete(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.ensure_namespace(NS, {"team": "a"})
        await api.create(POOLS, pool_body("main", [str(MAIN_V4), str(MAIN_V6)]))
        await api.create(POOLS, pool_body("reserved", [str(RESERVED)], autoAssign=False))
        bodies = scenario()
        assert len(bodies) == 200

        async with running_controller(apiserver):
            await create_all(api, bodies)

            async def settled() -> dict[str, dict[str, Any]] | None:
                services = await snapshot(api)
                with_ip = sum(1 for s in services.values() if ingress_ips(s))
                failures = await failure_reasons(api)
                done = with_ip == 192 and len(failures) == 8
                return services if done else None

            services = await eventually(settled, timeout=120, interval=0.5)
            check_assignments(services)
            failures = await failure_reasons(api)
            for name, reason in REFUSED.items():
                assert any(m.startswith(f"{reason}:") for m in failures[name]), failures[name]
            refused_reserved = sorted(n for n in failures if n.startswith("reserved-"))
            assert len(refused_reserved) == 4
            for name in refused_reserved:
                assert failures[name][0].startswith("NoAvailableIPs:"), failures[name]
                assert ingress_ips(services[name]) == []
            both = failures["bad-both"][0]
            assert "spec.loadBalancerIP" in both and "ironlb.io/loadBalancerIPs" in both

            # An address already held, asked for without sharing: refused, holder unchanged.
            await api.create(
                services_path(NS),
                service_body(
                    "thief",
                    namespace=NS,
                    annotations={"ironlb.io/loadBalancerIPs": "198.18.10.200"},
                ),
            )

            async def thief_refused() -> list[str] | None:
                return (await failure_reasons(api)).get("thief")

            assert (await eventually(thief_refused))[0].startswith("IPInUse:")
            assert ingress_ips(await api.service("asked-0", NS)) == ["198.18.10.200"]
            await api.delete(f"{services_path(NS)}/thief")

            async def counted() -> dict[str, Any] | None:
                status = await pool_status(api, "main")
                return status if status.get("assignedIPv4") == 171 else None

            main = await eventually(counted)
            assert main["assignedIPv6"] == 20
            assert main["availableIPv4"] == 256 - 171
            assert main["availableIPv6"] == 256 - 20
            reserved = await pool_status(api, "reserved")
            assert (reserved["assignedIPv4"], reserved["availableIPv4"]) == (16, 0)
            ready = {c["type"]: c["status"] for c in main["conditions"]}
            assert ready == {"Ready": "True", "Invalid": "False"}
            allocated_events = await count_reason(api, "IPAllocated")
            assert allocated_events == 192
            before = {name: ingress_ips(s) for name, s in (await snapshot(api)).items()}

        # Restart: the new controller re-takes every address; nothing moves.
        async with running_controller(apiserver, identity="second") as controller:
            assert len(controller.allocator.assignments()) == 192
            await asyncio.sleep(1.0)  # let any (wrong) write land before comparing
            await controller.status.wait_idle()
            after = {name: ingress_ips(s) for name, s in (await snapshot(api)).items()}
            assert after == before
            assert await count_reason(api, "IPAllocated") == allocated_events

            # Delete everything: every address returns to its pool.
            sem = asyncio.Semaphore(8)

            async def delete(name: str) -> None:
                async with sem:
                    await api.delete(f"{services_path(NS)}/{name}")

            await asyncio.gather(*(delete(name) for name in before))

            async def drained() -> bool:
                main, reserved = await pool_status(api, "main"), await pool_status(api, "reserved")
                return (main.get("assignedIPv4"), main.get("assignedIPv6")) == (0, 0) and (
                    reserved.get("assignedIPv4") == 0
                )

            await eventually(drained)
            main = await pool_status(api, "main")
            assert (main["availableIPv4"], main["availableIPv6"]) == (256, 256)
            assert controller.allocator.assignments() == {}


async def count_reason(api: Api, reason: str) -> int:
    events = await api.items(f"/api/v1/namespaces/{NS}/events")
    return sum(1 for e in events if e["reason"] == reason)


def check_assignments(services: dict[str, dict[str, Any]]) -> None:
    owners: dict[str, list[str]] = {}
    for name, svc in services.items():
        ips = ingress_ips(svc)
        for ip in ips:
            owners.setdefault(ip, []).append(name)
        ingress = svc["status"].get("loadBalancer", {}).get("ingress") or []
        assert all(entry.get("ipMode") == "Proxy" for entry in ingress), name
        annotation = svc["metadata"].get("annotations", {}).get(POOL_ANNOTATION)
        if name.startswith(("plain-", "asked-", "shared-", "legacy-")):
            assert len(ips) == 1 and ipaddress.ip_address(ips[0]) in MAIN_V4, (name, ips)
            assert annotation == "main", name
        elif name.startswith("dual-"):
            assert len(ips) == 2, (name, ips)
            assert ipaddress.ip_address(ips[0]) in MAIN_V4, (name, ips)
            assert ipaddress.ip_address(ips[1]) in MAIN_V6, (name, ips)
            assert annotation == "main", name
        elif name.startswith("reserved-") and ips:
            assert ipaddress.ip_address(ips[0]) in RESERVED, (name, ips)
            assert annotation == "reserved", name
        elif name in REFUSED or name.startswith("reserved-"):
            assert ips == [] and annotation is None, (name, ips)
        if name.startswith("asked-"):
            assert ips == [f"198.18.10.{200 + int(name.split('-')[1])}"]
        if name.startswith("legacy-"):
            assert ips == [f"198.18.10.{230 + int(name.split('-')[1])}"]
    for ip, names in owners.items():
        if len(names) > 1:
            keys = {int(n.split("-")[1]) // 2 for n in names if n.startswith("shared-")}
            assert len(names) == 2 and len(keys) == 1, (ip, names)
    pairs = [ingress_ips(services[f"shared-{i}"]) for i in range(10)]
    for k in range(5):
        assert pairs[2 * k] == pairs[2 * k + 1], pairs
    assert sum(1 for n, s in services.items() if n.startswith("reserved-") and ingress_ips(s)) == 16
