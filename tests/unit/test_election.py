"""Election: Node parsing, eligibility rules and rendezvous hashing."""

from __future__ import annotations

import ipaddress
from collections import Counter

from ironlb.operator.pools import parse_pool
from ironlb.speaker.election import (
    EXCLUDE_LABEL,
    NodeInfo,
    eligible_nodes,
    ineligible_reason,
    node_info,
    rendezvous_owner,
)

VIP = ipaddress.ip_address("198.18.0.10")


def vips(n: int) -> list[ipaddress.IPv4Address]:
    base = ipaddress.IPv4Address("198.18.0.0")
    return [base + i for i in range(n)]


def test_node_info_from_api_object() -> None:
    info = node_info(
        {
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"unschedulable": True},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "10.0.0.1"},
                    {"type": "InternalIP", "address": "fd00::1"},
                    {"type": "ExternalIP", "address": "203.0.113.1"},
                ],
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "NetworkUnavailable", "status": "True"},
                ],
            },
        }
    )
    assert info.name == "n1"
    assert dict(info.labels) == {"zone": "a"}
    assert info.internal_ips == (
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_address("fd00::1"),
    )
    assert info.network_unavailable and info.unschedulable


def test_node_info_tolerates_missing_fields() -> None:
    info = node_info({"metadata": {"name": "bare"}})
    assert info == NodeInfo("bare")
    unavailable_false = node_info(
        {
            "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]},
        }
    )
    assert not unavailable_false.network_unavailable


def test_eligibility_rules() -> None:
    nodes = {
        "a": NodeInfo("a", {"role": "edge"}),
        "b": NodeInfo("b", {"role": "edge", EXCLUDE_LABEL: ""}),
        "c": NodeInfo("c", {"role": "edge"}, network_unavailable=True),
        "d": NodeInfo("d", {"role": "core"}),
        "e": NodeInfo("e", {"role": "edge"}),
    }
    alive = frozenset({"a", "b", "c", "d", "ghost"})  # e's speaker is down; ghost has no Node
    assert eligible_nodes(VIP, alive=alive, nodes=nodes, scope=None, local_ready=None) == ("a", "d")
    scope = parse_pool(
        "web",
        {
            "addresses": ["198.18.0.0/24"],
            "l2": {"nodeSelectors": [{"matchLabels": {"role": "edge"}}]},
        },
    ).l2
    assert eligible_nodes(VIP, alive=alive, nodes=nodes, scope=scope, local_ready=None) == ("a",)
    assert eligible_nodes(
        VIP, alive=alive, nodes=nodes, scope=None, local_ready=frozenset({"d", "e"})
    ) == ("d",)
    assert (
        ineligible_reason(
            alive=frozenset({"d"}), nodes=nodes, scope=scope, local_ready=None, pool="web"
        )
        == "no live speaker matches pool web's l2.nodeSelectors"
    )


def test_unschedulable_is_only_a_fallback() -> None:
    nodes = {"a": NodeInfo("a", unschedulable=True), "b": NodeInfo("b")}
    both = frozenset({"a", "b"})
    assert eligible_nodes(VIP, alive=both, nodes=nodes, scope=None, local_ready=None) == ("b",)
    only_a = frozenset({"a"})
    assert eligible_nodes(VIP, alive=only_a, nodes=nodes, scope=None, local_ready=None) == ("a",)


def test_rendezvous_spread_and_determinism() -> None:
    nodes = ["n1", "n2", "n3"]
    owners = {vip: rendezvous_owner(vip, nodes) for vip in vips(300)}
    counts = Counter(owners.values())
    assert set(counts) == set(nodes)
    assert all(60 <= c <= 140 for c in counts.values()), counts
    assert owners == {vip: rendezvous_owner(vip, reversed(nodes)) for vip in vips(300)}
    assert rendezvous_owner(VIP, []) is None


def test_rendezvous_minimal_movement() -> None:
    nodes = ["n1", "n2", "n3", "n4"]
    before = {vip: rendezvous_owner(vip, nodes) for vip in vips(400)}
    after = {vip: rendezvous_owner(vip, ["n1", "n2", "n4"]) for vip in vips(400)}
    moved = {vip for vip in before if before[vip] != after[vip]}
    assert moved == {vip for vip, owner in before.items() if owner == "n3"}
    assert moved  # n3 owned some
    # a node joining takes VIPs only for itself
    joined = {vip: rendezvous_owner(vip, [*nodes, "n5"]) for vip in vips(400)}
    assert all(joined[v] in (before[v], "n5") for v in before)
