"""Unit tests of the pure L2 packet code (ARP and NDP), cross-checked with
scapy: frames we build must parse in scapy as what we meant, and frames scapy
builds must parse in our code."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from ironlb.dataplane.l2 import arp, ndp
from ironlb.dataplane.l2.announcer import Announcer, validate_vip
from ironlb.dataplane.l2.interfaces import LinkInfo, LinkMonitor, eligible
from ironlb.dataplane.l2.sockets import ARP_REQUEST_FILTER, NEIGHBOR_SOLICIT_FILTER

MAC = bytes.fromhex("02000000aa01")
CLIENT_MAC = bytes.fromhex("02000000bb02")
VIP4 = ipaddress.IPv4Address("198.18.0.200")
VIP6 = ipaddress.IPv6Address("fd00:198:18::200")
CLIENT4 = ipaddress.IPv4Address("198.18.0.1")
CLIENT6 = ipaddress.IPv6Address("fd00:198:18::1")
OWNED4 = {VIP4.packed}
OWNED6 = {VIP6.packed}


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def scapy_who_has(target: str, *, dst: str = "ff:ff:ff:ff:ff:ff", psrc: str = str(CLIENT4)):
    return bytes(
        Ether(src=_mac(CLIENT_MAC), dst=dst)
        / ARP(op=1, hwsrc=_mac(CLIENT_MAC), psrc=psrc, pdst=target)
    )


# -- ARP -------------------------------------------------------------------


def test_broadcast_request_for_owned_vip_gets_unicast_reply_scapy_agrees():
    reply = arp.reply_for(scapy_who_has(str(VIP4)), OWNED4, MAC)
    assert reply is not None
    parsed = Ether(reply)
    assert parsed.dst == _mac(CLIENT_MAC)
    assert parsed.src == _mac(MAC)
    assert parsed[ARP].op == 2
    assert parsed[ARP].hwsrc == _mac(MAC)
    assert parsed[ARP].psrc == str(VIP4)
    assert parsed[ARP].hwdst == _mac(CLIENT_MAC)
    assert parsed[ARP].pdst == str(CLIENT4)
    assert len(reply) == arp.MIN_FRAME_LEN


def test_unicast_request_is_answered_too():
    reply = arp.reply_for(scapy_who_has(str(VIP4), dst=_mac(MAC)), OWNED4, MAC)
    assert reply is not None
    assert Ether(reply)[ARP].psrc == str(VIP4)


def test_probe_from_zero_address_is_answered_to_the_prober():
    reply = arp.reply_for(scapy_who_has(str(VIP4), psrc="0.0.0.0"), OWNED4, MAC)
    assert reply is not None
    assert Ether(reply)[ARP].pdst == "0.0.0.0"
    assert Ether(reply).dst == _mac(CLIENT_MAC)


def test_unowned_target_is_not_answered():
    assert arp.reply_for(scapy_who_has("198.18.0.201"), OWNED4, MAC) is None


def test_gratuitous_request_from_another_node_is_not_answered():
    frame = scapy_who_has(str(VIP4), psrc=str(VIP4))
    assert arp.parse(frame).is_gratuitous
    assert arp.reply_for(frame, OWNED4, MAC) is None


def test_reply_is_not_answered():
    frame = bytes(Ether(src=_mac(CLIENT_MAC)) / ARP(op=2, psrc=str(CLIENT4), pdst=str(VIP4)))
    assert arp.reply_for(frame, OWNED4, MAC) is None


def test_gratuitous_is_request_form_broadcast_scapy_agrees():
    frame = arp.build_gratuitous(VIP4, MAC)
    parsed = Ether(frame)
    assert parsed.dst == "ff:ff:ff:ff:ff:ff"
    assert parsed.src == _mac(MAC)
    assert parsed[ARP].op == 1
    assert parsed[ARP].psrc == parsed[ARP].pdst == str(VIP4)
    assert parsed[ARP].hwsrc == _mac(MAC)
    assert parsed[ARP].hwdst == "00:00:00:00:00:00"


def test_build_request_matches_scapy():
    ours = arp.build_request(CLIENT_MAC, CLIENT4.packed, VIP4.packed)
    theirs = scapy_who_has(str(VIP4))
    assert ours[:42] == theirs[:42]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x00" * 20, "too short"),
        (bytes(Ether() / IPv6()) + b"\x00" * 30, "not an ARP frame"),
        (
            bytes(Ether(type=0x0806) / ARP(hwtype=6, ptype=0x0800, hwlen=6, plen=4)),
            "not Ethernet/IPv4 ARP",
        ),
    ],
)
def test_parse_rejects_bad_frames_with_a_clear_error(frame: bytes, message: str):
    with pytest.raises(arp.MalformedPacket, match=message):
        arp.parse(frame)
    assert arp.reply_for(frame, OWNED4, MAC) is None


def test_builders_reject_bad_input():
    with pytest.raises(ValueError, match="6 bytes"):
        arp.build_gratuitous(VIP4, b"\x01\x02")
    with pytest.raises(TypeError, match="IPv4"):
        arp.build_gratuitous(VIP6, MAC)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4 packed bytes"):
        arp.build_request(CLIENT_MAC, b"\x01", VIP4.packed)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_crash_the_arp_decision(data: bytes):
    reply = arp.reply_for(data, OWNED4, MAC)
    if reply is not None:  # only possible for a well-formed request for the VIP
        assert arp.parse(data).target_ip == VIP4.packed


# -- NDP -------------------------------------------------------------------


def scapy_ns(target: str, *, src: str = str(CLIENT6), slla: bool = True, hlim: int = 255):
    group = str(ndp.solicited_node_address(ipaddress.IPv6Address(target)))
    pkt = (
        Ether(src=_mac(CLIENT_MAC), dst=_mac(ndp.multicast_mac(ipaddress.IPv6Address(group))))
        / IPv6(src=src, dst=group, hlim=hlim)
        / ICMPv6ND_NS(tgt=target)
    )
    if slla:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=_mac(CLIENT_MAC))
    return bytes(pkt)


def test_solicited_node_address_and_mac():
    vip = ipaddress.IPv6Address("2001:db8::12:3456")
    group = ndp.solicited_node_address(vip)
    assert group == ipaddress.IPv6Address("ff02::1:ff12:3456")
    assert ndp.multicast_mac(group) == bytes.fromhex("3333ff123456")
    with pytest.raises(ValueError, match="not a multicast"):
        ndp.multicast_mac(vip)


def test_ns_parsed_from_scapy():
    ns = ndp.parse_ns(scapy_ns(str(VIP6)))
    assert ns.target == VIP6.packed
    assert ns.source == CLIENT6.packed
    assert ns.source_lladdr == CLIENT_MAC
    assert not ns.from_unspecified


def test_na_answers_solicitor_with_flags_option_and_valid_checksum():
    reply = ndp.na_for(scapy_ns(str(VIP6)), OWNED6, MAC)
    assert reply is not None
    parsed = Ether(reply)
    assert parsed.dst == _mac(CLIENT_MAC)
    assert parsed.src == _mac(MAC)
    assert parsed[IPv6].src == str(VIP6)
    assert parsed[IPv6].dst == str(CLIENT6)
    assert parsed[IPv6].hlim == 255
    na = parsed[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 1, 1)
    assert na.tgt == str(VIP6)
    assert parsed[ICMPv6NDOptDstLLAddr].lladdr == _mac(MAC)
    # scapy recomputes the checksum when rebuilding from fields without one
    ours = na.cksum
    del parsed[ICMPv6ND_NA].cksum
    assert Ether(bytes(parsed))[ICMPv6ND_NA].cksum == ours


def test_na_without_slla_goes_to_the_ethernet_source():
    reply = ndp.na_for(scapy_ns(str(VIP6), slla=False), OWNED6, MAC)
    assert reply is not None
    assert Ether(reply).dst == _mac(CLIENT_MAC)


def test_dad_solicitation_is_answered_to_all_nodes_without_solicited_flag():
    reply = ndp.na_for(scapy_ns(str(VIP6), src="::", slla=False), OWNED6, MAC)
    assert reply is not None
    parsed = Ether(reply)
    assert parsed.dst == "33:33:00:00:00:01"
    assert parsed[IPv6].dst == "ff02::1"
    assert (parsed[ICMPv6ND_NA].S, parsed[ICMPv6ND_NA].O) == (0, 1)


def test_unsolicited_na_has_override_to_all_nodes():
    parsed = Ether(ndp.build_unsolicited_na(VIP6, MAC))
    assert parsed.dst == "33:33:00:00:00:01"
    assert parsed[IPv6].dst == "ff02::1"
    assert parsed[IPv6].hlim == 255
    na = parsed[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert parsed[ICMPv6NDOptDstLLAddr].lladdr == _mac(MAC)


def test_build_ns_matches_scapy():
    ours = ndp.build_ns(CLIENT_MAC, CLIENT6.packed, VIP6)
    assert ours == scapy_ns(str(VIP6))


def test_unowned_target_not_answered():
    assert ndp.na_for(scapy_ns("fd00:198:18::201"), OWNED6, MAC) is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x00" * 40, "too short"),
        (scapy_ns(str(VIP6), hlim=64), "hop limit 64"),
        (scapy_ns(str(VIP6), src="::"), "solicited-node group without SLLA"),
        (bytes(Ether() / IPv6(nh=17, plen=24) / (b"\x00" * 24)), "next header 17"),
    ],
)
def test_invalid_solicitations_rejected_with_a_clear_error(frame: bytes, message: str):
    with pytest.raises(arp.MalformedPacket, match=message):
        ndp.parse_ns(frame)
    assert ndp.na_for(frame, OWNED6, MAC) is None


def test_bad_checksum_rejected():
    frame = bytearray(scapy_ns(str(VIP6)))
    frame[14 + 40 + 2] ^= 0xFF
    with pytest.raises(arp.MalformedPacket, match="checksum"):
        ndp.parse_ns(bytes(frame))


def test_zero_length_option_rejected():
    frame = bytearray(scapy_ns(str(VIP6)))
    frame[14 + 40 + 24 + 1] = 0  # SLLA option length
    with pytest.raises(arp.MalformedPacket):
        ndp.parse_ns(bytes(frame))


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash_the_ns_decision(data: bytes):
    assert ndp.na_for(data, OWNED6, MAC) is None or ndp.parse_ns(data).target == VIP6.packed


def test_checksum_of_odd_length():
    # RFC 1071 example-style check: the checksum makes the total sum 0xffff.
    src, dst = CLIENT6.packed, VIP6.packed
    msg = b"\x87\x00\x00\x00\x01"
    csum = ndp.icmpv6_checksum(src, dst, msg)
    fixed = msg[:2] + struct.pack("!H", csum) + msg[4:]
    assert ndp.icmpv6_checksum(src, dst, fixed) == 0


# -- interface choice, filters, validation -----------------------------------

IFF_UP, IFF_BROADCAST, IFF_LOOPBACK = 0x1, 0x2, 0x8
AF_BRIDGE = 7


def _link(**kw: object) -> LinkInfo:
    base: dict[str, object] = {
        "index": 2,
        "name": "eth0",
        "mac": MAC,
        "flags": IFF_UP | IFF_BROADCAST,
        "master": None,
        "link_type": 1,
    }
    base.update(kw)
    return LinkInfo(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("link", "names", "expected"),
    [
        (_link(), None, True),
        (_link(), ["eth0"], True),
        (_link(), ["eth1"], False),
        (_link(flags=IFF_BROADCAST), None, False),  # down
        (_link(flags=IFF_UP), None, False),  # no broadcast (e.g. a tunnel)
        (_link(name="lo", flags=IFF_UP | IFF_LOOPBACK, mac=b"\0" * 6, link_type=772), None, False),
        (_link(master=5), None, False),  # bridge port
        (_link(master=5), ["eth0"], False),  # listed but enslaved
        (_link(link_type=65534), None, False),  # not Ethernet (tun)
    ],
)
def test_interface_choice(link: LinkInfo, names: list[str] | None, expected: bool):
    assert eligible(link, names) is expected


def test_bpf_programs_are_well_formed():
    for program in (ARP_REQUEST_FILTER, NEIGHBOR_SOLICIT_FILTER):
        assert program[-1] == (0x06, 0, 0, 0)  # ret 0 (drop) last
        for pc, (code, jt, jf, _k) in enumerate(program):
            if code == 0x15:  # jeq: both branches land inside the program
                assert pc + 1 + jt < len(program)
                assert pc + 1 + jf < len(program)


@pytest.mark.parametrize(
    ("vip", "error"),
    [
        ("198.18.0.200", TypeError),
        (ipaddress.IPv4Address("224.0.0.1"), ValueError),
        (ipaddress.IPv4Address("0.0.0.0"), ValueError),
        (ipaddress.IPv4Address("255.255.255.255"), ValueError),
        (ipaddress.IPv6Address("::1"), ValueError),
        (ipaddress.IPv6Address("ff02::1"), ValueError),
    ],
)
def test_bad_vips_rejected(vip: object, error: type[Exception]):
    with pytest.raises(error):
        validate_vip(vip)
    with pytest.raises(error):
        Announcer().set_owned([vip])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interfaces": "eth0"}, "not one string"),
        ({"interfaces": ["a" * 16]}, "invalid interface name"),
        ({"garp_repeat": [-1.0]}, "garp_repeat"),
        ({"refresh_interval": 0}, "refresh_interval"),
        ({"refresh_interval": float("nan")}, "refresh_interval"),
    ],
)
def test_bad_announcer_config_rejected(kwargs: dict[str, object], message: str):
    with pytest.raises((TypeError, ValueError), match=message):
        Announcer(**kwargs)  # type: ignore[arg-type]


def test_set_owned_before_start_records_vips():
    announcer = Announcer()
    announcer.set_owned([VIP4, VIP6])
    assert announcer.owned == {VIP4, VIP6}
    announcer.set_owned([VIP6])
    assert announcer.owned == {VIP6}
    assert announcer.interfaces == frozenset()


# -- link table from rtnetlink messages ---------------------------------------


def _nl_link(kind: int, index: int, name: str, *, family: int = 0, master: int = 0) -> bytes:
    msg = ifinfmsg()
    msg["header"]["type"] = kind
    msg["header"]["flags"] = 0
    msg["header"]["sequence_number"] = 0
    msg["family"] = family
    msg["index"] = index
    msg["flags"] = IFF_UP | IFF_BROADCAST
    msg["ifi_type"] = 1
    msg["change"] = 0
    attrs: list[tuple[str, object]] = [("IFLA_IFNAME", name), ("IFLA_ADDRESS", "02:00:00:00:aa:01")]
    if master:
        attrs.append(("IFLA_MASTER", master))
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def test_link_table_follows_events_and_ignores_bridge_family_copies():
    seen: list[dict[int, LinkInfo]] = []
    monitor = LinkMonitor(lambda links: seen.append(dict(links)))
    assert monitor.apply(_nl_link(RTM_NEWLINK, 3, "eth1"))
    link = monitor.links[3]
    assert (link.name, link.mac, link.master) == ("eth1", MAC, None)
    assert eligible(link, None)
    assert monitor.apply(_nl_link(RTM_NEWLINK, 3, "eth1", master=7))
    assert not eligible(monitor.links[3], None)
    # The bridge's AF_BRIDGE DELLINK says "left the bridge", not "gone".
    assert not monitor.apply(_nl_link(RTM_DELLINK, 3, "eth1", family=AF_BRIDGE))
    assert 3 in monitor.links
    assert not monitor.apply(_nl_link(RTM_NEWLINK, 3, "eth1", master=7))  # no change
    assert monitor.apply(_nl_link(RTM_DELLINK, 3, "eth1"))
    assert monitor.links == {}
