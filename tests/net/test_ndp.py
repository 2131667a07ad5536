"""IPv6 Neighbor Discovery by the L2 announcer, in the namespace lab: a real
client (ndisc6, the kernel) resolves an IPv6 VIP to the owning node and
connects; the advertisement is well formed; the solicited-node group is joined
while the VIP is owned; unowned targets are not answered; DAD probes are."""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NA, IPv6
from scapy.layers.l2 import Ether

from ironlb.dataplane.l2 import sockets
from ironlb.dataplane.l2.ndp import multicast_mac, solicited_node_address
from ironlb.lab.netlab import Lab
from tests.net.l2_helpers import (
    ETH_P_IPV6,
    collect,
    link_multicast,
    na_lladdr,
    neigh_lladdr,
    ns_frame,
    probe_ns,
    raw_socket,
    runner,
    tcp_roundtrip,
    vip_args,
)

pytestmark = pytest.mark.root


def test_client_resolves_v6_vip_to_the_owner_only_and_connects(lab: Lab) -> None:
    node1, node2 = lab.nodes
    vip = lab.vip(0, 6)
    with runner(lab, node1, "--bind", *vip_args(vip)), runner(lab, node2):
        out = lab.run(lab.client, "ndisc6", "-1", "-r", "3", str(vip), "eth0")
        assert f"Target link-layer address: {node1.mac.upper()}" in out.stdout
        replies = probe_ns(lab, lab.client, vip)
        assert [na_lladdr(r) for r in replies] == [node1.mac]
        (na,) = replies
        assert isinstance(na, Ether)
        assert na.dst == lab.client.mac
        assert na[IPv6].src == str(vip)
        assert na[IPv6].dst == str(lab.client.ipv6)
        assert na[IPv6].hlim == 255
        assert (na[ICMPv6ND_NA].R, na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == (0, 1, 1)
        assert tcp_roundtrip(lab, node1, lab.client, vip) == "node1"
        assert neigh_lladdr(lab, lab.client, vip) == node1.mac


def test_solicited_node_group_joined_while_owned(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0, 6)
    group_mac = multicast_mac(solicited_node_address(vip)).hex(":")
    with runner(lab, node1) as proc:
        assert group_mac not in link_multicast(lab, node1)
        proc.own(vip)
        assert group_mac in link_multicast(lab, node1)
        proc.release(vip)
        assert group_mac not in link_multicast(lab, node1)
        assert probe_ns(lab, lab.client, vip) == []


def test_unowned_not_answered_dad_answered_to_all_nodes(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip, other = lab.vip(0, 6), lab.vip(1, 6)
    # No takeover announcements: they would look like the answer to a DAD probe.
    with runner(lab, node1, "--garp-repeat=", "--refresh=none", *vip_args(vip)) as proc:
        assert probe_ns(lab, lab.client, other) == []
        # Someone running duplicate address detection on our VIP is told it is taken.
        (na,) = probe_ns(lab, lab.client, vip, source="::")
        assert na.dst == "33:33:00:00:00:01"
        assert na[IPv6].dst == "ff02::1"
        assert (na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == (0, 1)
        assert na_lladdr(na) == node1.mac
        metrics = proc.metrics()
    assert f'ironlb_l2_replies_sent_total{{family="ipv6",vip="{vip}"}} 1.0' in metrics
    assert 'ironlb_l2_requests_received_total{family="ipv6",vip="other"} 1.0' in metrics


def test_ns_socket_filter_passes_only_solicitations(lab: Lab) -> None:
    node1 = lab.nodes[0]
    target = lab.vip(2, 6)
    with lab.in_netns(node1):
        sock = sockets.open_ns_socket("eth0")
    client = raw_socket(lab, lab.client, ETH_P_IPV6)
    try:
        mac, src = lab.client.mac, str(lab.client.ipv6)
        ns = ns_frame(mac, src, target)
        na = bytes(
            Ether(src=mac, dst="33:33:00:00:00:01")
            / IPv6(src=src, dst="ff02::1", hlim=255)
            / ICMPv6ND_NA(tgt=src, O=1)
        )
        echo = bytes(
            Ether(src=mac, dst=node1.mac) / IPv6(src=src, dst=str(node1.ipv6)) / ICMPv6EchoRequest()
        )
        for frame in (na, echo, ns):
            client.send(frame)
        received = collect(sock, 0.5, lambda _f: True)
    finally:
        sock.close()
        client.close()
    assert received == [ns]
