"""VIP binding on ``lo`` inside lab node namespaces: marks, idempotence, ARP/NDP
silence, reachability, crash-restart adoption, unmarked addresses left alone."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import textwrap
from ipaddress import IPv4Address, IPv6Address

import pytest
import uvloop
from pyroute2 import IPRoute

from ironlb.dataplane.vip import IRONLB_ADDR_PROTO, BindChanges, VipBinder, VipError
from ironlb.lab.netlab import Lab, LabHost
from ironlb.lab.netlab.nsutil import read_sysctl, write_sysctl
from tests.arping import arping_args, reply_macs

pytestmark = pytest.mark.root


def _lo_addrs(lab: Lab, host: LabHost) -> dict[str, dict[str, object]]:
    """``ip -j addr show lo`` in the host, keyed by address."""
    out = lab.run(host, "ip", "-j", "addr", "show", "lo").stdout
    return {a["local"]: a for a in json.loads(out)[0]["addr_info"]}


def _lo_protos(lab: Lab, host: LabHost) -> dict[str, int | None]:
    """IFA_PROTO of every address on lo (iproute2 6.1 cannot show it)."""
    with lab.in_netns(host), IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        return {
            str(m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")): m.get_attr("IFA_PROTO")
            for m in ipr.get_addr(index=lo)
        }


def _arping(lab: Lab, vip: IPv4Address) -> subprocess.CompletedProcess[str]:
    return lab.run(lab.client, *arping_args(str(vip), first=True), check=False)


def test_bind_marks_and_is_idempotent(lab: Lab) -> None:
    node = lab.nodes[0]
    v4, v6 = lab.vip(0), lab.vip(0, 6)
    with lab.in_netns(node):
        binder = VipBinder()
    # The binder keeps working in the node's namespace outside the with-block.
    with binder:
        assert binder.bind(v4) is True
        assert binder.bind(str(v6)) is True
        assert binder.bind(v4) is False
        assert binder.bind(v6) is False
        assert binder.owned() == {v4, v6}
        assert binder.sync([v6, v4]) == BindChanges()
    addrs = _lo_addrs(lab, node)
    assert addrs[str(v4)]["prefixlen"] == 32
    assert addrs[str(v4)]["label"] == "lo:ilb"
    assert addrs[str(v6)]["prefixlen"] == 128
    assert addrs[str(v6)].get("nodad") is True
    protos = _lo_protos(lab, node)
    assert protos[str(v4)] == protos[str(v6)] == IRONLB_ADDR_PROTO
    assert protos["127.0.0.1"] != IRONLB_ADDR_PROTO
    # Nothing of this reached the client's namespace.
    assert str(v4) not in _lo_addrs(lab, lab.client)


def test_sync_adds_and_removes_exactly_the_difference(lab: Lab) -> None:
    node = lab.nodes[1]
    a, b, c, d6 = lab.vip(1), lab.vip(2), lab.vip(3), lab.vip(4, 6)
    with lab.in_netns(node), VipBinder() as binder:
        assert binder.sync([a, b]) == BindChanges(added=frozenset({a, b}))
        assert binder.sync([b, c, d6]) == BindChanges(
            added=frozenset({c, d6}), removed=frozenset({a})
        )
        assert {str(x) for x in (b, c, d6)} <= set(_lo_addrs(lab, node))
        assert str(a) not in _lo_addrs(lab, node)
        assert binder.release_all() == BindChanges(removed=frozenset({b, c, d6}))
        assert binder.owned() == set()
    assert set(_lo_addrs(lab, node)) == {"127.0.0.1", "::1"}


def test_kernel_leaves_arp_and_ndp_to_us_and_the_vip_is_reachable(lab: Lab) -> None:
    node = lab.nodes[0]
    v4, v6 = lab.vip(5), lab.vip(5, 6)
    root_before = read_sysctl("net.ipv4.conf.all.arp_ignore")
    with lab.in_netns(node):
        # Control: with the kernel defaults the node DOES answer ARP for a VIP on lo,
        # which proves the arping below can see a reply.
        for scope in ("all", "eth0"):
            write_sysctl(f"net.ipv4.conf.{scope}.arp_ignore", 0)
            write_sysctl(f"net.ipv4.conf.{scope}.arp_announce", 0)
        binder = VipBinder(arp_sysctls=False)
    with binder:
        binder.bind(v4)
        binder.bind(v6)
        control = _arping(lab, v4)
        assert control.returncode == 0, control.stdout
        assert node.mac in control.stdout.lower()
        # Called outside in_netns: the binder writes its own (the node's) namespace.
        assert binder.ensure_arp_sysctls() == {"arp_ignore": 1, "arp_announce": 2}
        assert binder.ensure_arp_sysctls() == {}
        with lab.in_netns(node):
            assert read_sysctl("net.ipv4.conf.all.arp_ignore") == "1"
        silent = _arping(lab, v4)
        assert silent.returncode != 0
        assert reply_macs(silent.stdout) == [], silent.stdout
        ndp = lab.run(
            lab.client, "ndisc6", "-1", "-r", "2", "-w", "500", str(v6), "eth0", check=False
        )
        assert ndp.returncode != 0
        assert "No response" in ndp.stdout + ndp.stderr
        assert read_sysctl("net.ipv4.conf.all.arp_ignore") == root_before

        # With a static neighbour entry (what the speaker's ARP/NDP answer provides)
        # the client reaches a listener bound to the VIP in the node.
        for vip, family in ((v4, socket.AF_INET), (v6, socket.AF_INET6)):
            lab.run(
                lab.client, "ip", "neigh", "replace", str(vip), "lladdr", node.mac, "dev", "eth0"
            )
            with lab.in_netns(node):
                listener = socket.socket(family, socket.SOCK_STREAM)
            with listener:
                listener.bind((str(vip), 0))
                listener.listen()
                listener.settimeout(10)
                port = listener.getsockname()[1]
                code = (
                    "import socket; "
                    f"s = socket.create_connection(({str(vip)!r}, {port}), timeout=10); "
                    "s.sendall(b'hello'); s.close()"
                )
                lab.run(lab.client, sys.executable, "-c", code)
                conn, peer = listener.accept()
                with conn:
                    conn.settimeout(10)
                    assert conn.recv(16) == b"hello"
                    assert conn.getsockname()[0] == str(vip)
                assert peer[0] in (str(lab.client.ipv4), str(lab.client.ipv6))
        binder.release_all()


BINDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ironlb.dataplane.vip import VipBinder
    binder = VipBinder()
    for vip in sys.argv[1:]:
        binder.bind(vip)
    print("bound", flush=True)
    time.sleep(600)
    """
)


def test_new_binder_adopts_after_crash_and_spares_unmarked(lab: Lab) -> None:
    node = lab.nodes[0]
    a, b6 = lab.vip(6), lab.vip(7, 6)
    proc = lab.popen(
        node,
        sys.executable,
        "-c",
        BINDER_SCRIPT,
        str(a),
        str(b6),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "bound"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # Addresses a person (or another tool) put on lo, equal in shape to VIPs.
    hand4, hand6 = lab.vip(10), lab.vip(10, 6)
    lab.run(node, "ip", "addr", "add", f"{hand4}/32", "dev", "lo")
    lab.run(node, "ip", "addr", "add", f"{hand6}/128", "dev", "lo")
    assert {str(a), str(b6), str(hand4), str(hand6)} <= set(_lo_addrs(lab, node))

    with lab.in_netns(node), VipBinder() as binder:
        assert binder.owned() == {a, b6}
        assert binder.sync([b6]) == BindChanges(removed=frozenset({a}))
        # Unmarked addresses are neither adopted nor removed, even when asked to.
        assert binder.bind(hand4) is False
        assert binder.unbind(hand6) is False
        assert binder.owned() == {b6}
        assert binder.release_all() == BindChanges(removed=frozenset({b6}))
    left = set(_lo_addrs(lab, node))
    assert {str(hand4), str(hand6)} <= left
    assert not {str(a), str(b6)} & left


def test_async_api_works_under_uvloop_and_asyncio(lab: Lab) -> None:
    node = lab.nodes[1]
    a, b6 = lab.vip(8), lab.vip(9, 6)

    async def exercise() -> list[object]:
        # Built inside a running loop, in the node's namespace, used from the loop.
        with lab.in_netns(node):
            binder = VipBinder()
        with binder:
            return [
                await binder.sync_async([a, b6]),
                await binder.owned_async(),
                binder.owned(),  # the blocking call works inside a running loop too
                await binder.bind_async(a),
                await binder.unbind_async(b6),
                await binder.release_all_async(),
            ]

    expected = [
        BindChanges(added=frozenset({a, b6})),
        {a, b6},
        {a, b6},
        False,
        True,
        BindChanges(removed=frozenset({a})),
    ]
    assert uvloop.run(exercise()) == expected
    assert asyncio.run(exercise()) == expected
    assert set(_lo_addrs(lab, node)) == {"127.0.0.1", "::1"}


def test_bad_input_is_refused(lab: Lab) -> None:
    node = lab.nodes[0]
    with lab.in_netns(node):
        with pytest.raises(VipError, match="interface 'nosuch0' not found"):
            VipBinder("nosuch0")
        binder = VipBinder()
    with binder:
        with pytest.raises(VipError, match="not an IP address"):
            binder.bind("198.18.0.300")
        with pytest.raises(VipError, match="multicast"):
            binder.sync([lab.vip(0), IPv6Address("ff02::1")])
        # A refused sync changed nothing.
        assert binder.owned() == set()
    with pytest.raises(VipError, match="closed"):
        binder.bind(lab.vip(0))
