"""Service -> ServiceRequest (ironlb.operator.service_request); the pool webhook check."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from ironlb.operator.allocator import ServiceKey
from ironlb.operator.service_request import (
    ServiceRequestError,
    allocated_pool,
    annotation_aliases,
    current_ingress_ips,
    is_ours,
    parse_service,
)
from ironlb.operator.webhook import pool_admission_problem


def svc(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web"},
            "annotations": annotations or {},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
            **spec,
        },
    }


def test_plain_service_gets_defaults() -> None:
    request = parse_service(svc(), {"team": "a"})
    assert request.key == ServiceKey("shop", "web")
    assert request.requested_ips == ()
    assert request.pool is None and request.sharing_key is None
    assert request.ports == (("TCP", 80), ("UDP", 53))
    assert request.families == (4,)
    assert request.family_policy == "SingleStack"
    assert request.external_traffic_policy == "Cluster"
    assert request.selector == frozenset({("app", "web")})
    assert request.labels == {"app": "web"}
    assert request.namespace_labels == {"team": "a"}


def test_annotations_and_dual_stack() -> None:
    request = parse_service(
        svc(
            {
                "ironlb.io/loadBalancerIPs": "198.18.10.5, fd00:198:18::5",
                "ironlb.io/address-pool": "blue",
                "ironlb.io/allow-shared-ip": "k1",
            },
            ipFamilies=["IPv6", "IPv4"],
            ipFamilyPolicy="RequireDualStack",
            externalTrafficPolicy="Local",
        ),
        {},
    )
    assert request.requested_ips == (
        ipaddress.ip_address("198.18.10.5"),
        ipaddress.ip_address("fd00:198:18::5"),
    )
    assert (request.pool, request.sharing_key) == ("blue", "k1")
    assert request.families == (6, 4)
    assert request.family_policy == "RequireDualStack"
    assert request.external_traffic_policy == "Local"


def test_legacy_load_balancer_ip_is_honoured() -> None:
    request = parse_service(svc(loadBalancerIP="198.18.10.9"), {})
    assert request.requested_ips == (ipaddress.ip_address("198.18.10.9"),)


@pytest.mark.parametrize(
    ("service", "needle"),
    [
        (
            svc({"ironlb.io/loadBalancerIPs": "198.18.10.1"}, loadBalancerIP="198.18.10.2"),
            "both annotation",
        ),
        (svc({"ironlb.io/loadBalancerIPs": "198.18.10.300"}), "'198.18.10.300' is not an IPv4"),
        (svc({"ironlb.io/loadBalancerIPs": "198.18.10.1,198.18.10.2"}), "more than one"),
        (svc({"ironlb.io/address-pool": 7}), "must name a pool"),  # type: ignore[dict-item]
        (svc(ipFamilies=["IPv5"]), "unknown family 'IPv5'"),
        (svc(ipFamilyPolicy="Sometimes"), "unknown policy 'Sometimes'"),
        (svc(externalTrafficPolicy="Nearest"), "unknown policy 'Nearest'"),
        (svc(ports=[{"port": 0}]), "spec.ports[0].port"),
        (svc(ports=[{"port": 80, "protocol": "ICMP"}]), "unknown protocol 'ICMP'"),
    ],
)
def test_bad_values_get_clear_errors(service: dict[str, Any], needle: str) -> None:
    with pytest.raises(ServiceRequestError) as info:
        parse_service(service, {})
    assert needle in str(info.value)


def test_class_and_type_filter() -> None:
    assert is_ours(svc(), "ironlb.io/ironlb")
    assert is_ours(svc(loadBalancerClass="ironlb.io/ironlb"), "ironlb.io/ironlb")
    assert not is_ours(svc(loadBalancerClass="other.io/lb"), "ironlb.io/ironlb")
    assert is_ours(svc(loadBalancerClass="other.io/lb"), "other.io/lb")
    assert not is_ours(svc(type="ClusterIP"), "ironlb.io/ironlb")
    # --ignore-unset-class: a Service without a class is another implementation's.
    assert not is_ours(svc(), "ironlb.io/ironlb", unset_class=False)
    assert not is_ours(svc(loadBalancerClass=""), "ironlb.io/ironlb", unset_class=False)
    assert is_ours(svc(loadBalancerClass="ironlb.io/ironlb"), "ironlb.io/ironlb", unset_class=False)


def test_status_readers_skip_garbage() -> None:
    body = svc({"ironlb.io/ip-allocated-from-pool": "blue"})
    body["status"] = {
        "loadBalancer": {
            "ingress": [{"ip": "198.18.10.1"}, {"hostname": "lb.example"}, {"ip": "bogus"}]
        }
    }
    assert current_ingress_ips(body) == (ipaddress.ip_address("198.18.10.1"),)
    assert allocated_pool(body) == "blue"
    assert current_ingress_ips(svc()) == () and allocated_pool(svc()) is None


def test_webhook_admits_valid_and_refuses_invalid_or_overlapping_pools() -> None:
    others = [("old", {"addresses": ["198.18.10.0/24"]}), ("broken", {"addresses": ["x"]})]
    assert pool_admission_problem("new", {"addresses": ["198.18.11.0/24"]}, others) is None
    assert pool_admission_problem("old", {"addresses": ["198.18.10.0/23"]}, others) is None
    overlap = pool_admission_problem("new", {"addresses": ["198.18.10.128/25"]}, others)
    assert overlap is not None and "'old'" in overlap and "overlaps" in overlap
    bad = pool_admission_problem("new", {"addresses": ["198.18.11.9-198.18.11.1"]}, others)
    assert bad is not None and bad.startswith("invalid IPAddressPool 'new': spec.addresses[0]")
    assert pool_admission_problem("new", {"addresses": []}, others) is not None


def test_empty_annotations_count_as_unset() -> None:
    """Helm charts stamp annotations from values that are often empty (issue 8, item 2)."""
    empty = svc(
        {
            "ironlb.io/address-pool": "",
            "ironlb.io/allow-shared-ip": " ",
            "ironlb.io/loadBalancerIPs": "",
        }
    )
    request = parse_service(empty, {})
    assert request.pool is None
    assert request.sharing_key is None
    assert request.requested_ips == ()


# Found by tests/unit/test_props_service_request.py: each was an AttributeError or
# TypeError traceback instead of a one-line refusal naming the field.
@pytest.mark.parametrize(
    ("service", "needle"),
    [
        ({"metadata": ["web"], "spec": {}}, "metadata must be an object, got ['web']"),
        ({"metadata": {"name": "web"}, "spec": True}, "spec must be an object, got True"),
        (
            {"metadata": {"name": "web", "annotations": ["a"]}, "spec": {}},
            "metadata.annotations must be an object, got ['a']",
        ),
        (svc(ipFamilies=[{"IPv4": 1}]), "spec.ipFamilies: unknown family {'IPv4': 1}"),
        (svc(ports=5), "spec.ports must be a list, got 5"),
        (None, "the Service must be an object with metadata and spec, got None"),
    ],
)
def test_wrongly_shaped_services_are_one_line_errors(service: Any, needle: str) -> None:
    with pytest.raises(ServiceRequestError) as err:
        parse_service(service, {})
    assert str(err.value) == needle


def test_event_questions_read_wrongly_shaped_services_as_empty() -> None:
    odd: dict[str, Any] = {
        "metadata": {"name": "web", "annotations": True},
        "spec": ["LoadBalancer"],
        "status": {"loadBalancer": {"ingress": 7}},
    }
    assert not is_ours(odd, "ironlb.io/ironlb")
    assert current_ingress_ips(odd) == ()
    assert allocated_pool(odd) is None
    assert current_ingress_ips({"status": True}) == ()
    assert allocated_pool({"metadata": "x"}) is None


@pytest.mark.parametrize("group", ["metallb.io", "metallb.universe.tf"])
def test_metallb_annotations_are_aliases(group: str) -> None:
    service = svc(
        {
            f"{group}/loadBalancerIPs": "198.18.0.9",
            f"{group}/address-pool": "web",
            f"{group}/allow-shared-ip": "k",
        }
    )
    request = parse_service(service, {})
    assert request.requested_ips == (ipaddress.ip_address("198.18.0.9"),)
    assert (request.pool, request.sharing_key) == ("web", "k")
    lines = annotation_aliases(service)
    assert lines == tuple(
        f"annotation {group}/{name} is used as ironlb.io/{name} (a MetalLB alias)"
        for name in ("loadBalancerIPs", "address-pool", "allow-shared-ip")
    )
    # A bad value names the annotation the user actually wrote.
    with pytest.raises(ServiceRequestError) as info:
        parse_service(svc({f"{group}/loadBalancerIPs": "198.18.0"}), {})
    assert f"annotation {group}/loadBalancerIPs" in str(info.value)


def test_ours_wins_over_metallb_and_the_alias_is_named_ignored() -> None:
    service = svc(
        {
            "ironlb.io/loadBalancerIPs": "198.18.0.7",
            "metallb.universe.tf/loadBalancerIPs": "198.18.0.8",
            "ironlb.io/address-pool": "",  # empty is unset: the alias applies
            "metallb.io/address-pool": "web",
        }
    )
    request = parse_service(service, {})
    assert request.requested_ips == (ipaddress.ip_address("198.18.0.7"),)
    assert request.pool == "web"
    assert annotation_aliases(service) == (
        "annotation metallb.universe.tf/loadBalancerIPs is ignored: ironlb.io/loadBalancerIPs "
        "is set and wins",
        "annotation metallb.io/address-pool is used as ironlb.io/address-pool (a MetalLB alias)",
    )
    assert annotation_aliases(svc({"ironlb.io/loadBalancerIPs": "198.18.0.7"})) == ()
