"""The allocator, rule by rule: address order, pools, families, sharing, idempotence,
restore, pool changes, usage and every error reason."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from ironlb.operator.allocator import (
    AllocationError,
    Allocator,
    Assignment,
    PoolUsage,
    ServiceKey,
    ServiceRequest,
)
from ironlb.operator.pools import Pool, parse_pool

IP = ipaddress.ip_address


def pool(name: str, *addresses: str, **spec: Any) -> Pool:
    return parse_pool(name, {"addresses": list(addresses), **spec})


def req(name: str, ns: str = "default", **kw: Any) -> ServiceRequest:
    if "requested_ips" in kw:
        kw["requested_ips"] = tuple(IP(x) for x in kw["requested_ips"])
    return ServiceRequest(key=ServiceKey(ns, name), **kw)


def alloc(*pools: Pool) -> Allocator:
    a = Allocator()
    assert a.set_pools(pools) == []
    return a


def ips(a: Assignment) -> list[str]:
    return [str(x) for x in a.ips]


def reason(excinfo: pytest.ExceptionInfo[AllocationError]) -> str:
    return excinfo.value.reason


def state(a: Allocator) -> tuple[dict[ServiceKey, Assignment], list[PoolUsage]]:
    return a.assignments(), [a.usage(p.name) for p in a.pools()]


# --- address order -----------------------------------------------------------------------------


def test_lowest_free_address_first_and_reuse_after_release() -> None:
    a = alloc(pool("p", "198.18.0.0/30"))
    got = [ips(a.assign(req(f"s{i}")))[0] for i in range(4)]
    assert got == ["198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3"]
    with pytest.raises(AllocationError) as info:
        a.assign(req("s4"))
    assert reason(info) == "NoAvailableIPs"
    assert a.release(ServiceKey("default", "s2")) == Assignment("p", (IP("198.18.0.2"),))
    assert a.release(ServiceKey("default", "s1")) == Assignment("p", (IP("198.18.0.1"),))
    assert ips(a.assign(req("n1"))) == ["198.18.0.1"]
    assert ips(a.assign(req("n2"))) == ["198.18.0.2"]


def test_ranges_are_used_in_address_order() -> None:
    a = alloc(pool("p", "198.18.5.0-198.18.5.1", "198.18.1.7"))
    assert [ips(a.assign(req(f"s{i}")))[0] for i in range(3)] == [
        "198.18.1.7",
        "198.18.5.0",
        "198.18.5.1",
    ]


def test_avoid_buggy_ips_skips_dot0_and_dot255() -> None:
    a = alloc(pool("p", "198.18.0.253-198.18.1.2", avoidBuggyIPs=True))
    got = [ips(a.assign(req(f"s{i}")))[0] for i in range(4)]
    assert got == ["198.18.0.253", "198.18.0.254", "198.18.1.1", "198.18.1.2"]
    with pytest.raises(AllocationError) as info:
        a.assign(req("s5"))
    assert reason(info) == "NoAvailableIPs"
    assert a.usage("p") == PoolUsage(4, 0, 0, 0)


def test_requested_ip_above_untouched_addresses_then_auto_fill_skips_it() -> None:
    a = alloc(pool("p", "198.18.0.0/29"))
    assert ips(a.assign(req("x", requested_ips=["198.18.0.2"]))) == ["198.18.0.2"]
    got = [ips(a.assign(req(f"s{i}")))[0] for i in range(3)]
    assert got == ["198.18.0.0", "198.18.0.1", "198.18.0.3"]


def test_no_scan_of_huge_ranges() -> None:
    # A scan of a /8 or an IPv6 /64 would not finish; the free structures never scan.
    a = alloc(pool("v4", "10.0.0.0/8"), pool("v6", "2001:db8::/64"))
    assert ips(a.assign(req("top", requested_ips=["10.255.255.254"]))) == ["10.255.255.254"]
    assert ips(a.assign(req("a", pool="v4"))) == ["10.0.0.0"]
    assert ips(a.assign(req("b", pool="v6", families=(6,)))) == ["2001:db8::"]
    top6 = "2001:db8::ffff:ffff:ffff:ffff"
    assert ips(a.assign(req("c", families=(6,), requested_ips=[top6]))) == [top6]
    assert a.usage("v6") == PoolUsage(0, 2, 0, 2**64 - 2)
    assert a.usage("v6").to_status()["availableIPv6"] == 2**63 - 1
    assert a.usage("v4").free == 2**24 - 2


# --- requested addresses -----------------------------------------------------------------------


def test_requested_ip_errors() -> None:
    a = alloc(pool("p", "198.18.0.0/24", avoidBuggyIPs=True), pool("q", "198.18.1.0/24"))
    a.assign(req("holder", requested_ips=["198.18.0.5"]))
    cases = [
        (req("x", requested_ips=["203.0.113.1"]), "IPNotInAnyPool"),
        (req("x", requested_ips=["198.18.0.0"]), "IPNotAllowed"),  # buggy, avoided
        (req("x", requested_ips=["198.18.0.5"]), "IPInUse"),
        (req("x", requested_ips=["198.18.1.5"], pool="p"), "IPNotInPool"),
        (req("x", requested_ips=["198.18.1.5"], pool="nope"), "PoolNotFound"),
        (req("x", requested_ips=["198.18.0.6", "198.18.0.7"]), "InvalidRequest"),
        (req("x", requested_ips=["2001:db8::1"]), "InvalidRequest"),  # v6 for a v4 service
    ]
    before = state(a)
    for request, expected in cases:
        with pytest.raises(AllocationError) as info:
            a.assign(request)
        assert reason(info) == expected, request
        assert info.value.message
        assert state(a) == before


def test_requested_ip_from_pool_without_auto_assign() -> None:
    a = alloc(pool("manual", "198.18.0.0/24", autoAssign=False))
    with pytest.raises(AllocationError) as info:
        a.assign(req("auto"))
    assert reason(info) == "NoAvailableIPs"
    assert a.assign(req("pinned", requested_ips=["198.18.0.9"])) == Assignment(
        "manual", (IP("198.18.0.9"),)
    )
    assert ips(a.assign(req("named", pool="manual"))) == ["198.18.0.0"]


def test_requested_dual_stack_pair_must_share_a_pool() -> None:
    a = alloc(pool("v4", "198.18.0.0/24"), pool("dual", "198.18.1.0/24", "2001:db8::/120"))
    ok = a.assign(
        req(
            "d",
            families=(6, 4),
            family_policy="RequireDualStack",
            requested_ips=["198.18.1.9", "2001:db8::9"],
        )
    )
    assert ok == Assignment("dual", (IP("2001:db8::9"), IP("198.18.1.9")))  # family order
    with pytest.raises(AllocationError) as info:
        a.assign(
            req(
                "e",
                family_policy="RequireDualStack",
                families=(4, 6),
                requested_ips=["198.18.0.9", "2001:db8::a"],
            )
        )
    assert reason(info) == "InvalidRequest"
    with pytest.raises(AllocationError) as info:
        a.assign(req("f", family_policy="RequireDualStack", requested_ips=["198.18.1.10"]))
    assert reason(info) == "InvalidRequest"


# --- pool choice -------------------------------------------------------------------------------


def test_auto_assign_pools_by_name_and_spill_over() -> None:
    a = alloc(pool("b", "198.18.1.0/31"), pool("a", "198.18.0.0/31"))
    got = [a.assign(req(f"s{i}")).pool for i in range(4)]
    assert got == ["a", "a", "b", "b"]


def test_annotated_pool_is_used_and_must_exist() -> None:
    a = alloc(pool("a", "198.18.0.0/24"), pool("z", "198.18.9.0/24", autoAssign=False))
    assert a.assign(req("s", pool="z")) == Assignment("z", (IP("198.18.9.0"),))
    with pytest.raises(AllocationError) as info:
        a.assign(req("t", pool="missing"))
    assert reason(info) == "PoolNotFound"


def test_annotated_pool_full_does_not_fall_back() -> None:
    a = alloc(pool("a", "198.18.0.0/24"), pool("z", "198.18.9.1"))
    a.assign(req("s", pool="z"))
    with pytest.raises(AllocationError) as info:
        a.assign(req("t", pool="z"))
    assert reason(info) == "NoAvailableIPs"


def test_service_allocation_priority_order() -> None:
    a = alloc(
        pool("aaa-general", "198.18.0.0/24"),
        pool("no-prio", "198.18.1.0/31", serviceAllocation={"namespaces": ["team"]}),
        pool("prio-5", "198.18.2.0/31", serviceAllocation={"priority": 5, "namespaces": ["team"]}),
        pool("prio-1", "198.18.3.0/31", serviceAllocation={"priority": 1, "namespaces": ["team"]}),
    )
    got = [a.assign(req(f"s{i}", ns="team")).pool for i in range(7)]
    assert got == ["prio-1"] * 2 + ["prio-5"] * 2 + ["no-prio"] * 2 + ["aaa-general"]
    # Services outside the namespace never get the restricted pools.
    assert a.assign(req("other", ns="elsewhere")).pool == "aaa-general"


def test_restricted_pool_refuses_non_matching_services() -> None:
    a = alloc(
        pool(
            "blue",
            "198.18.0.0/24",
            serviceAllocation={
                "namespaceSelectors": [{"matchLabels": {"tenant": "blue"}}],
                "serviceSelectors": [
                    {"matchExpressions": [{"key": "expose", "operator": "Exists"}]}
                ],
            },
        )
    )
    blue = {"tenant": "blue"}
    assert a.assign(req("ok", ns="b1", namespace_labels=blue, labels={"expose": ""})).pool == "blue"
    with pytest.raises(AllocationError) as info:
        a.assign(req("nolabel", ns="b1", namespace_labels=blue))
    assert reason(info) == "NoAvailableIPs"
    with pytest.raises(AllocationError) as info:
        a.assign(req("red", ns="r", namespace_labels={"tenant": "red"}, labels={"expose": ""}))
    assert reason(info) == "NoAvailableIPs"
    with pytest.raises(AllocationError) as info:
        a.assign(req("red", ns="r", pool="blue"))
    assert reason(info) == "PoolNotAllowed"
    with pytest.raises(AllocationError) as info:
        a.assign(req("red", ns="r", requested_ips=["198.18.0.77"]))
    assert reason(info) == "PoolNotAllowed"


def test_pinned_pool_with_auto_assign_false_is_not_auto_used() -> None:
    a = alloc(
        pool("pinned", "198.18.0.0/24", autoAssign=False, serviceAllocation={"namespaces": ["t"]}),
        pool("general", "198.18.1.0/24"),
    )
    assert a.assign(req("s", ns="t")).pool == "general"
    assert a.assign(req("u", ns="t", pool="pinned")).pool == "pinned"


# --- families ----------------------------------------------------------------------------------


def test_single_stack_ipv6_and_family_not_available() -> None:
    a = alloc(pool("v4", "198.18.0.0/24"), pool("v6", "2001:db8::/120"))
    assert a.assign(req("s6", families=(6,))) == Assignment("v6", (IP("2001:db8::"),))
    with pytest.raises(AllocationError) as info:
        a.assign(req("x", families=(6,), pool="v4"))
    assert reason(info) == "FamilyNotAvailable"


def test_require_dual_stack_takes_one_of_each_from_one_pool() -> None:
    a = alloc(
        pool("a-v4", "198.18.0.0/24"),
        pool("b-v6", "2001:db8::/120"),
        pool("c-dual", "198.18.1.0/31", "2001:db8:1::/127"),
    )
    got = a.assign(req("d", families=(4, 6), family_policy="RequireDualStack"))
    assert got == Assignment("c-dual", (IP("198.18.1.0"), IP("2001:db8:1::")))
    a.assign(req("e", families=(4, 6), family_policy="RequireDualStack"))
    with pytest.raises(AllocationError) as info:
        a.assign(req("f", families=(4, 6), family_policy="RequireDualStack"))
    assert reason(info) == "NoAvailableIPs"
    b = alloc(pool("a-v4", "198.18.0.0/24"), pool("b-v6", "2001:db8::/120"))
    with pytest.raises(AllocationError) as info:
        b.assign(req("f", families=(4, 6), family_policy="RequireDualStack"))
    assert reason(info) == "FamilyNotAvailable"
    assert "must come from one pool" in info.value.message, info.value.message


def test_prefer_dual_stack() -> None:
    a = alloc(pool("a-v4", "198.18.0.0/31"), pool("b-dual", "198.18.1.0/31", "2001:db8::/127"))
    prefer: dict[str, Any] = {"families": (6, 4), "family_policy": "PreferDualStack"}
    # The dual pool wins even though the v4-only pool sorts first.
    assert a.assign(req("p1", **prefer)) == Assignment(
        "b-dual", (IP("2001:db8::"), IP("198.18.1.0"))
    )
    assert ips(a.assign(req("p2", **prefer))) == ["2001:db8::1", "198.18.1.1"]
    # No pool has both left: first pool with the primary family (v6) - none; then v4.
    assert a.assign(req("p3", **prefer)) == Assignment("a-v4", (IP("198.18.0.0"),))
    # A single ipFamilies entry (single-stack cluster) behaves as SingleStack.
    b = alloc(pool("dual", "198.18.1.0/31", "2001:db8::/127"))
    assert ips(b.assign(req("one", families=(4,), family_policy="PreferDualStack"))) == [
        "198.18.1.0"
    ]


def test_prefer_dual_stack_gains_missing_family_when_it_frees_up() -> None:
    a = alloc(pool("dual", "198.18.1.0/30", "2001:db8::"))
    a.assign(req("v6only", families=(6,)))
    prefer = req("p", families=(4, 6), family_policy="PreferDualStack")
    assert ips(a.assign(prefer)) == ["198.18.1.0"]
    a.release(ServiceKey("default", "v6only"))
    assert ips(a.assign(prefer)) == ["198.18.1.0", "2001:db8::"]  # keeps its v4


# --- sharing -----------------------------------------------------------------------------------


def test_sharing_same_key_namespace_distinct_ports() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    web = a.assign(req("web", sharing_key="k", ports=(("TCP", 80),)))
    dns = a.assign(req("dns", sharing_key="k", ports=(("UDP", 53), ("TCP", 53))))
    assert web.ips == dns.ips == (IP("198.18.0.0"),)
    # The same port cannot share: the auto allocator moves on to the next address.
    web2 = a.assign(req("web2", sharing_key="k", ports=(("TCP", 80),)))
    assert ips(web2) == ["198.18.0.1"]
    # UDP/80 is a different port than TCP/80.
    assert ips(a.assign(req("q", sharing_key="k", ports=(("UDP", 80),)))) == ["198.18.0.0"]
    assert a.usage("p") == PoolUsage(2, 0, 254, 0)
    assert a.users_of(IP("198.18.0.0")) == {ServiceKey("default", n) for n in ("web", "dns", "q")}


def test_shared_ip_stays_taken_until_last_user_releases() -> None:
    a = alloc(pool("p", "198.18.0.0/30"))
    a.assign(req("a", sharing_key="k", ports=(("TCP", 1),)))
    a.assign(req("b", sharing_key="k", ports=(("TCP", 2),)))
    assert a.release(ServiceKey("default", "a")) == Assignment("p", (IP("198.18.0.0"),))
    assert a.usage("p").assigned_ipv4 == 1
    assert ips(a.assign(req("c"))) == ["198.18.0.1"]  # .0 still held by b
    assert a.release(ServiceKey("default", "b")) == Assignment("p", (IP("198.18.0.0"),))
    assert a.usage("p").assigned_ipv4 == 1
    assert ips(a.assign(req("d"))) == ["198.18.0.0"]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({"sharing_key": "k"}, {"sharing_key": "other"}, "SharingKeyMismatch"),
        ({"sharing_key": None}, {"sharing_key": "k"}, "IPInUse"),
        ({"sharing_key": "k"}, {"sharing_key": None}, "IPInUse"),
        ({"sharing_key": "k"}, {"sharing_key": "k", "ns": "other"}, "IPInUse"),
        ({"sharing_key": "k", "ports": (("TCP", 80),)}, {"sharing_key": "k"}, "PortConflict"),
        (
            {"sharing_key": "k", "external_traffic_policy": "Local"},
            {"sharing_key": "k"},
            "SharingKeyMismatch",
        ),
        (
            {
                "sharing_key": "k",
                "external_traffic_policy": "Local",
                "selector": frozenset({("app", "a")}),
            },
            {
                "sharing_key": "k",
                "external_traffic_policy": "Local",
                "selector": frozenset({("app", "b")}),
            },
            "SharingKeyMismatch",
        ),
    ],
)
def test_sharing_refusals(first: dict[str, Any], second: dict[str, Any], expected: str) -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    first = {"ports": (("TCP", 80),), **first}
    second = {"ports": (("TCP", 80),) if expected == "PortConflict" else (("TCP", 81),), **second}
    a.assign(req("one", requested_ips=["198.18.0.7"], **first))
    before = state(a)
    with pytest.raises(AllocationError) as info:
        a.assign(req("two", requested_ips=["198.18.0.7"], **second))
    assert reason(info) == expected
    assert state(a) == before
    # Without a requested address, the second Service simply gets another one.
    assert ips(a.assign(req("two", **second))) == ["198.18.0.0"]


def test_local_policy_shares_with_equal_selectors() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    local: dict[str, Any] = {
        "sharing_key": "k",
        "external_traffic_policy": "Local",
        "selector": frozenset({("app", "a")}),
    }
    one = a.assign(req("one", ports=(("TCP", 80),), **local))
    two = a.assign(req("two", ports=(("TCP", 443),), **local))
    assert one.ips == two.ips


def test_auto_assign_prefers_lowest_shareable_or_free() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    a.assign(req("x", requested_ips=["198.18.0.5"], sharing_key="k", ports=(("TCP", 1),)))
    # .0 is lower than the shareable .5
    assert ips(a.assign(req("y", sharing_key="k", ports=(("TCP", 2),)))) == ["198.18.0.0"]
    for i in range(1, 5):
        a.assign(req(f"fill{i}"))
    # now .5 is the lowest candidate
    assert ips(a.assign(req("z", sharing_key="k", ports=(("TCP", 3),)))) == ["198.18.0.0"]
    assert ips(a.assign(req("w", sharing_key="k", ports=(("TCP", 2),)))) == ["198.18.0.5"]


# --- idempotence and changes -------------------------------------------------------------------


def test_assign_is_idempotent() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    first = a.assign(req("s", ports=(("TCP", 80),)))
    a.assign(req("t"))
    assert a.assign(req("s", ports=(("TCP", 80),))) == first
    assert a.assign(req("s", ports=(("TCP", 8080),))) == first  # port change keeps the IP
    assert a.usage("p").assigned_ipv4 == 2


def test_changed_request_reallocates() -> None:
    a = alloc(pool("p", "198.18.0.0/24"), pool("q", "198.18.1.0/24", "2001:db8::/120"))
    assert ips(a.assign(req("s"))) == ["198.18.0.0"]
    assert ips(a.assign(req("s", requested_ips=["198.18.0.9"]))) == ["198.18.0.9"]
    assert a.usage("p").assigned_ipv4 == 1
    assert a.assign(req("s", pool="q")) == Assignment("q", (IP("198.18.1.0"),))
    assert a.usage("p").assigned_ipv4 == 0
    assert ips(a.assign(req("s", pool="q", families=(6,)))) == ["2001:db8::"]
    assert a.usage("q") == PoolUsage(0, 1, 256, 255)


def test_failed_change_keeps_the_old_assignment() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    a.assign(req("other", requested_ips=["198.18.0.9"]))
    mine = a.assign(req("s"))
    before = state(a)
    for bad in (
        req("s", requested_ips=["198.18.0.9"]),
        req("s", pool="missing"),
        req("s", families=(6,)),
        req("s", family_policy="Whatever"),
    ):
        with pytest.raises(AllocationError):
            a.assign(bad)
        assert state(a) == before
        assert a.assignment(ServiceKey("default", "s")) == mine


def test_sharing_change_that_conflicts_moves_to_a_free_address() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    a.assign(req("a", sharing_key="k", ports=(("TCP", 80),)))
    a.assign(req("b", sharing_key="k", ports=(("TCP", 81),)))
    # b now wants port 80 too: it can no longer share .0, so it moves.
    assert ips(a.assign(req("b", sharing_key="k", ports=(("TCP", 80),)))) == ["198.18.0.1"]
    # a sole user may change its sharing key in place.
    assert ips(a.assign(req("a", sharing_key="new", ports=(("TCP", 80),)))) == ["198.18.0.0"]


# --- restore -----------------------------------------------------------------------------------


def test_restore_retakes_status_addresses() -> None:
    a = alloc(pool("p", "198.18.0.0/24", autoAssign=False), pool("q", "198.18.1.0/24"))
    got = a.restore(req("s"), [IP("198.18.0.42")])  # autoAssign is not re-checked
    assert got == Assignment("p", (IP("198.18.0.42"),))
    assert a.assign(req("s")) == got  # and the next reconcile keeps it
    with pytest.raises(AllocationError) as info:
        a.restore(req("t"), [IP("198.18.0.42")])
    assert reason(info) == "IPInUse"
    with pytest.raises(AllocationError) as info:
        a.restore(req("t"), [IP("203.0.113.9")])
    assert reason(info) == "IPNotInAnyPool"
    with pytest.raises(AllocationError) as info:
        a.restore(req("t", pool="q"), [IP("198.18.0.43")])
    assert reason(info) == "IPNotInPool"
    with pytest.raises(AllocationError) as info:
        a.restore(req("t", requested_ips=["198.18.0.44"]), [IP("198.18.0.43")])
    assert reason(info) == "InvalidRequest"
    with pytest.raises(AllocationError) as info:
        a.restore(req("t"), [])
    assert reason(info) == "InvalidRequest"
    assert a.assignment(ServiceKey("default", "t")) is None


def test_restore_shared_and_dual_stack() -> None:
    a = alloc(pool("d", "198.18.0.0/24", "2001:db8::/120"))
    dual: dict[str, Any] = {
        "families": (4, 6),
        "family_policy": "RequireDualStack",
        "sharing_key": "k",
    }
    pair = [IP("2001:db8::5"), IP("198.18.0.5")]
    assert ips(a.restore(req("x", ports=(("TCP", 1),), **dual), pair)) == [
        "198.18.0.5",
        "2001:db8::5",
    ]
    assert a.restore(req("y", ports=(("TCP", 2),), **dual), pair).ips == (
        IP("198.18.0.5"),
        IP("2001:db8::5"),
    )
    assert a.usage("d") == PoolUsage(1, 1, 255, 255)


# --- pool changes ------------------------------------------------------------------------------


def test_set_pools_keeps_covered_and_evicts_the_rest() -> None:
    a = alloc(pool("p", "198.18.0.0/29"), pool("q", "198.18.1.0/29"))
    for i in range(6):
        a.assign(req(f"s{i}", pool="p"))
    a.assign(req("q0", pool="q"))
    # Shrink p to .0-.3 and drop q.
    evicted = a.set_pools([pool("p", "198.18.0.0/30")])
    assert evicted == [ServiceKey("default", n) for n in ("q0", "s4", "s5")]
    assert a.usage("p") == PoolUsage(4, 0, 0, 0)
    assert a.assignment(ServiceKey("default", "s4")) is None
    assert a.assignment(ServiceKey("default", "s3")) == Assignment("p", (IP("198.18.0.3"),))
    with pytest.raises(AllocationError):
        a.usage("q")
    # Grow again: the kept ones stay, new ones fill in above them.
    assert a.set_pools([pool("p", "198.18.0.0/29")]) == []
    assert ips(a.assign(req("s4"))) == ["198.18.0.4"]


def test_set_pools_buggy_toggle_evicts_dot0() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    a.assign(req("zero"))
    a.assign(req("one"))
    assert a.set_pools([pool("p", "198.18.0.0/24", avoidBuggyIPs=True)]) == [
        ServiceKey("default", "zero")
    ]
    assert a.usage("p") == PoolUsage(1, 0, 253, 0)


def test_set_pools_rejects_overlaps_and_duplicates_unchanged() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    a.assign(req("s"))
    before = state(a)
    with pytest.raises(ValueError, match="overlapping"):
        a.set_pools([pool("p", "198.18.0.0/24"), pool("q", "198.18.0.128/25")])
    with pytest.raises(ValueError, match="duplicate"):
        a.set_pools([pool("p", "198.18.0.0/24"), pool("p", "198.18.1.0/24")])
    assert state(a) == before


def test_set_pools_unchanged_pool_keeps_state_and_changed_settings_keep_ips() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    a.assign(req("s"))
    a.assign(req("t"))
    a.release(ServiceKey("default", "s"))
    assert a.set_pools([pool("p", "198.18.0.0/24")]) == []
    assert a.set_pools([pool("p", "198.18.0.0/24", autoAssign=False)]) == []
    assert a.assignment(ServiceKey("default", "t")) == Assignment("p", (IP("198.18.0.1"),))
    assert ips(a.assign(req("u", pool="p"))) == ["198.18.0.0"]


def test_pool_for_ip() -> None:
    a = alloc(
        pool("p", "198.18.0.0/24", avoidBuggyIPs=True),
        pool("q", "198.18.2.5-198.18.2.9", "2001:db8::/64"),
    )
    assert a.pool_for_ip(IP("198.18.0.1")) == "p"
    assert a.pool_for_ip(IP("198.18.0.0")) is None  # buggy, avoided
    assert a.pool_for_ip(IP("198.18.1.1")) is None
    assert a.pool_for_ip(IP("198.18.2.9")) == "q"
    assert a.pool_for_ip(IP("198.18.2.10")) is None
    assert a.pool_for_ip(IP("2001:db8::abcd")) == "q"
    assert a.pool_for_ip(IP("2001:db9::")) is None
    assert a.pool_for_ip(IP("1.1.1.1")) is None


# --- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"family_policy": "DualStackPlease"},
        {"families": (5,)},
        {"families": (4, 4)},
        {"external_traffic_policy": "Nearby"},
        {"ports": (("ICMP", 1),)},
        {"ports": (("TCP", 0),)},
        {"ports": (("TCP", 70000),)},
        {"requested_ips": ["198.18.0.1", "198.18.0.2", "2001:db8::1"]},
    ],
)
def test_invalid_requests(bad: dict[str, Any]) -> None:
    a = alloc(pool("p", "198.18.0.0/24", "2001:db8::/120"))
    with pytest.raises(AllocationError) as info:
        a.assign(req("s", **bad))
    assert reason(info) == "InvalidRequest"
    assert a.assignments() == {}


def test_release_unknown_is_none() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    assert a.release(ServiceKey("default", "never")) is None


def test_usage_unknown_pool() -> None:
    with pytest.raises(AllocationError) as info:
        Allocator().usage("nope")
    assert reason(info) == "PoolNotFound"


def test_pool_restriction_change_moves_service_on_next_assign() -> None:
    a = alloc(pool("a", "198.18.0.0/24"), pool("b", "198.18.1.0/24"))
    s = req("s", ns="x")
    assert a.assign(s).pool == "a"
    assert a.assign(s).pool == "a"  # resync: cached, unchanged
    # Same addresses, but now reserved for namespace y: kept by set_pools ...
    assert (
        a.set_pools(
            [
                pool("a", "198.18.0.0/24", serviceAllocation={"namespaces": ["y"]}),
                pool("b", "198.18.1.0/24"),
            ]
        )
        == []
    )
    assert a.assignment(ServiceKey("x", "s")) == Assignment("a", (IP("198.18.0.0"),))
    # ... and the next reconcile notices the Service is no longer admitted.
    assert a.assign(s) == Assignment("b", (IP("198.18.1.0"),))
    assert a.usage("a").assigned_ipv4 == 0


def test_priority_only_allocation_pins_for_everyone() -> None:
    a = alloc(
        pool("a", "198.18.0.0/24"), pool("z", "198.18.1.0/24", serviceAllocation={"priority": 3})
    )
    assert a.assign(req("s", ns="anything")).pool == "z"


def test_restore_rejects_non_addresses() -> None:
    a = alloc(pool("p", "198.18.0.0/24"))
    with pytest.raises(AllocationError) as info:
        a.restore(req("s"), ["198.18.0.1"])  # type: ignore[list-item]
    assert reason(info) == "InvalidRequest"
