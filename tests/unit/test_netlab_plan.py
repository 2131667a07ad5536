"""Pure layout rules of the namespace lab (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from ironlb.lab.netlab.nsutil import sysctl_path
from ironlb.lab.netlab.plan import (
    LAN4,
    LAN6,
    MAX_NODES,
    MAX_PODS_PER_NODE,
    POD_SUPERNET4,
    LabError,
    cleanup_order,
    plan_hosts,
    plan_pod_networks,
    plan_pods,
    pod_network,
    random_prefix,
    validate_prefix,
    vip_address,
)


def test_plan_names_addresses_and_macs() -> None:
    hosts = plan_hosts("ilbx", nodes=2, backends=2)
    assert [(h.name, h.role, h.netns) for h in hosts] == [
        ("client", "client", "ilbx-client"),
        ("node1", "node", "ilbx-node1"),
        ("node2", "node", "ilbx-node2"),
        ("backend1", "backend", "ilbx-backend1"),
        ("backend2", "backend", "ilbx-backend2"),
    ]
    node2 = hosts[2]
    assert node2.ipv4 == IPv4Address("198.18.0.12")
    assert node2.ipv6 == IPv6Address("fd00:198:18::12")
    assert node2.mac == "02:00:c6:12:00:0c"
    assert hosts[3].ipv4 == IPv4Address("198.18.0.101")
    assert all(h.ifname == "eth0" for h in hosts)


def test_plan_is_unique_and_inside_the_lan_at_the_limits() -> None:
    hosts = plan_hosts("p", nodes=89, backends=99)
    for attr in ("ipv4", "ipv6", "mac", "netns"):
        assert len({getattr(h, attr) for h in hosts}) == len(hosts)
    assert all(h.ipv4 in LAN4 and h.ipv6 in LAN6 for h in hosts)
    for h in hosts:
        first = int(h.mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    vips = {vip_address(i) for i in range(55)}
    assert not vips & {h.ipv4 for h in hosts}
    assert max(vips) == IPv4Address("198.18.0.254")


def test_vip_addresses() -> None:
    assert vip_address(0) == IPv4Address("198.18.0.200")
    assert vip_address(3, 6) == IPv6Address("fd00:198:18::203")
    for bad in (-1, 55):
        with pytest.raises(LabError, match="VIP index"):
            vip_address(bad)
    with pytest.raises(LabError, match="family"):
        vip_address(0, 5)


@pytest.mark.parametrize("prefix", ["", "a-b", "ILB", "x" * 25, "a/b", "a b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(LabError, match="invalid lab prefix"):
        validate_prefix(prefix)


def test_random_prefixes_are_valid_and_distinct() -> None:
    prefixes = {random_prefix() for _ in range(50)}
    assert len(prefixes) > 40
    for p in prefixes:
        assert validate_prefix(p) == p and p.startswith("ilb")


@pytest.mark.parametrize(("nodes", "backends"), [(-1, 1), (90, 1), (1, 100), (1, -1)])
def test_bad_sizes_are_refused(nodes: int, backends: int) -> None:
    with pytest.raises(LabError, match="must be"):
        plan_hosts("ilb", nodes, backends)


def test_sysctl_path() -> None:
    assert str(sysctl_path("net.ipv4.conf.all.arp_ignore")) == (
        "/proc/sys/net/ipv4/conf/all/arp_ignore"
    )
    for bad in ("", "net/ipv4", "net..x"):
        with pytest.raises(ValueError, match="bad sysctl key"):
            sysctl_path(bad)


def test_pod_plan_names_addresses_and_macs() -> None:
    ports = plan_pods("ilbx", nodes=2, pods_per_node=2)
    pods = [p.pod for p in ports]
    assert [(p.name, p.role, p.netns, p.node) for p in pods] == [
        ("node1-pod1", "pod", "ilbx-node1-pod1", "node1"),
        ("node1-pod2", "pod", "ilbx-node1-pod2", "node1"),
        ("node2-pod1", "pod", "ilbx-node2-pod1", "node2"),
        ("node2-pod2", "pod", "ilbx-node2-pod2", "node2"),
    ]
    pod = pods[3]
    assert pod.ipv4 == IPv4Address("198.19.2.12")
    assert pod.ipv6 == IPv6Address("fd00:198:19:2::12")
    assert pod.mac == "02:00:c6:13:02:0c"
    assert pod.ifname == "eth0"
    assert (ports[3].node_ifname, ports[3].node_mac) == ("p2", "02:01:c6:13:02:0c")
    # LAN hosts are not pods and carry no node.
    assert all(h.node is None for h in plan_hosts("ilbx", 2, 1))


def test_pod_network_of_a_node() -> None:
    net = pod_network(3)
    assert net.node == "node3"
    assert str(net.ipv4) == "198.19.3.0/24" and str(net.ipv6) == "fd00:198:19:3::/64"
    assert net.gateway4 == IPv4Address("198.19.3.1")
    assert net.gateway6 == IPv6Address("fd00:198:19:3::1")
    # The next hop for the pod CIDRs is the node's LAN address.
    node3 = plan_hosts("ilbx", 3, 0)[3]
    assert (net.node_ipv4, net.node_ipv6) == (node3.ipv4, node3.ipv6)
    assert net.bridge_mac == "02:00:c6:13:03:01"
    assert [n.node for n in plan_pod_networks(2)] == ["node1", "node2"]
    for bad in (0, MAX_NODES + 1):
        with pytest.raises(LabError, match="node index must be"):
            pod_network(bad)


def test_pod_plan_is_unique_and_inside_the_pod_cidrs_at_the_limits() -> None:
    ports = plan_pods("p", nodes=MAX_NODES, pods_per_node=MAX_PODS_PER_NODE)
    pods = [p.pod for p in ports]
    assert len(pods) == MAX_NODES * MAX_PODS_PER_NODE
    lan = plan_hosts("p", MAX_NODES, 99)
    macs = [h.mac for h in (*pods, *lan)] + [p.node_mac for p in ports]
    macs += [n.bridge_mac for n in plan_pod_networks(MAX_NODES)]
    assert len(set(macs)) == len(macs)
    for attr in ("ipv4", "ipv6", "netns", "name"):
        assert len({getattr(h, attr) for h in (*pods, *lan)}) == len(pods) + len(lan)
    nets = {n.node: n for n in plan_pod_networks(MAX_NODES)}
    for port in ports:
        pod = port.pod
        assert pod.node is not None
        net = nets[pod.node]
        assert pod.ipv4 in net.ipv4 and pod.ipv6 in net.ipv6 and pod.ipv4 in POD_SUPERNET4
        assert pod.ipv4 not in (net.gateway4, net.ipv4.network_address, net.ipv4.broadcast_address)
        assert pod.ipv6 != net.gateway6
        assert len(port.node_ifname) <= 15  # IFNAMSIZ - 1
        first = int(port.node_mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01
    assert not {h.ipv4 for h in pods} & set(LAN4)


@pytest.mark.parametrize(
    ("nodes", "pods", "match"),
    [
        (1, -1, "pods_per_node must be 0..200"),
        (1, MAX_PODS_PER_NODE + 1, "pods_per_node must be 0..200, got 201"),
        (MAX_NODES + 1, 1, "nodes must be"),
    ],
)
def test_bad_pod_sizes_are_refused(nodes: int, pods: int, match: str) -> None:
    with pytest.raises(LabError, match=match):
        plan_pods("ilb", nodes, pods)


def test_no_pods_by_default_sizes() -> None:
    assert plan_pods("ilb", nodes=3, pods_per_node=0) == []
    assert plan_pods("ilb", nodes=0, pods_per_node=5) == []
    with pytest.raises(LabError, match="invalid lab prefix"):
        plan_pods("a-b", 1, 1)


def test_cleanup_order_pods_then_hosts_then_switch() -> None:
    names = ["p-sw", "p-client", "p-node1", "p-node1-pod2", "p-backend1", "p-node2-pod1"]
    assert cleanup_order("p", names) == [
        "p-node1-pod2",
        "p-node2-pod1",
        "p-backend1",
        "p-client",
        "p-node1",
        "p-sw",
    ]
    assert cleanup_order("p", []) == []
