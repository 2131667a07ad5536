"""plan_node: Services + EndpointSlices + Nodes + pools -> one node's DesiredState."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from ironlb.common.addresses import IPAddress
from ironlb.dataplane.state import Backend, ListenerKey
from ironlb.operator.allocator import ServiceKey
from ironlb.operator.pools import Pool, parse_pool
from ironlb.speaker.election import EXCLUDE_LABEL, NodeInfo, node_info
from ironlb.speaker.plan import FAIL_CLOSED_RANGES, NodePlan, plan_node

V4 = ipaddress.ip_address("198.18.0.10")
V6 = ipaddress.ip_address("fd00:18::10")


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def service(
    name: str,
    ips: list[str],
    ports: list[dict[str, Any]] | None = None,
    *,
    namespace: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    policy: str = "Cluster",
    ranges: list[str] | None = None,
    pool: str | None = "default",
    lb_class: str | None = None,
) -> dict[str, Any]:
    notes = dict(annotations or {})
    if pool:
        notes["ironlb.io/ip-allocated-from-pool"] = pool
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "ports": ports
        if ports is not None
        else [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}],
        "externalTrafficPolicy": policy,
    }
    if ranges is not None:
        spec["loadBalancerSourceRanges"] = ranges
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "annotations": notes,
        },
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": a, "ipMode": "Proxy"} for a in ips]}},
    }


def endpoint(
    address: str, node: str, *, ready: bool | None = True, terminating: bool = False
) -> dict[str, Any]:
    conditions: dict[str, Any] = {"serving": True, "terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
    return {"addresses": [address], "conditions": conditions, "nodeName": node}


def endpoint_slice(
    svc: str,
    endpoints: list[dict[str, Any]],
    *,
    family: str = "IPv4",
    ports: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    suffix: str = "abcde",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": family,
        "ports": ports
        if ports is not None
        else [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def kube_node(name: str, labels: dict[str, str] | None = None, **extra: Any) -> NodeInfo:
    status: dict[str, Any] = {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}
    if extra.get("network_unavailable"):
        status["conditions"] = [{"type": "NetworkUnavailable", "status": "True"}]
    spec = {"unschedulable": True} if extra.get("unschedulable") else {}
    return node_info(
        {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": status}
    )


NODES = {n: kube_node(n) for n in ("n1", "n2", "n3")}
ALIVE = frozenset(NODES)
POOLS: dict[str, Pool] = {
    "default": parse_pool("default", {"addresses": ["198.18.0.0/24", "fd00:18::/64"]})
}


def plan(
    node: str = "n1", services=(), slices=(), nodes=None, pools=None, alive=None, **kw: Any
) -> NodePlan:
    return plan_node(
        node=node,
        services=services,
        slices=slices,
        nodes=NODES if nodes is None else nodes,
        pools=POOLS if pools is None else pools,
        alive=ALIVE if alive is None else alive,
        **kw,
    )


def owned_by(p: NodePlan, vip: IPAddress) -> str | None:
    return p.owners[vip]


KEY = ServiceKey("default", "web")


def test_named_target_port_resolves_through_the_slice() -> None:
    svc = service(
        "web",
        [str(V4)],
        [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
        ],
    )
    sl = endpoint_slice(
        "web",
        [endpoint("10.1.0.2", "n1"), endpoint("10.1.0.1", "n2")],
        ports=[
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "http", "port": 9999, "protocol": "UDP"},
        ],
    )
    p = plan(services=[svc], slices=[sl])
    assert p.state.backends(ListenerKey(V4, "tcp", 80)) == (
        Backend(ip("10.1.0.1"), 8080),
        Backend(ip("10.1.0.2"), 8080),
    )
    assert p.state.backends(ListenerKey(V4, "udp", 53)) == (
        Backend(ip("10.1.0.1"), 5353),
        Backend(ip("10.1.0.2"), 5353),
    )
    assert p.owners[V4] in NODES
    assert p.vip_services == {V4: (KEY,)}
    assert p.problems == {}


def test_unnamed_port_and_both_families() -> None:
    svc = service("web", [str(V4), str(V6)], [{"port": 443, "targetPort": 8443}])
    slices = [
        endpoint_slice(
            "web", [endpoint("10.1.0.1", "n1")], ports=[{"port": 8443, "protocol": "TCP"}]
        ),
        endpoint_slice(
            "web",
            [endpoint("fd00:1::1", "n2")],
            family="IPv6",
            suffix="v6",
            ports=[{"name": "", "port": 8443, "protocol": "TCP"}],
        ),
        endpoint_slice(
            "web",
            [{"addresses": ["web.example"]}],
            family="FQDN",
            suffix="fq",
            ports=[{"port": 8443}],
        ),
    ]
    p = plan(services=[svc], slices=slices)
    assert p.state.backends(ListenerKey(V4, "tcp", 443)) == (Backend(ip("10.1.0.1"), 8443),)
    assert p.state.backends(ListenerKey(V6, "tcp", 443)) == (Backend(ip("fd00:1::1"), 8443),)
    assert set(p.owners) == {V4, V6} and None not in p.owners.values()


def test_not_ready_terminating_and_nil_ready() -> None:
    sl = endpoint_slice(
        "web",
        [
            endpoint("10.1.0.1", "n1", ready=None),  # nil means ready
            endpoint("10.1.0.2", "n1", ready=False),
            endpoint("10.1.0.3", "n1", ready=True, terminating=True),
            endpoint("10.1.0.1", "n1"),  # duplicate
            {"addresses": ["10.1.0.4", "10.1.0.99"], "conditions": {}},  # only addresses[0]
        ],
    )
    p = plan(services=[service("web", [str(V4)])], slices=[sl])
    assert p.state.backends(ListenerKey(V4, "tcp", 80)) == (
        Backend(ip("10.1.0.1"), 8080),
        Backend(ip("10.1.0.2"), 8080, ready=False),
        Backend(ip("10.1.0.3"), 8080, ready=False),
        Backend(ip("10.1.0.4"), 8080),
    )


def test_only_not_ready_endpoints_means_no_owner() -> None:
    sl = endpoint_slice("web", [endpoint("10.1.0.2", "n1", ready=False)])
    p = plan(services=[service("web", [str(V4)])], slices=[sl])
    assert p.owners[V4] is None
    assert p.state.vips == frozenset()
    assert ListenerKey(V4, "tcp", 80) in p.state.listeners  # listener kept ready
    assert [pr.reason for pr in p.problems[KEY]] == ["NoEndpoints"]


def test_no_endpoints_owner_none_on_every_node() -> None:
    for n in NODES:
        p = plan(n, services=[service("web", [str(V4)])])
        assert p.owners == {V4: None}
        assert p.state.vips == frozenset()
        assert p.problems[KEY][0].reason == "NoEndpoints"


def test_local_policy_per_node_and_election() -> None:
    svc = service(
        "web", [str(V4)], policy="Local", annotations={"ironlb.io/forwarding-mode": "kernel"}
    )
    sl = endpoint_slice(
        "web",
        [
            endpoint("10.1.0.1", "n1"),
            endpoint("10.1.0.2", "n2", ready=False),
            endpoint("10.1.0.3", "n3"),
        ],
    )
    plans = {n: plan(n, services=[svc], slices=[sl]) for n in NODES}
    key = ListenerKey(V4, "tcp", 80)
    assert plans["n1"].state.backends(key) == (Backend(ip("10.1.0.1"), 8080),)
    assert plans["n2"].state.backends(key) == (Backend(ip("10.1.0.2"), 8080, ready=False),)
    assert plans["n3"].state.backends(key) == (Backend(ip("10.1.0.3"), 8080),)
    owner = plans["n1"].owners[V4]
    assert owner in ("n1", "n3")
    assert all(p.owners == plans["n1"].owners for p in plans.values())
    assert [n for n, p in plans.items() if V4 in p.state.vips] == [owner]
    opts = plans["n1"].state.listeners[key].options
    assert opts.mode == "kernel" and opts.masquerade is False


def test_cluster_policy_masquerades_and_proxy_local_keeps_default() -> None:
    sl = endpoint_slice("web", [endpoint("10.1.0.1", "n1")])
    kernel = plan(
        services=[service("web", [str(V4)], annotations={"ironlb.io/forwarding-mode": "kernel"})],
        slices=[sl],
    )
    assert kernel.state.listeners[ListenerKey(V4, "tcp", 80)].options.masquerade is True
    proxy_local = plan(services=[service("web", [str(V4)], policy="Local")], slices=[sl])
    opts = proxy_local.state.listeners[ListenerKey(V4, "tcp", 80)].options
    assert opts.mode == "proxy"
    assert proxy_local.owners[V4] == "n1"


def test_local_policy_without_live_local_endpoint() -> None:
    sl = endpoint_slice("web", [endpoint("10.1.0.1", "n9")])
    p = plan(services=[service("web", [str(V4)], policy="Local")], slices=[sl])
    assert p.owners[V4] is None
    (problem,) = p.problems[KEY]
    assert problem.reason == "NoEligibleNode"
    assert "externalTrafficPolicy Local" in problem.message


def test_shared_ip_two_services_one_owner() -> None:
    a = service("a", [str(V4)], [{"name": "http", "port": 80}])
    b = service("b", [str(V4)], [{"name": "http", "port": 443}])
    slices = [
        endpoint_slice("a", [endpoint("10.1.0.1", "n1")]),
        endpoint_slice("b", [endpoint("10.1.0.2", "n2")]),
    ]
    plans = {n: plan(n, services=[a, b], slices=slices) for n in NODES}
    assert plans["n1"].vip_services[V4] == (ServiceKey("default", "a"), ServiceKey("default", "b"))
    owner = plans["n1"].owners[V4]
    assert [n for n, p in plans.items() if V4 in p.state.vips] == [owner]
    for p in plans.values():
        assert p.state.backends(ListenerKey(V4, "tcp", 80)) == (Backend(ip("10.1.0.1"), 8080),)
        assert p.state.backends(ListenerKey(V4, "tcp", 443)) == (Backend(ip("10.1.0.2"), 8080),)


def test_shared_ip_local_services_need_a_node_with_both() -> None:
    a = service("a", [str(V4)], [{"name": "http", "port": 80}], policy="Local")
    b = service("b", [str(V4)], [{"name": "http", "port": 443}], policy="Local")
    slices = [
        endpoint_slice("a", [endpoint("10.1.0.1", "n1"), endpoint("10.1.0.3", "n3")]),
        endpoint_slice("b", [endpoint("10.1.0.2", "n2"), endpoint("10.1.0.4", "n3")]),
    ]
    assert plan(services=[a, b], slices=slices).owners[V4] == "n3"


def test_exclusion_label_network_unavailable_and_selector() -> None:
    nodes = {
        "n1": kube_node("n1", {EXCLUDE_LABEL: "true", "role": "edge"}),
        "n2": kube_node("n2", {"role": "edge"}, network_unavailable=True),
        "n3": kube_node("n3", {"role": "core"}),
    }
    sl = endpoint_slice("web", [endpoint("10.1.0.1", "n1")])
    svc = service("web", [str(V4)])
    assert plan(services=[svc], slices=[sl], nodes=nodes).owners[V4] == "n3"
    pools = {
        "default": parse_pool(
            "default",
            {
                "addresses": ["198.18.0.0/24"],
                "l2": {
                    "nodeSelectors": [{"matchLabels": {"role": "edge"}}],
                    "interfaces": ["eth1"],
                },
            },
        )
    }
    p = plan(services=[svc], slices=[sl], nodes=nodes, pools=pools)
    assert p.owners[V4] is None
    assert p.problems[KEY][0].reason == "NoEligibleNode"
    ok_nodes = {**nodes, "n3": kube_node("n3", {"role": "edge"})}
    p3 = plan("n3", services=[svc], slices=[sl], nodes=ok_nodes, pools=pools)
    assert p3.owners[V4] == "n3" and p3.state.vips == {V4}
    assert p3.state.announce == {V4: frozenset({"eth1"})}
    named = {"web": pools["default"]}
    p4 = plan(
        services=[service("web", [str(V4)], pool="web")], slices=[sl], nodes=nodes, pools=named
    )
    assert p4.problems[KEY][0].message.endswith(
        "every candidate node has condition NetworkUnavailable"
    )
    p5 = plan(
        services=[service("web", [str(V4)], pool="web")],
        slices=[sl],
        nodes={"n3": nodes["n3"]},
        pools=named,
    )
    assert p5.problems[KEY][0].message.endswith(
        "no live speaker matches pool web's l2.nodeSelectors"
    )


def test_unknown_pool_means_all_nodes() -> None:
    sl = endpoint_slice("web", [endpoint("10.1.0.1", "n1")])
    p = plan(
        services=[service("web", [str(V4)], pool="gone")], slices=[sl], alive=frozenset({"n2"})
    )
    assert p.owners[V4] == "n2" and p.state.announce == {}


def test_unschedulable_hint() -> None:
    nodes = {"n1": kube_node("n1", unschedulable=True), "n2": kube_node("n2")}
    sl = endpoint_slice("web", [endpoint("10.1.0.1", "n1")])
    svc = service("web", [str(V4)])
    assert plan(services=[svc], slices=[sl], nodes=nodes, alive=frozenset(nodes)).owners[V4] == "n2"
    assert (
        plan(services=[svc], slices=[sl], nodes=nodes, alive=frozenset({"n1"})).owners[V4] == "n1"
    )


def test_sctp_port_is_reported() -> None:
    svc = service(
        "web",
        [str(V4)],
        [{"name": "http", "port": 80}, {"name": "s", "port": 9, "protocol": "SCTP"}],
    )
    p = plan(services=[svc], slices=[endpoint_slice("web", [endpoint("10.1.0.1", "n1")])])
    assert set(p.state.listeners) == {ListenerKey(V4, "tcp", 80)}
    (problem,) = p.problems[KEY]
    assert problem.reason == "UnsupportedProtocol" and "SCTP/9 is not served" in problem.message


def test_port_conflict_oldest_wins() -> None:
    old = service("zzz", [str(V4)], created="2025-01-01T00:00:00Z")
    new = service("aaa", [str(V4)], created="2026-01-01T00:00:00Z")
    slices = [
        endpoint_slice("zzz", [endpoint("10.1.0.1", "n1")]),
        endpoint_slice("aaa", [endpoint("10.1.0.2", "n1")]),
    ]
    p = plan(services=[new, old], slices=slices)
    assert p.state.backends(ListenerKey(V4, "tcp", 80)) == (Backend(ip("10.1.0.1"), 8080),)
    (problem,) = p.problems[ServiceKey("default", "aaa")]
    assert problem.reason == "PortConflict" and "default/zzz" in problem.message
    assert ServiceKey("default", "zzz") not in p.problems
    # same timestamp: namespace/name decides
    tie = plan(services=[service("b", [str(V4)]), service("a", [str(V4)])])
    assert ServiceKey("default", "b") in tie.problems
    assert "PortConflict" in [pr.reason for pr in tie.problems[ServiceKey("default", "b")]]


def test_source_ranges() -> None:
    sl = [endpoint_slice("web", [endpoint("10.1.0.1", "n1")])]
    key = ListenerKey(V4, "tcp", 80)

    def options(ranges: list[str]) -> tuple[Any, tuple[str, ...]]:
        p = plan(services=[service("web", [str(V4)], ranges=ranges)], slices=sl)
        return p.state.listeners[key].options, tuple(pr.reason for pr in p.problems.get(KEY, ()))

    valid, reasons = options(["10.0.0.7/8", " 192.0.2.0/24", "10.0.0.0/8", "fd00::/8"])
    assert valid.source_ranges == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert reasons == ()
    assert valid.allows(ip("10.9.9.9")) and not valid.allows(ip("203.0.113.1"))
    some, reasons = options(["10.0.0.0/8", "10.0.0.0/33"])
    assert some.source_ranges == (ipaddress.ip_network("10.0.0.0/8"),)
    assert reasons == ("InvalidSourceRanges",)
    closed, reasons = options(["10.0.0.0/33", "nonsense"])
    assert closed.source_ranges == FAIL_CLOSED_RANGES
    assert not closed.allows(ip("10.0.0.1")) and not closed.allows(ip("fd00::1"))
    assert set(reasons) == {"InvalidSourceRanges"}
    none, _ = options([])
    assert none.source_ranges == ()


def test_forwarding_mode_annotation() -> None:
    sl = [endpoint_slice("web", [endpoint("10.1.0.1", "n1")])]
    key = ListenerKey(V4, "tcp", 80)
    bad = plan(
        services=[service("web", [str(V4)], annotations={"ironlb.io/forwarding-mode": "dsr"})],
        slices=sl,
        default_mode="kernel",
    )
    assert bad.state.listeners[key].options.mode == "kernel"
    assert bad.problems[KEY][0].reason == "InvalidForwardingMode"
    empty = plan(
        services=[service("web", [str(V4)], annotations={"ironlb.io/forwarding-mode": ""})],
        slices=sl,
    )
    assert empty.state.listeners[key].options.mode == "proxy" and KEY not in empty.problems


def test_not_ours_and_no_ingress_ignored() -> None:
    services = [
        service("other", [str(V4)], lb_class="example.com/other"),
        service("pending", []),
        {**service("cip", ["198.18.0.11"]), "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}},
    ]
    p = plan(services=services)
    assert p.state.listeners == {} and p.owners == {} and p.problems == {}


def test_unset_class_left_to_another_implementation() -> None:
    """With ``unset_class=False`` (``--ignore-unset-class``, during a MetalLB migration) a
    Service without a class is MetalLB's: not announced, not forwarded; ours still is."""
    sl = [endpoint_slice(n, [endpoint("10.1.0.1", "n1")]) for n in ("legacy", "moved")]
    services = [
        service("legacy", ["198.18.0.7"], pool=None),
        service("moved", ["198.18.0.8"], lb_class="ironlb.io/ironlb"),
    ]
    both = plan(services=services, slices=sl)
    assert set(both.owners) == {
        ipaddress.ip_address("198.18.0.7"),
        ipaddress.ip_address("198.18.0.8"),
    }
    only_ours = plan(services=services, slices=sl, unset_class=False)
    assert set(only_ours.owners) == {ipaddress.ip_address("198.18.0.8")}
    assert {k.vip for k in only_ours.state.listeners} == {ipaddress.ip_address("198.18.0.8")}


def test_wrong_namespace_slice_ignored() -> None:
    sl = endpoint_slice("web", [endpoint("10.1.0.1", "n1")], namespace="other")
    p = plan(services=[service("web", [str(V4)])], slices=[sl])
    assert p.state.backends(ListenerKey(V4, "tcp", 80)) == ()
    assert p.owners[V4] is None


def test_deterministic_and_owners_equal_across_nodes() -> None:
    services = [service(f"s{i}", [f"198.18.0.{i + 1}"]) for i in range(30)]
    slices = [
        endpoint_slice(f"s{i}", [endpoint(f"10.1.{i}.1", "n1"), endpoint(f"10.1.{i}.2", "n2")])
        for i in range(30)
    ]
    plans = [plan(n, services=services, slices=slices) for n in NODES]
    again = plan("n1", services=list(reversed(services)), slices=list(reversed(slices)))
    assert again == plans[0]
    assert all(p.owners == plans[0].owners for p in plans)
    assert all(p.state.listeners == plans[0].state.listeners for p in plans)
    owned = [p.state.vips for p in plans]
    assert sum(len(v) for v in owned) == 30 and frozenset().union(*owned) == set(plans[0].owners)
    assert len({o for o in plans[0].owners.values()}) == 3  # spread over the nodes


def test_scale_2000_services(capsys: Any) -> None:
    services = []
    slices = []
    base = ipaddress.IPv4Address("198.18.0.0")
    for i in range(2000):
        services.append(
            service(
                f"s{i}", [str(base + i)], created=f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
            )
        )
        slices.append(
            endpoint_slice(
                f"s{i}",
                [endpoint(f"10.{i // 250}.{i % 250}.{j}", f"n{j % 3 + 1}") for j in range(1, 11)],
            )
        )
    start = time.perf_counter()
    p = plan(services=services, slices=slices)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nplan_node: 2000 Services x 10 endpoints in {elapsed * 1000:.0f} ms")
    assert len(p.state.listeners) == 2000
    assert all(len(s.backends) == 10 for s in p.state.listeners.values())


def test_udp_expect_reply_annotation() -> None:
    dns = [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]
    sl = [
        endpoint_slice(
            "web",
            [endpoint("10.1.0.1", "n1")],
            ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}],
        )
    ]
    key = ListenerKey(V4, "udp", 53)

    def with_annotation(value: str | None) -> NodePlan:
        annotations = {} if value is None else {"ironlb.io/udp-expect-reply": value}
        svc = service("web", [str(V4)], dns, annotations=annotations)
        return plan(services=[svc], slices=sl)

    assert with_annotation(None).state.listeners[key].options.udp_expect_reply is True
    one_way = with_annotation("false")
    assert one_way.state.listeners[key].options.udp_expect_reply is False
    assert KEY not in one_way.problems
    bad = with_annotation("no")
    assert bad.state.listeners[key].options.udp_expect_reply is True
    assert [p.reason for p in bad.problems[KEY]] == ["InvalidUdpExpectReply"]
    assert "'no' is not 'true' or 'false'" in bad.problems[KEY][0].message


def test_proxy_protocol_annotation_sends_the_header_on_tcp_ports_in_proxy_mode() -> None:
    ports = [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
    ]
    sl = [
        endpoint_slice(
            "web",
            [endpoint("10.1.0.1", "n1")],
            ports=[
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 5353, "protocol": "UDP"},
            ],
        )
    ]
    tcp, udp = ListenerKey(V4, "tcp", 80), ListenerKey(V4, "udp", 53)

    def with_annotations(**annotations: str) -> NodePlan:
        svc = service("web", [str(V4)], ports, annotations=annotations)
        return plan(services=[svc], slices=sl)

    unset = with_annotations()
    assert unset.state.listeners[tcp].options.proxy_protocol is None
    for version in ("v1", "v2"):
        got = with_annotations(**{"ironlb.io/proxy-protocol": version})
        assert got.state.listeners[tcp].options.proxy_protocol == version
        assert got.state.listeners[udp].options.proxy_protocol is None
        assert [p.reason for p in got.problems[KEY]] == ["ProxyProtocolTcpOnly"]
    kernel = with_annotations(
        **{"ironlb.io/proxy-protocol": "v2", "ironlb.io/forwarding-mode": "kernel"}
    )
    options = kernel.state.listeners[tcp].options
    assert (options.mode, options.proxy_protocol) == ("proxy", "v2")
    assert kernel.state.listeners[udp].options.mode == "kernel"
    assert {p.reason for p in kernel.problems[KEY]} == {
        "ProxyProtocolNeedsProxyMode",
        "ProxyProtocolTcpOnly",
    }
    bad = with_annotations(**{"ironlb.io/proxy-protocol": "V2"})
    assert bad.state.listeners[tcp].options.proxy_protocol is None
    assert [p.reason for p in bad.problems[KEY]] == ["InvalidProxyProtocol"]
    assert (
        "'V2' is not one of ['v1', 'v2']; sending no PROXY header" in bad.problems[KEY][0].message
    )
    assert KEY not in with_annotations(**{"ironlb.io/proxy-protocol": ""}).problems
