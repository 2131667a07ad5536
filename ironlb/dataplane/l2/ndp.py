"""IPv6 Neighbor Discovery frames for the L2 announcer (RFC 4861): parse
Neighbor Solicitations, build Neighbor Advertisements with their ICMPv6
checksum, and the solicited-node multicast address and MAC. Pure.

Advertisements are sent *from the VIP itself* (the node owns it), with hop
limit 255 and a Target Link-Layer Address option.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Container
from typing import NamedTuple

from ironlb.dataplane.l2.arp import MalformedPacket

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
OPT_SOURCE_LINKADDR = 1
OPT_TARGET_LINKADDR = 2
HOP_LIMIT = 255

NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20

ALL_NODES = ipaddress.IPv6Address("ff02::1")
UNSPECIFIED = ipaddress.IPv6Address("::")
_SOLICITED_NODE_PREFIX = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13]

ETH_HEADER_LEN = 14
IPV6_HEADER_LEN = 40
NS_MIN_LEN = 24  # ICMPv6 header (4) + reserved (4) + target (16)
NA_LEN = 32  # header (4) + flags/reserved (4) + target (16) + TLLA option (8)

_ETH = struct.Struct("!6s6sH")
_IPV6 = struct.Struct("!IHBB16s16s")
_ICMP_HEAD = struct.Struct("!BBH")
_ETHERTYPE_IPV6 = struct.pack("!H", ETH_P_IPV6)


class NeighborSolicitation(NamedTuple):
    """A validated Neighbor Solicitation; addresses are packed bytes."""

    eth_src: bytes
    source: bytes  # 16 bytes; all zero for duplicate address detection
    destination: bytes
    target: bytes
    source_lladdr: bytes | None

    @property
    def from_unspecified(self) -> bool:
        return self.source == UNSPECIFIED.packed


def solicited_node_address(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """``ff02::1:ffXX:XXXX`` from the low 24 bits of ``address``."""
    return ipaddress.IPv6Address(_SOLICITED_NODE_PREFIX + address.packed[13:])


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    """The Ethernet address ``33:33:xx:xx:xx:xx`` of an IPv6 multicast group."""
    if not group.is_multicast:
        raise ValueError(f"{group} is not a multicast address")
    return b"\x33\x33" + group.packed[12:]


def icmpv6_checksum(source: bytes, destination: bytes, message: bytes) -> int:
    """The ICMPv6 checksum of ``message`` (its checksum field zeroed or not:
    the result is what to store when it is zero, and 0 when a received
    message with its checksum in place is valid)."""
    pseudo = source + destination + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6)
    data = pseudo + message
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def parse_ns(frame: bytes) -> NeighborSolicitation:
    """Parse and validate (RFC 4861 section 7.1.1) a Neighbor Solicitation.

    Raises :class:`MalformedPacket` for anything that is not a valid NS
    directly in an Ethernet/IPv6 frame (no extension headers).
    """
    if len(frame) < ETH_HEADER_LEN + IPV6_HEADER_LEN + NS_MIN_LEN:
        raise MalformedPacket(f"NS frame too short: {len(frame)} bytes")
    _dst_mac, eth_src, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IPV6:
        raise MalformedPacket(f"not an IPv6 frame: ethertype {ethertype:#06x}")
    vtf, payload_len, next_header, hop_limit, src, dst = _IPV6.unpack_from(frame, ETH_HEADER_LEN)
    if vtf >> 28 != 6:
        raise MalformedPacket(f"IP version {vtf >> 28}, not 6")
    if next_header != IPPROTO_ICMPV6:
        raise MalformedPacket(f"next header {next_header}, not ICMPv6")
    start = ETH_HEADER_LEN + IPV6_HEADER_LEN
    if payload_len < NS_MIN_LEN or start + payload_len > len(frame):
        raise MalformedPacket(f"bad IPv6 payload length {payload_len}")
    message = frame[start : start + payload_len]
    icmp_type, code, _checksum = _ICMP_HEAD.unpack_from(message)
    if icmp_type != ND_NEIGHBOR_SOLICIT:
        raise MalformedPacket(f"ICMPv6 type {icmp_type}, not a Neighbor Solicitation")
    if hop_limit != HOP_LIMIT:
        raise MalformedPacket(f"hop limit {hop_limit}, must be 255")
    if code != 0:
        raise MalformedPacket(f"ICMPv6 code {code}, must be 0")
    if icmpv6_checksum(src, dst, message) != 0:
        raise MalformedPacket("bad ICMPv6 checksum")
    target = message[8:24]
    if target[0] == 0xFF:
        raise MalformedPacket("target is a multicast address")
    slla = _source_lladdr(message[24:])
    unspecified = src == UNSPECIFIED.packed
    if unspecified and (dst[:13] != _SOLICITED_NODE_PREFIX or slla is not None):
        raise MalformedPacket("NS from :: must go to a solicited-node group without SLLA")
    return NeighborSolicitation(eth_src, src, dst, target, slla)


def _source_lladdr(options: bytes) -> bytes | None:
    found = None
    offset = 0
    while offset + 2 <= len(options):
        opt_type, opt_len = options[offset], options[offset + 1]
        if opt_len == 0:
            raise MalformedPacket("ND option with length 0")
        end = offset + opt_len * 8
        if end > len(options):
            raise MalformedPacket("ND option runs past the packet")
        if opt_type == OPT_SOURCE_LINKADDR and opt_len == 1:
            found = options[offset + 2 : offset + 8]
        offset = end
    return found


def build_na(
    mac: bytes,
    target: bytes,
    destination: bytes,
    dst_mac: bytes,
    *,
    solicited: bool,
    override: bool = True,
) -> bytes:
    """A Neighbor Advertisement frame: ``target`` (packed, owned) is at ``mac``.

    Sent from ``target`` to ``destination`` (unicast or ff02::1) at ``dst_mac``.
    """
    if len(mac) != 6 or len(dst_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    if len(target) != 16 or len(destination) != 16:
        raise ValueError("IPv6 addresses are 16 packed bytes")
    flags = (NA_SOLICITED if solicited else 0) | (NA_OVERRIDE if override else 0)
    body = struct.pack("!B3x16sBB6s", flags, target, OPT_TARGET_LINKADDR, 1, mac)
    checksum = icmpv6_checksum(
        target, destination, _ICMP_HEAD.pack(ND_NEIGHBOR_ADVERT, 0, 0) + body
    )
    ip_header = _IPV6.pack(6 << 28, NA_LEN, IPPROTO_ICMPV6, HOP_LIMIT, target, destination)
    return b"".join(
        (
            dst_mac,
            mac,
            _ETHERTYPE_IPV6,
            ip_header,
            _ICMP_HEAD.pack(ND_NEIGHBOR_ADVERT, 0, checksum),
            body,
        )
    )


def na_for(frame: bytes, owned: Container[bytes], mac: bytes) -> bytes | None:
    """The advertisement answering the solicitation in ``frame`` received on an
    interface with ``mac``, or ``None`` if it must not be answered (invalid,
    or the target is not in ``owned``, packed addresses).

    A solicitation from ``::`` (duplicate address detection by someone else)
    is answered to all-nodes with the Solicited flag clear, as RFC 4861 says;
    any other is answered unicast with Solicited and Override set.
    """
    try:
        ns = parse_ns(frame)
    except MalformedPacket:
        return None
    return answer(ns, mac) if ns.target in owned else None


def answer(ns: NeighborSolicitation, mac: bytes) -> bytes:
    """The advertisement answering ``ns`` for an owned target (see :func:`na_for`)."""
    if ns.from_unspecified:
        return build_na(mac, ns.target, ALL_NODES.packed, multicast_mac(ALL_NODES), solicited=False)
    dst_mac = ns.source_lladdr if ns.source_lladdr is not None else ns.eth_src
    return build_na(mac, ns.target, ns.source, dst_mac, solicited=True)


def build_unsolicited_na(vip: ipaddress.IPv6Address, mac: bytes) -> bytes:
    """The unsolicited advertisement sent on takeover: Override set, to
    all-nodes, so neighbours holding an entry for ``vip`` move it to ``mac``."""
    if not isinstance(vip, ipaddress.IPv6Address):
        raise TypeError(f"an unsolicited NA needs an IPv6 address, got {vip!r}")
    return build_na(mac, vip.packed, ALL_NODES.packed, multicast_mac(ALL_NODES), solicited=False)


def build_ns(
    mac: bytes, source: bytes, target: ipaddress.IPv6Address, *, with_slla: bool = True
) -> bytes:
    """A Neighbor Solicitation for ``target`` to its solicited-node group
    (used to probe the responder)."""
    group = solicited_node_address(target)
    options = struct.pack("!BB6s", OPT_SOURCE_LINKADDR, 1, mac) if with_slla else b""
    body = struct.pack("!4x16s", target.packed) + options
    checksum = icmpv6_checksum(
        source, group.packed, _ICMP_HEAD.pack(ND_NEIGHBOR_SOLICIT, 0, 0) + body
    )
    message = _ICMP_HEAD.pack(ND_NEIGHBOR_SOLICIT, 0, checksum) + body
    ip_header = _IPV6.pack(6 << 28, len(message), IPPROTO_ICMPV6, HOP_LIMIT, source, group.packed)
    return multicast_mac(group) + mac + _ETHERTYPE_IPV6 + ip_header + message
