"""ARP answering by the L2 announcer, in the namespace lab: a real client
resolves a VIP to the owning node's MAC and connects to it; no one else
answers; unowned addresses, gratuitous packets and unlisted interfaces get no
answer; interfaces coming and going are followed; a flood is answered in full."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from scapy.layers.l2 import ARP, Ether

from ironlb.dataplane.l2 import sockets
from ironlb.lab.netlab import Lab
from tests.arping import arping_args
from tests.net.l2_helpers import (
    ETH_P_ARP,
    REPO,
    AnnouncerThread,
    arp_request,
    collect,
    extra_veth,
    host_mac,
    neigh_lladdr,
    packet_sockets,
    probe_arp,
    raw_socket,
    runner,
    tcp_roundtrip,
    vip_args,
    wait_for,
)

pytestmark = pytest.mark.root


def test_client_resolves_vip_to_the_owner_only_and_connects(lab: Lab) -> None:
    node1, node2 = lab.nodes
    vip = lab.vip(0)
    with runner(lab, node1, "--bind", *vip_args(vip)), runner(lab, node2):
        out = lab.run(lab.client, *arping_args(str(vip), count=1, deadline=2))
        assert node1.mac in out.stdout.lower()
        # Exactly one answer on the wire, from node1 (node2's announcer owns nothing).
        assert probe_arp(lab, lab.client, vip) == [node1.mac]
        assert tcp_roundtrip(lab, node1, lab.client, vip) == "node1"
        assert neigh_lladdr(lab, lab.client, vip) == node1.mac


def test_unicast_requests_answered_unowned_and_gratuitous_not(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip, other = lab.vip(0), lab.vip(1)
    with runner(lab, node1, *vip_args(vip)) as proc:
        assert probe_arp(lab, lab.client, vip, dst=node1.mac) == [node1.mac]
        assert probe_arp(lab, lab.client, other) == []
        # Someone else announcing the VIP (sender IP == target IP): never answered.
        assert probe_arp(lab, lab.client, vip, sender_ip=str(vip)) == []
        # node1's own IP is the kernel's business; the announcer does not answer it.
        assert probe_arp(lab, lab.client, node1.ipv4) == [node1.mac]
        metrics = proc.metrics()
    assert 'ironlb_l2_replies_sent_total{family="ipv4",vip="198.18.0.200"} 1.0' in metrics
    assert 'ironlb_l2_requests_received_total{family="ipv4",vip="198.18.0.200"} 1.0' in metrics


def test_vip_bound_but_not_owned_is_not_answered(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0)
    lab.run(node1, "ip", "addr", "add", f"{vip}/32", "dev", "lo")
    with runner(lab, node1):
        assert probe_arp(lab, lab.client, vip) == []


def test_unlisted_interfaces_get_no_answers(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0)
    with (
        extra_veth(lab, node1, "eth1", lab.client, "eth1"),
        runner(lab, node1, "--interfaces", "eth1", *vip_args(vip)) as proc,
    ):
        assert proc.ready["interfaces"] == ["eth1"]
        assert probe_arp(lab, lab.client, vip) == []
        eth1_mac = host_mac(lab, node1, "eth1")
        assert eth1_mac != node1.mac
        assert probe_arp(lab, lab.client, vip, ifname="eth1") == [eth1_mac]


def test_interfaces_appearing_changing_and_vanishing_are_followed(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0)

    def served(t: AnnouncerThread) -> frozenset[str]:
        return t.call(lambda a: a.interfaces)

    with AnnouncerThread(lab, node1, garp_repeat=(0.0,), refresh_interval=None) as t:
        assert served(t) == {"eth0"}
        t.call(lambda a: a.set_owned([vip]))
        wait_for(lambda: t.metric("ironlb_l2_gratuitous_sent_total", family="ipv4", vip=str(vip)))
        try:
            with extra_veth(lab, node1, "eth1", lab.client, "eth1"):
                wait_for(lambda: served(t) == {"eth0", "eth1"}, what="eth1 served")
                assert probe_arp(lab, lab.client, vip, ifname="eth1") == [
                    host_mac(lab, node1, "eth1")
                ]
                # A new interface gets the takeover announcement too.
                wait_for(
                    lambda: (
                        t.metric("ironlb_l2_gratuitous_sent_total", family="ipv4", vip=str(vip))
                        == 2
                    ),
                    what="gratuitous ARP on eth1",
                )
                lab.run(node1, "ip", "link", "set", "eth1", "down")
                wait_for(lambda: served(t) == {"eth0"}, what="eth1 down dropped")
                lab.run(node1, "ip", "link", "set", "eth1", "up")
                wait_for(lambda: served(t) == {"eth0", "eth1"}, what="eth1 up again")
                # Enslaved to a bridge: the port is dropped, the bridge answers.
                lab.run(node1, "ip", "link", "add", "brx", "type", "bridge")
                lab.run(node1, "ip", "link", "set", "eth1", "master", "brx")
                lab.run(node1, "ip", "link", "set", "brx", "up")
                wait_for(lambda: served(t) == {"eth0", "brx"}, what="bridge instead of port")
                assert probe_arp(lab, lab.client, vip, ifname="eth1") == [
                    host_mac(lab, node1, "brx")
                ]
                # Released from the bridge: served again; the empty bridge has no
                # MAC address (all zero) any more, so it is dropped.
                lab.run(node1, "ip", "link", "set", "eth1", "nomaster")
                wait_for(lambda: served(t) == {"eth0", "eth1"}, what="eth1 freed")
            lab.run(node1, "ip", "link", "del", "brx")
            wait_for(lambda: served(t) == {"eth0"}, what="links gone")
        finally:
            lab.run(node1, "ip", "link", "del", "brx", check=False)
        # The loop survived the interfaces vanishing and still answers.
        assert probe_arp(lab, lab.client, vip) == [node1.mac]
        assert t.metric("ironlb_l2_interfaces") == 1


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_arp_flood_answered_without_loss(lab: Lab, loop: str) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0)
    total, window = 20_000, 256
    with runner(lab, node1, "--loop", loop, *vip_args(vip)) as proc:
        sock = raw_socket(lab, lab.client, ETH_P_ARP)
        try:
            frame = arp_request(lab.client.mac, str(lab.client.ipv4), str(vip))
            sent = received = 0
            started = time.monotonic()
            sock.settimeout(10.0)  # hang guard: a lost reply stalls the window
            while received < total:
                while sent < total and sent - received < window:
                    sock.send(frame)
                    sent += 1
                try:
                    reply, address = sock.recvfrom(128)
                except TimeoutError:
                    break
                if (
                    address[2] != socket.PACKET_OUTGOING
                    and reply[20:22] == b"\x00\x02"
                    and reply[28:32] == vip.packed
                ):
                    received += 1
            elapsed = time.monotonic() - started
        finally:
            sock.close()
        metrics = proc.metrics()
    rate = received / elapsed
    print(f"\nARP responder ({loop}): {received}/{sent} replies in {elapsed:.2f}s = {rate:,.0f}/s")
    assert sent == total
    assert received == total
    assert f'ironlb_l2_replies_sent_total{{family="ipv4",vip="{vip}"}} {float(total)}' in metrics


def test_lifecycle_in_process(lab: Lab) -> None:
    node1 = lab.nodes[0]
    vip = lab.vip(0)
    with AnnouncerThread(lab, node1) as t:
        assert packet_sockets(lab, node1) == 2
        announcer = t.announcer
        assert announcer is not None
        # set_owned belongs to the announcer's loop; another thread is refused.
        with pytest.raises(RuntimeError, match="event loop"):
            announcer.set_owned([vip])
        assert probe_arp(lab, lab.client, vip) == []
        t.call(lambda a: a.set_owned([vip]))
        assert probe_arp(lab, lab.client, vip) == [node1.mac]
        # stop() closes everything; start() again serves again.
        t.run(announcer.stop())
        assert packet_sockets(lab, node1) == 0
        assert t.metric("ironlb_l2_interfaces") == 0
        assert probe_arp(lab, lab.client, vip) == []
        t.run(announcer.start())
        assert t.call(lambda a: a.interfaces) == {"eth0"}
        assert probe_arp(lab, lab.client, vip) == [node1.mac]
        assert t.metric("ironlb_l2_replies_sent_total", family="ipv4", vip=str(vip)) == 2
    assert packet_sockets(lab, node1) == 0


def test_arp_socket_filter_passes_only_incoming_requests(lab: Lab) -> None:
    node1 = lab.nodes[0]
    with lab.in_netns(node1):
        sock = sockets.open_arp_socket("eth0")
        own_out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        own_out.bind(("eth0", 0))
    client = raw_socket(lab, lab.client, ETH_P_ARP)
    try:
        mac, ip = lab.client.mac, str(lab.client.ipv4)
        request = arp_request(mac, ip, "198.18.0.250")
        reply = bytes(
            Ether(src=mac, dst=node1.mac) / ARP(op=2, hwsrc=mac, psrc=ip, pdst=str(node1.ipv4))
        )
        own = arp_request(node1.mac, str(node1.ipv4), "198.18.0.251")
        client.send(reply)
        client.send(request)
        own_out.send(own)  # node1's own outgoing request
        sock.setblocking(True)
        received = collect(sock, 0.5, lambda _f: True)
    finally:
        for s in (sock, own_out, client):
            s.close()
    assert received == [request]  # not the reply, not our own output


def test_without_cap_net_raw_start_fails_clearly(lab: Lab) -> None:
    node1 = lab.nodes[0]
    proc = lab.popen(
        node1,
        "setpriv",
        "--bounding-set",
        "-net_raw",
        sys.executable,
        "-m",
        "tests.net.l2_runner",
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "needs CAP_NET_RAW" in err
