"""IPAddressPool spec parsing: valid forms, defaults, every rejection, selectors, overlaps."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from ironlb.operator.ipranges import IPRange, buggy_count, is_buggy, parse_range
from ironlb.operator.pools import (
    LabelSelector,
    Pool,
    PoolError,
    ServiceAllocation,
    find_overlaps,
    parse_pool,
    parse_selector,
    select_non_overlapping,
    withdrawal_reason,
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def pool(name: str, *addresses: str, **spec: Any) -> Pool:
    return parse_pool(name, {"addresses": list(addresses), **spec})


# --- address forms -----------------------------------------------------------------------------


def test_cidr_range_and_single_address_v4_and_v6_mixed() -> None:
    p = pool(
        "mixed",
        "198.18.10.0/24",
        "198.18.11.10-198.18.11.20",
        "198.18.12.5",
        "fd00:198:18::/120",
        "2001:db8::10 - 2001:db8::1f",
        "2001:db8:1::1",
    )
    assert p.size(4) == 256 + 11 + 1
    assert p.size(6) == 256 + 16 + 1
    assert p.families == {4, 6}
    assert p.contains(ip("198.18.10.0")) and p.contains(ip("198.18.10.255"))
    assert p.contains(ip("198.18.11.20")) and not p.contains(ip("198.18.11.21"))
    assert p.contains(ip("198.18.12.5")) and not p.contains(ip("198.18.12.6"))
    assert p.contains(ip("2001:db8::1f")) and not p.contains(ip("2001:db8::20"))
    assert p.contains(ip("2001:db8:1::1"))
    # ranges come out sorted by family then address
    assert [r.version for r in p.ranges] == [4, 4, 4, 6, 6, 6]
    assert list(p.ranges) == sorted(p.ranges)


def test_defaults_applied_without_api_server() -> None:
    p = pool("d", "198.18.0.1")
    assert p.auto_assign is True
    assert p.avoid_buggy_ips is False
    assert p.allocation is None
    assert p.l2.node_selectors == () and p.l2.interfaces == ()


def test_explicit_flags() -> None:
    p = pool("f", "198.18.0.0/24", autoAssign=False, avoidBuggyIPs=True)
    assert p.auto_assign is False and p.avoid_buggy_ips is True
    assert p.size(4) == 254
    assert p.contains(ip("198.18.0.0"))  # in the range ...
    assert not p.allocatable(ip("198.18.0.0"))  # ... but never handed out
    assert not p.allocatable(ip("198.18.0.255"))
    assert p.allocatable(ip("198.18.0.1"))


def test_avoid_buggy_ips_only_affects_ipv4() -> None:
    p = pool("v6", "2001:db8::/120", avoidBuggyIPs=True)
    assert p.size(6) == 256
    assert p.allocatable(ip("2001:db8::")) and p.allocatable(ip("2001:db8::ff"))


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 0), (0, 255), (1, 254), (255, 256), (250, 1030), (7, 7), (256 * 7 - 1, 256 * 9)],
)
def test_buggy_count_matches_brute_force(first: int, last: int) -> None:
    assert buggy_count(first, last) == sum(is_buggy(4, v) for v in range(first, last + 1))


def test_huge_ipv6_range_size_is_exact() -> None:
    p = pool("big", "2001:db8::/32")
    assert p.size(6) == 2**96
    assert p.size(4) == 0


# --- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "field", "fragment"),
    [
        (["198.18.10.0/33"], "spec.addresses[0]", "198.18.10.0/33"),
        (["198.18.10.0/24", "198.18.300.1"], "spec.addresses[1]", "198.18.300.1"),
        (["nonsense"], "spec.addresses[0]", "nonsense"),
        (["198.18.10.20-198.18.10.10"], "spec.addresses[0]", "reversed"),
        (["198.18.10.7/24"], "spec.addresses[0]", "198.18.10.0/24"),
        (["198.18.10.1-2001:db8::1"], "spec.addresses[0]", "mixes IPv4 and IPv6"),
        (["198.18.10.1-198.18.10.5-198.18.10.9"], "spec.addresses[0]", "first-last"),
        (["fe80::1%eth0"], "spec.addresses[0]", "scoped"),
        (["198.18.10.0/24", "   "], "spec.addresses[1]", "empty"),
        ([7], "spec.addresses[0]", "must be a string"),
        (
            ["198.18.10.0/24", "198.18.11.0/24", "198.18.10.128-198.18.10.130"],
            "spec.addresses[2]",
            "overlaps '198.18.10.0/24' (spec.addresses[0])",
        ),
        (["2001:db8::/64", "2001:db8::5"], "spec.addresses[1]", "overlaps"),
        (["198.18.10.5", "198.18.10.5"], "spec.addresses[1]", "overlaps"),
    ],
)
def test_bad_addresses_name_field_and_value(
    addresses: list[Any], field: str, fragment: str
) -> None:
    with pytest.raises(PoolError) as info:
        parse_pool("bad", {"addresses": addresses})
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(info.value).startswith(field + ": ")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec.addresses"),
        ({"addresses": []}, "spec.addresses"),
        ({"addresses": "198.18.0.0/24"}, "spec.addresses"),
        ({"addresses": ["198.18.0.1"], "autoAssign": "yes"}, "spec.autoAssign"),
        ({"addresses": ["198.18.0.1"], "avoidBuggyIPs": 1}, "spec.avoidBuggyIPs"),
        ({"addresses": ["198.18.0.1"], "bogus": 1}, "spec.bogus"),
        ({"addresses": ["198.18.0.1"], "serviceAllocation": []}, "spec.serviceAllocation"),
        (
            {"addresses": ["198.18.0.1"], "serviceAllocation": {"priority": "high"}},
            "spec.serviceAllocation.priority",
        ),
        (
            {"addresses": ["198.18.0.1"], "serviceAllocation": {"priority": True}},
            "spec.serviceAllocation.priority",
        ),
        (
            {"addresses": ["198.18.0.1"], "serviceAllocation": {"priority": -1}},
            "spec.serviceAllocation.priority",
        ),
        (
            {"addresses": ["198.18.0.1"], "serviceAllocation": {"namespaces": ["a", ""]}},
            "spec.serviceAllocation.namespaces[1]",
        ),
        (
            {
                "addresses": ["198.18.0.1"],
                "serviceAllocation": {"serviceSelectors": [{"matchExpressions": [{"key": "a"}]}]},
            },
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator",
        ),
        (
            {"addresses": ["198.18.0.1"], "l2": {"interfaces": ["eth0", "this-is-way-too-long"]}},
            "spec.l2.interfaces[1]",
        ),
        ({"addresses": ["198.18.0.1"], "l2": {"nodeSelectors": {}}}, "spec.l2.nodeSelectors"),
    ],
)
def test_bad_spec_fields(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(PoolError) as info:
        parse_pool("bad", spec)
    assert info.value.field == field


def test_error_names_bad_value() -> None:
    with pytest.raises(PoolError, match=r"spec\.autoAssign: must be true or false, got 'yes'"):
        parse_pool("bad", {"addresses": ["198.18.0.1"], "autoAssign": "yes"})


def test_empty_name_rejected() -> None:
    with pytest.raises(PoolError) as info:
        parse_pool("", {"addresses": ["198.18.0.1"]})
    assert info.value.field == "metadata.name"


def test_parse_range_forms() -> None:
    assert parse_range("198.18.0.0/31") == IPRange(4, int(ip("198.18.0.0")), int(ip("198.18.0.1")))
    assert parse_range(" 198.18.0.9 ").size == 1
    assert str(parse_range("2001:db8::1-2001:db8::3")) == "2001:db8::1-2001:db8::3"


# --- selectors and serviceAllocation -----------------------------------------------------------


def test_selector_match_labels_and_all_operators() -> None:
    sel = parse_selector(
        {
            "matchLabels": {"team": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        },
        "sel",
    )
    base = {"team": "web", "tier": "front", "owner": "x"}
    assert sel.matches(base)
    assert sel.matches({**base, "env": "prod"})
    assert not sel.matches({**base, "env": "dev"})  # NotIn
    assert not sel.matches({**base, "tier": "back"})  # In
    assert not sel.matches({k: v for k, v in base.items() if k != "tier"})  # In needs the key
    assert not sel.matches({k: v for k, v in base.items() if k != "owner"})  # Exists
    assert not sel.matches({**base, "legacy": ""})  # DoesNotExist
    assert not sel.matches({**base, "team": "db"})  # matchLabels


def test_empty_selector_matches_everything() -> None:
    assert parse_selector({}, "s").matches({})
    assert LabelSelector().matches({"a": "b"})


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "s.matchExpressions[0].values"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "s.matchExpressions[0].values",
        ),
        ({"matchExpressions": [{"key": "", "operator": "Exists"}]}, "s.matchExpressions[0].key"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            "s.matchExpressions[0].operator",
        ),
        ({"matchLabels": {"a": 1}}, "s.matchLabels[a]"),
        ({"matchLabels": ["a"]}, "s.matchLabels"),
        ({"matchLabel": {"a": "b"}}, "s.matchLabel"),
    ],
)
def test_bad_selectors(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(PoolError) as info:
        parse_selector(obj, "s")
    assert info.value.field == field


def test_service_allocation_matching() -> None:
    p = pool(
        "tenant",
        "198.18.0.0/28",
        serviceAllocation={
            "priority": 10,
            "namespaces": ["a"],
            "namespaceSelectors": [{"matchLabels": {"tenant": "blue"}}],
            "serviceSelectors": [{"matchLabels": {"exposed": "yes"}}],
        },
    )
    assert p.allocation == ServiceAllocation(
        priority=10,
        namespaces=frozenset({"a"}),
        namespace_selectors=(LabelSelector({"tenant": "blue"}),),
        service_selectors=(LabelSelector({"exposed": "yes"}),),
    )
    ok = {"exposed": "yes"}
    assert p.matches_service("a", {}, ok)  # listed namespace
    assert p.matches_service("b", {"tenant": "blue"}, ok)  # namespace selector
    assert not p.matches_service("b", {"tenant": "red"}, ok)
    assert not p.matches_service("a", {}, {"exposed": "no"})  # service selector


def test_allocation_without_restrictions_matches_all() -> None:
    p = pool("prio", "198.18.0.0/28", serviceAllocation={"priority": 1})
    assert p.allocation is not None and p.allocation.priority == 1
    assert p.matches_service("any", {}, {})


def test_l2_scope() -> None:
    p = pool(
        "l2",
        "198.18.0.0/28",
        l2={"nodeSelectors": [{"matchLabels": {"rack": "r1"}}], "interfaces": ["eth0", "bond0"]},
    )
    assert p.l2.interfaces == ("eth0", "bond0")
    assert p.l2.node_allowed({"rack": "r1"})
    assert not p.l2.node_allowed({"rack": "r2"})
    assert pool("any", "198.18.0.1").l2.node_allowed({})


def test_pools_are_values() -> None:
    spec = {
        "addresses": ["198.18.0.0/28"],
        "serviceAllocation": {"serviceSelectors": [{"matchLabels": {"a": "b"}}]},
    }
    assert parse_pool("x", spec) == parse_pool("x", spec)
    assert hash(parse_pool("x", spec)) == hash(parse_pool("x", spec))
    assert parse_pool("x", spec) != parse_pool("x", {**spec, "autoAssign": False})


# --- overlaps between pools --------------------------------------------------------------------


def test_find_overlaps_between_pools() -> None:
    a = pool("a", "198.18.0.0/24")
    b = pool("b", "198.18.0.200-198.18.1.10")
    c = pool("c", "198.18.1.5", "2001:db8::/64")
    d = pool("d", "2001:db8::ffff")
    e = pool("e", "198.18.2.0/24", "2001:db8:1::/64")
    assert find_overlaps([e, d, c, b, a]) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert find_overlaps([a, e]) == []
    assert find_overlaps([]) == []


def test_v4_and_v6_never_overlap() -> None:
    # 0.0.0.0/8 and ::/104 have the same integer values but different families.
    assert find_overlaps([pool("v4", "0.0.0.0/8"), pool("v6", "::/104")]) == []


def test_select_non_overlapping_keeps_the_first() -> None:
    old = pool("old", "198.18.0.0/24")
    new = pool("new", "198.18.0.128/25")
    other = pool("other", "198.18.1.0/24")
    accepted, rejected = select_non_overlapping([old, new, other, pool("old", "198.18.9.1")])
    assert [p.name for p in accepted] == ["old", "other"]
    assert set(rejected) == {"new", "old"}
    assert "duplicate" in rejected["old"]
    assert "'198.18.0.128/25' overlaps '198.18.0.0/24' of IPAddressPool 'old'" in rejected["new"]


def test_withdrawal_reason_names_the_address_and_the_change() -> None:
    before = pool("edge", "198.18.63.0/30")
    zero = ip("198.18.63.0")
    buggy = withdrawal_reason(zero, before, pool("edge", "198.18.63.0/30", avoidBuggyIPs=True))
    assert buggy.startswith("198.18.63.0 was withdrawn") and "avoidBuggyIPs" in buggy
    shrunk = withdrawal_reason(zero, before, pool("edge", "198.18.63.2/31"))
    assert "no longer lists it in spec.addresses" in shrunk
    assert withdrawal_reason(zero, before, None) == (
        "198.18.63.0 was withdrawn: pool 'edge' was deleted"
    )
    refused = withdrawal_reason(zero, before, None, ("Overlap", "overlaps pool 'old'"))
    assert "is not usable (Overlap: overlaps pool 'old')" in refused
    for message in (buggy, shrunk, refused):
        assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"addresses": ["198.18.10.0/24"], "l2": {"nodeSelectors": [{"a\nb": 1}]}},
            "spec.l2.nodeSelectors[0].'a\\nb'",
        ),
        ({"addresses": ["198.18.10.0/24"], "": 1}, "spec.''"),
        (
            {
                "addresses": ["198.18.10.0/24"],
                "l2": {"nodeSelectors": [{"matchLabels": {"x\ny": 1}}]},
            },
            "spec.l2.nodeSelectors[0].matchLabels['x\\ny']",
        ),
    ],
)
def test_odd_keys_are_quoted_in_a_one_line_field(spec: dict[str, Any], field: str) -> None:
    """Found by tests/unit/test_props_pools.py: a key with a newline split the message."""
    with pytest.raises(PoolError) as err:
        parse_pool("p", spec)
    assert err.value.field == field
    assert "\n" not in str(err.value)
