"""Property tests: any frame the announcer's raw sockets can receive is either a
request it parses or a :class:`MalformedPacket`, and deciding the answer never
raises (issue 8, item 13). Malformed ARP and NDP frames are built with scapy
from generated field values (wrong lengths, types, hop limits, checksums,
options, truncations), plus raw bytes; every answer produced parses in scapy
as the reply it should be.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from ironlb.dataplane.l2 import arp, ndp
from tests.props import PROPS, tried

MAC = bytes.fromhex("02000000aa01")
VIP4 = ipaddress.IPv4Address("198.18.0.200")
VIP6 = ipaddress.IPv6Address("fd00:198:18::200")
OWNED4 = {VIP4.packed}
OWNED6 = {VIP6.packed}

MACS = st.sampled_from(["02:00:00:00:bb:02", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])
IP4S = st.sampled_from([str(VIP4), "198.18.0.1", "0.0.0.0", "255.255.255.255"])
IP6S = st.sampled_from(
    [str(VIP6), "fd00:198:18::1", "::", "ff02::1", "ff02::1:ff00:200", "fe80::1"]
)


def _cut(frame: bytes, cut: int | None, tail: bytes) -> bytes:
    frame = frame + tail
    return frame if cut is None else frame[:cut]


def _check_arp(frame: bytes) -> None:
    tried("ARP frames")
    try:
        packet = arp.parse(frame)
    except arp.MalformedPacket as exc:
        assert "\n" not in str(exc)
    else:
        assert len(packet.sender_ip) == len(packet.target_ip) == 4
    reply = arp.reply_for(frame, OWNED4, MAC)
    event("answered" if reply is not None else "not answered")
    if reply is not None:
        parsed = Ether(reply)
        assert parsed[ARP].op == 2
        assert parsed[ARP].psrc == str(VIP4)
        assert parsed[ARP].hwsrc == MAC.hex(":")


def _check_ns(frame: bytes) -> None:
    tried("NDP frames")
    try:
        ns = ndp.parse_ns(frame)
    except arp.MalformedPacket as exc:
        assert "\n" not in str(exc)
    else:
        assert len(ns.target) == 16
    answer = ndp.na_for(frame, OWNED6, MAC)
    event("answered" if answer is not None else "not answered")
    if answer is not None:
        parsed = Ether(answer)
        assert parsed[IPv6].hlim == 255
        assert parsed[ICMPv6ND_NA].tgt == str(VIP6)
        assert parsed[ICMPv6NDOptDstLLAddr].lladdr == MAC.hex(":")


#: ARP header fields -> what a broken one may hold (the rest stay a valid request).
ARP_BREAKS = {
    "hwtype": st.sampled_from([6, 0xFFFF, 0]),
    "ptype": st.sampled_from([0x86DD, 0, 0xFFFF]),
    "hwlen": st.sampled_from([0, 4, 8, 255]),
    "plen": st.sampled_from([0, 6, 16, 255]),
    "op": st.integers(0, 0xFFFF),
    "psrc": IP4S,
    "pdst": IP4S,
    "hwsrc": MACS,
    "ethertype": st.sampled_from([0x0800, 0x8100, 0x86DD]),
    "cut": st.integers(0, 60),
    "tail": st.binary(min_size=1, max_size=16),
}
#: NS fields -> what a broken one may hold.
NS_BREAKS = {
    "src": IP6S,
    "dst": IP6S,
    "tgt": IP6S,
    "hlim": st.sampled_from([254, 1, 0]),
    "code": st.integers(1, 255),
    "nh": st.sampled_from([0, 6, 17, 43, 60]),
    "version": st.sampled_from([0, 4, 15]),
    "plen": st.integers(0, 0xFFFF),
    "checksum": st.integers(0, 0xFFFF),
    "options": st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=14)),
        min_size=1,
        max_size=3,
    ),
    "cut": st.integers(0, 100),
    "tail": st.binary(min_size=1, max_size=8),
}


@PROPS
@given(
    broken=st.lists(st.sampled_from(sorted(ARP_BREAKS)), max_size=3, unique=True), data=st.data()
)
def test_arp_frames_parse_or_are_malformed_and_answers_are_valid(
    broken: list[str], data: st.DataObject
) -> None:
    f: dict[str, Any] = {
        "hwtype": 1,
        "ptype": 0x0800,
        "hwlen": 6,
        "plen": 4,
        "op": 1,
        "psrc": "198.18.0.1",
        "pdst": str(VIP4),
        "hwsrc": "02:00:00:00:bb:02",
        "ethertype": 0x0806,
        "cut": None,
        "tail": b"",
    }
    for name in broken:
        f[name] = data.draw(ARP_BREAKS[name], label=name)
    layer = ARP(op=f["op"], hwsrc=f["hwsrc"], psrc=f["psrc"], pdst=f["pdst"])
    ether = Ether(src="02:00:00:00:bb:02", dst="ff:ff:ff:ff:ff:ff", type=f["ethertype"])
    frame = bytearray(bytes(ether / layer))
    # scapy lays the addresses out by ptype/hwlen/plen, so those are set afterwards
    frame[14:20] = struct.pack("!HHBB", f["hwtype"], f["ptype"], f["hwlen"], f["plen"])
    _check_arp(_cut(bytes(frame), f["cut"], f["tail"]))


@PROPS
@given(broken=st.lists(st.sampled_from(sorted(NS_BREAKS)), max_size=3, unique=True), data=st.data())
def test_ndp_frames_parse_or_are_malformed_and_answers_are_valid(
    broken: list[str], data: st.DataObject
) -> None:
    f: dict[str, Any] = {
        "src": "fd00:198:18::1",
        "dst": "ff02::1:ff00:200",
        "tgt": str(VIP6),
        "hlim": 255,
        "code": 0,
        "nh": 58,
        "version": 6,
        "plen": None,
        "checksum": None,
        "options": [(1, 1, bytes.fromhex("02000000bb02"))],
        "cut": None,
        "tail": b"",
    }
    for name in broken:
        f[name] = data.draw(NS_BREAKS[name], label=name)
    raw_options = b"".join(bytes([t, n]) + body for t, n, body in f["options"])
    icmp = ICMPv6ND_NS(tgt=f["tgt"], code=f["code"]) / Raw(raw_options)
    if f["checksum"] is not None:
        icmp.cksum = f["checksum"]
    ip = IPv6(src=f["src"], dst=f["dst"], hlim=f["hlim"], nh=f["nh"], version=f["version"])
    if f["plen"] is not None:
        ip.plen = f["plen"]
    frame = bytes(Ether(src="02:00:00:00:bb:02", dst="33:33:ff:00:02:00") / ip / icmp)
    _check_ns(_cut(frame, f["cut"], f["tail"]))


@PROPS
@given(frame=st.binary(max_size=120))
def test_random_bytes_never_break_the_parsers(frame: bytes) -> None:
    _check_arp(frame)
    _check_ns(frame)
