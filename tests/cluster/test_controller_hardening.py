"""Controller behaviour replayed from real users' reports (issue: hardening).

- a typo in a Service's annotations or fields never costs it the address it
  holds (a waiting Service must not take it), also across a restart;
- a waiting Service is retried when another Service's change could unblock it
  (sharing key / traffic policy made compatible again, a port clash resolved);
- of two Services waiting for one address the oldest claim wins;
- a Service whose address a pool edit withdraws is told which and why.

All against the local API server with the real controller (kopf, Lease).
"""

from __future__ import annotations

import asyncio
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

LB_IPS = "ironlb.io/loadBalancerIPs"
SHARED = "ironlb.io/allow-shared-ip"


async def ips_of(api: Api, name: str) -> list[str]:
    return ingress_ips(await api.service(name))


async def shows(api: Api, name: str, wanted: list[str]) -> bool:
    return await ips_of(api, name) == wanted


async def warnings(api: Api, name: str) -> list[str]:
    return [e["message"] for e in await api.events(name) if e["type"] == "Warning"]


async def warning_with(api: Api, name: str, *parts: str) -> str | None:
    for message in await warnings(api, name):
        if all(p in message for p in parts):
            return message
    return None


async def patch_service(api: Api, name: str, body: dict[str, Any]) -> None:
    await api.patch(f"{services_path()}/{name}", body)


# Each bad edit of a Service that holds 198.18.60.8 (the pool's only address), with the
# words its Warning must carry.
BAD_EDITS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (
        "typo-in-requested-ips",
        {"metadata": {"annotations": {LB_IPS: "198.18.60.8,198.18.6"}}},
        ("InvalidRequest", "'198.18.6'", LB_IPS),
    ),
    (
        "two-ipv4-requested",
        {"metadata": {"annotations": {LB_IPS: "198.18.60.8,198.18.60.9"}}},
        ("InvalidRequest", "more than one address of a family"),
    ),
    (
        "requested-ip-outside-pools",
        {"metadata": {"annotations": {LB_IPS: "198.18.61.8"}}},
        ("IPNotInAnyPool", "198.18.61.8"),
    ),
    (
        "unknown-pool",
        {"metadata": {"annotations": {"ironlb.io/address-pool": "prodd"}}},
        ("PoolNotFound", "'prodd'"),
    ),
    (
        "annotation-and-legacy-field",
        {"spec": {"loadBalancerIP": "198.18.60.8"}},
        ("InvalidRequest", "spec.loadBalancerIP"),
    ),
    (
        "unknown-family-policy",
        {"spec": {"ipFamilyPolicy": "DualStackPlease"}},
        ("InvalidRequest", "spec.ipFamilyPolicy"),
    ),
]


@pytest.mark.parametrize(("edit", "patch", "words"), BAD_EDITS, ids=[e[0] for e in BAD_EDITS])
async def test_bad_input_never_costs_a_service_its_address(
    apiserver: LocalApiServer, edit: str, patch: dict[str, Any], words: tuple[str, ...]
) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("only", ["198.18.60.8/32"]))
        async with running_controller(apiserver):
            await api.create(
                services_path(), service_body("pinned", annotations={LB_IPS: "198.18.60.8"})
            )
            await eventually(lambda: shows(api, "pinned", ["198.18.60.8"]))
            await api.create(services_path(), service_body("waiting"))
            await eventually(lambda: warning_with(api, "waiting", "NoAvailableIPs"))

            await patch_service(api, "pinned", patch)
            message = await eventually(lambda: warning_with(api, "pinned", *words))
            assert 'keeping IP ["198.18.60.8"]' in message, message
            # Past the retry delay: the waiting Service did not take the address.
            await asyncio.sleep(1.0)
            assert await ips_of(api, "pinned") == ["198.18.60.8"]
            assert await ips_of(api, "waiting") == []

        # A restart with the bad edit still in place keeps it too.
        async with running_controller(apiserver, identity="second-controller"):
            await asyncio.sleep(1.0)
            assert await ips_of(api, "pinned") == ["198.18.60.8"]
            assert await ips_of(api, "waiting") == []

            # Fixing the edit: the Service still holds its address (no IPInUse).
            fix: dict[str, Any] = {
                "metadata": {
                    "annotations": {LB_IPS: "198.18.60.8", "ironlb.io/address-pool": None}
                },
                "spec": {"loadBalancerIP": None, "ipFamilyPolicy": "SingleStack"},
            }
            await patch_service(api, "pinned", fix)
            await asyncio.sleep(1.0)
            assert await ips_of(api, "pinned") == ["198.18.60.8"]
            assert not await warning_with(api, "pinned", "IPInUse")


async def test_a_service_without_an_address_stays_pending_with_a_warning(
    apiserver: LocalApiServer,
) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("only", ["198.18.60.16/30"]))
        async with running_controller(apiserver):
            await api.create(
                services_path(), service_body("typo", annotations={LB_IPS: "198.18.60.17,x"})
            )
            await eventually(lambda: warning_with(api, "typo", "InvalidRequest", "'x'"))
            assert await ips_of(api, "typo") == []


async def test_compatible_again_after_traffic_policy_change_gets_the_shared_address(
    apiserver: LocalApiServer,
) -> None:
    def dns(name: str, proto: str) -> dict[str, Any]:
        body = service_body(
            name, annotations={LB_IPS: "198.18.10.53", SHARED: "dns"}, ports=[(proto, 53)]
        )
        body["spec"]["selector"] = {"app": "dns"}
        return body

    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("dns", ["198.18.10.0/24"]))
        async with running_controller(apiserver):
            await api.create(services_path(), dns("dns-tcp", "TCP"))
            await api.create(services_path(), dns("dns-udp", "UDP"))
            await eventually(lambda: shows(api, "dns-tcp", ["198.18.10.53"]))
            await eventually(lambda: shows(api, "dns-udp", ["198.18.10.53"]))

            # Local against Cluster cannot share: dns-tcp loses the address (correctly).
            await patch_service(api, "dns-tcp", {"spec": {"externalTrafficPolicy": "Local"}})
            await eventually(lambda: warning_with(api, "dns-tcp", "SharingKeyMismatch"))
            await eventually(lambda: shows(api, "dns-tcp", []))
            # Both Local with one selector: compatible again, with no restart.
            await patch_service(api, "dns-udp", {"spec": {"externalTrafficPolicy": "Local"}})
            await eventually(lambda: shows(api, "dns-tcp", ["198.18.10.53"]), timeout=10)
            assert await ips_of(api, "dns-udp") == ["198.18.10.53"]


async def test_port_clash_resolved_by_moving_the_holder_unblocks_the_waiter(
    apiserver: LocalApiServer,
) -> None:
    shared = {LB_IPS: "198.18.11.80", SHARED: "web"}
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("web", ["198.18.11.0/24"]))
        async with running_controller(apiserver):
            await api.create(services_path(), service_body("first", annotations=shared))
            await eventually(lambda: shows(api, "first", ["198.18.11.80"]))
            await api.create(services_path(), service_body("second", annotations=shared))
            await eventually(lambda: warning_with(api, "second", "PortConflict", "TCP/80"))
            await patch_service(
                api,
                "first",
                {"spec": {"ports": [{"name": "p0", "protocol": "TCP", "port": 8080}]}},
            )
            await eventually(lambda: shows(api, "second", ["198.18.11.80"]), timeout=10)
            assert await ips_of(api, "first") == ["198.18.11.80"]


async def _two_claims(api: Api) -> None:
    """``zz-old`` and then, a second later, ``aa-young`` request the same address."""
    claim = {LB_IPS: "198.18.62.5"}
    await api.create(services_path(), service_body("zz-old", annotations=claim))
    await asyncio.sleep(1.1)  # creationTimestamp has one-second resolution
    await api.create(services_path(), service_body("aa-young", annotations=claim))


async def test_oldest_claim_wins_when_the_address_appears(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        async with running_controller(apiserver):
            await _two_claims(api)
            await eventually(lambda: warning_with(api, "zz-old", "IPNotInAnyPool"))
            await eventually(lambda: warning_with(api, "aa-young", "IPNotInAnyPool"))
            await api.create(POOLS, pool_body("late", ["198.18.62.0/29"]))
            await eventually(lambda: shows(api, "zz-old", ["198.18.62.5"]))
            await eventually(lambda: warning_with(api, "aa-young", "IPInUse", "zz-old"))
            assert await ips_of(api, "aa-young") == []


async def test_oldest_claim_wins_at_start(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("early", ["198.18.62.0/29"]))
        await _two_claims(api)
        async with running_controller(apiserver):
            await eventually(lambda: shows(api, "zz-old", ["198.18.62.5"]))
            await eventually(lambda: warning_with(api, "aa-young", "IPInUse", "zz-old"))


async def test_withdrawn_address_is_named_with_the_reason(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("edge", ["198.18.63.0/30"]))
        async with running_controller(apiserver):
            await api.create(services_path(), service_body("front"))
            await eventually(lambda: shows(api, "front", ["198.18.63.0"]))
            await api.patch(f"{POOLS}/edge", {"spec": {"avoidBuggyIPs": True}})
            await eventually(lambda: shows(api, "front", ["198.18.63.1"]))
            message = await eventually(lambda: warning_with(api, "front", "198.18.63.0"))
            assert "pool 'edge' now sets avoidBuggyIPs" in message, message
            reasons = [e["reason"] for e in await api.events("front")]
            assert "IPWithdrawn" in reasons, reasons

            # Shrinking the pool past the new address: named too, and the reason differs.
            await api.patch(f"{POOLS}/edge", {"spec": {"addresses": ["198.18.63.2/32"]}})
            await eventually(lambda: shows(api, "front", ["198.18.63.2"]))
            message = await eventually(
                lambda: warning_with(api, "front", "198.18.63.1", "spec.addresses")
            )
            assert "no longer lists it" in message, message


async def test_requested_address_excluded_by_avoid_buggy_ips_says_so(
    apiserver: LocalApiServer,
) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("careful", ["198.18.64.0/24"], avoidBuggyIPs=True))
        async with running_controller(apiserver):
            await api.create(
                services_path(), service_body("zero", annotations={LB_IPS: "198.18.64.0"})
            )
            message = await eventually(lambda: warning_with(api, "zero", "IPNotAllowed"))
            assert "avoidBuggyIPs" in message and "'careful'" in message, message
            assert "not in any IPAddressPool" not in message


async def test_metallb_annotations_are_honoured_and_said(apiserver: LocalApiServer) -> None:
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("moved", ["198.18.65.0/28"]))
        async with running_controller(apiserver):
            await api.create(
                services_path(),
                service_body(
                    "from-metallb",
                    annotations={"metallb.universe.tf/loadBalancerIPs": "198.18.65.9"},
                ),
            )
            await eventually(lambda: shows(api, "from-metallb", ["198.18.65.9"]))
            reasons = await api.event_reasons("from-metallb")
            assert "AnnotationAlias" in reasons, reasons
            both = {LB_IPS: "198.18.65.3", "metallb.io/loadBalancerIPs": "198.18.65.4"}
            await api.create(services_path(), service_body("both", annotations=both))
            await eventually(lambda: shows(api, "both", ["198.18.65.3"]))

            async def ignored() -> str | None:
                for e in await api.events("both"):
                    if e["reason"] == "AnnotationAlias" and "is ignored" in e["message"]:
                        return str(e["message"])
                return None

            assert "metallb.io/loadBalancerIPs" in await eventually(ignored)
