"""Takeover and release by the L2 announcer, in the namespace lab: gratuitous
ARP / unsolicited NA move a client that cached the old owner's MAC (time
measured and printed), the repeat schedule is kept, a release stops answering
and announcing at once, and a SIGKILLed announcer leaves nothing of its own
behind and restarts cleanly."""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Address, IPv6Address

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA
from scapy.layers.l2 import ARP, Ether

from ironlb.dataplane.l2.ndp import multicast_mac, solicited_node_address
from ironlb.lab.netlab import Lab, LabHost
from tests.net.l2_helpers import (
    ETH_P_ARP,
    ETH_P_IPV6,
    NeighWatch,
    RunnerProc,
    collect,
    link_multicast,
    neigh_lladdr,
    packet_sockets,
    probe_arp,
    probe_ns,
    raw_socket,
    runner,
    vip_args,
    wait_for,
)

pytestmark = pytest.mark.root


def _ping(lab: Lab, host: LabHost, vip: IPv4Address | IPv6Address) -> None:
    lab.run(host, "ping", "-c", "1", "-W", "5", str(vip))


def _is_announcement(vip: IPv4Address | IPv6Address):
    def keep(frame: bytes) -> bool:
        pkt = Ether(frame)
        if vip.version == 4:
            return ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].psrc == pkt[ARP].pdst == str(vip)
        return (
            ICMPv6ND_NA in pkt
            and pkt[ICMPv6ND_NA].tgt == str(vip)
            and pkt[ICMPv6ND_NA].S == 0
            and pkt[ICMPv6ND_NA].O == 1
            and pkt.dst == "33:33:00:00:00:01"
        )

    return keep


def _ethertype(vip: IPv4Address | IPv6Address) -> int:
    return ETH_P_ARP if vip.version == 4 else ETH_P_IPV6


def _answers(lab: Lab, vip: IPv4Address | IPv6Address) -> list[str]:
    if isinstance(vip, IPv4Address):
        return probe_arp(lab, lab.client, vip)
    return [str(na.src) for na in probe_ns(lab, lab.client, vip)]


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("how", ["release", "kill"])
def test_takeover_moves_a_client_with_the_old_mac_cached(lab: Lab, family: int, how: str) -> None:
    node1, node2 = lab.nodes
    vip = lab.vip(0, family)
    with runner(lab, node1, "--bind", *vip_args(vip)) as old, runner(lab, node2, "--bind") as new:
        _ping(lab, lab.client, vip)
        assert neigh_lladdr(lab, lab.client, vip) == node1.mac
        if how == "release":
            old.release(vip)
        else:
            old.kill()  # node1's announcer dies; its address stays on lo
        watch = NeighWatch(lab, lab.client)
        try:
            reply = new.own(vip)
            changed_at = watch.wait_lladdr(vip, node2.mac, timeout=60)
        finally:
            watch.close()
        took_ms = (changed_at - reply["t0"]) * 1000
        print(f"\ntakeover ipv{family} ({how} on node1): client moved in {took_ms:.1f} ms")
        assert neigh_lladdr(lab, lab.client, vip) == node2.mac
        _ping(lab, lab.client, vip)
        assert _answers(lab, vip) == [node2.mac]


@pytest.mark.parametrize("family", [4, 6])
def test_announcements_follow_the_repeat_schedule(lab: Lab, family: int) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0, family)
    sock = raw_socket(lab, lab.client, _ethertype(vip))
    try:
        with runner(lab, node1, "--garp-repeat", "0,0.3,0.6", "--refresh", "none") as proc:
            proc.own(vip)
            seen: list[bytes] = []
            # Hang guard while waiting for the three, then a quiet second for a fourth.
            deadline = time.monotonic() + 20
            while len(seen) < 3 and time.monotonic() < deadline:
                seen += collect(sock, 0.2, _is_announcement(vip))
            seen += collect(sock, 1.0, _is_announcement(vip))
            metrics = proc.metrics()
    finally:
        sock.close()
    assert len(seen) == 3
    assert all(Ether(f).src == node1.mac for f in seen)
    name = "ipv4" if family == 4 else "ipv6"
    assert f'ironlb_l2_gratuitous_sent_total{{family="{name}",vip="{vip}"}} 3.0' in metrics


def _gratuitous_count(proc: RunnerProc, vip: IPv4Address | IPv6Address) -> float:
    family = "ipv4" if vip.version == 4 else "ipv6"
    prefix = f'ironlb_l2_gratuitous_sent_total{{family="{family}",vip="{vip}"}} '
    for line in proc.metrics().splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


@pytest.mark.parametrize("family", [4, 6])
def test_release_stops_answering_and_refreshing_at_once(lab: Lab, family: int) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0, family)
    sock = raw_socket(lab, lab.client, _ethertype(vip))
    try:
        with runner(lab, node1, "--garp-repeat", "0", "--refresh", "0.1") as proc:
            proc.own(vip)
            wait_for(lambda: _gratuitous_count(proc, vip) >= 3, what="refreshes")
            assert _answers(lab, vip) == [node1.mac]
            proc.release(vip)
            at_release = _gratuitous_count(proc, vip)
            assert _answers(lab, vip) == []
            collect(sock, 0.3, lambda _f: True)  # drain what was on the wire before
            after = collect(sock, 1.0, _is_announcement(vip))
            assert _gratuitous_count(proc, vip) == at_release
    finally:
        sock.close()
    assert after == []


def test_crash_restart_leaves_nothing_behind(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip4, vip6 = lab.vip(0, 4), lab.vip(0, 6)
    group = multicast_mac(solicited_node_address(vip6)).hex(":")

    def lo_addresses() -> set[str]:
        out = lab.run(node1, "ip", "-j", "addr", "show", "dev", "lo").stdout
        return {a["local"] for link in json.loads(out) for a in link["addr_info"]}

    before = lo_addresses()
    assert packet_sockets(lab, node1) == 0
    first = RunnerProc(lab, node1, "--bind", *vip_args(vip4, vip6))
    assert packet_sockets(lab, node1) == 2  # ARP + NDP on eth0
    assert group in link_multicast(lab, node1)
    assert probe_arp(lab, lab.client, vip4) == [node1.mac]
    first.kill()
    # The kernel closed its sockets and with them the multicast membership.
    assert packet_sockets(lab, node1) == 0
    assert group not in link_multicast(lab, node1)
    assert probe_arp(lab, lab.client, vip4) == []
    assert probe_ns(lab, lab.client, vip6) == []
    # The VIPs stay on lo (VipBinder's state is the kernel's); a restart adopts them.
    assert lo_addresses() == before | {str(vip4), str(vip6)}
    with runner(lab, node1, "--bind", *vip_args(vip4, vip6)) as second:
        assert packet_sockets(lab, node1) == 2
        assert link_multicast(lab, node1).count(group) == 1
        assert probe_arp(lab, lab.client, vip4) == [node1.mac]
        assert [na.src for na in probe_ns(lab, lab.client, vip6)] == [node1.mac]
        reply = second.command("set")
        assert reply["owned"] == []
        assert lo_addresses() == before
        assert group not in link_multicast(lab, node1)
    assert packet_sockets(lab, node1) == 0
