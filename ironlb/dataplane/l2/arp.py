"""ARP frames for the L2 announcer: parse requests, build replies and
gratuitous requests, decide whether to answer. Pure: bytes in, bytes out.

Frames are Ethernet II with an IPv4-over-Ethernet ARP payload (RFC 826).
Addresses inside the hot path are kept packed (4-byte ``bytes``) so the
per-packet decision needs no :mod:`ipaddress` objects.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Container
from typing import NamedTuple

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
OP_REQUEST = 1
OP_REPLY = 2

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ETH_HEADER_LEN = 14
ARP_LEN = 28
# Ethernet frames are at least 60 bytes before the FCS; pad what we send.
MIN_FRAME_LEN = 60

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
# The fixed part of an Ethernet/IPv4 ARP header up to (excluding) the opcode.
_ARP_FIXED = struct.pack("!HHBB", ARPHRD_ETHER, ETH_P_IP, 6, 4)
_ETHERTYPE_ARP = struct.pack("!H", ETH_P_ARP)
_REPLY_HEAD = _ETHERTYPE_ARP + _ARP_FIXED + struct.pack("!H", OP_REPLY)
_REQUEST_HEAD = _ETHERTYPE_ARP + _ARP_FIXED + struct.pack("!H", OP_REQUEST)
_PAD = b"\x00" * (MIN_FRAME_LEN - ETH_HEADER_LEN - ARP_LEN)


class MalformedPacket(ValueError):
    """A frame that is not what the parser was asked to read."""


class ArpPacket(NamedTuple):
    """One Ethernet/IPv4 ARP frame; addresses are packed bytes."""

    eth_dst: bytes
    eth_src: bytes
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @property
    def is_gratuitous(self) -> bool:
        """Sender IP equals target IP: an announcement, never a question."""
        return self.sender_ip == self.target_ip


def parse(frame: bytes) -> ArpPacket:
    """Parse an Ethernet frame carrying IPv4-over-Ethernet ARP.

    Raises :class:`MalformedPacket` for anything else (too short, another
    ethertype, another hardware or protocol type).
    """
    if len(frame) < ETH_HEADER_LEN + ARP_LEN:
        raise MalformedPacket(f"ARP frame too short: {len(frame)} bytes")
    eth_dst, eth_src, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        raise MalformedPacket(f"not an ARP frame: ethertype {ethertype:#06x}")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HEADER_LEN)
    if (htype, ptype, hlen, plen) != (ARPHRD_ETHER, ETH_P_IP, 6, 4):
        raise MalformedPacket(
            f"not Ethernet/IPv4 ARP: htype={htype} ptype={ptype:#06x} hlen={hlen} plen={plen}"
        )
    return ArpPacket(eth_dst, eth_src, op, sha, spa, tha, tpa)


def build_reply(request: ArpPacket, mac: bytes) -> bytes:
    """The unicast reply to ``request``: ``target_ip`` is at ``mac``.

    Sent to the requester's Ethernet source (which answers unicast and
    broadcast requests alike, and probes with sender IP 0.0.0.0).
    """
    _check_mac(mac)
    return b"".join(
        (
            request.eth_src,
            mac,
            _REPLY_HEAD,
            mac,
            request.target_ip,
            request.sender_mac,
            request.sender_ip,
            _PAD,
        )
    )


def should_answer(packet: ArpPacket, owned: Container[bytes]) -> bool:
    """Answer requests (broadcast or unicast) whose target IP is in ``owned``
    (packed addresses); never replies, gratuitous requests (sender IP ==
    target IP) or requests for addresses not owned."""
    return packet.op == OP_REQUEST and not packet.is_gratuitous and packet.target_ip in owned


def reply_for(frame: bytes, owned: Container[bytes], mac: bytes) -> bytes | None:
    """The reply to send for ``frame`` received on an interface with ``mac``,
    or ``None`` when it must not be answered (see :func:`should_answer`;
    frames that are not Ethernet/IPv4 ARP are not answered either)."""
    try:
        packet = parse(frame)
    except MalformedPacket:
        return None
    return build_reply(packet, mac) if should_answer(packet, owned) else None


def build_gratuitous(vip: ipaddress.IPv4Address, mac: bytes) -> bytes:
    """A gratuitous ARP in the *request* form, broadcast.

    Sender IP = target IP = ``vip``, sender MAC ``mac``, target MAC zero.
    Linux updates an existing neighbour entry from it even inside
    ``locktime``, which it does not for a broadcast reply.
    """
    if not isinstance(vip, ipaddress.IPv4Address):
        raise TypeError(f"gratuitous ARP needs an IPv4 address, got {vip!r}")
    _check_mac(mac)
    ip = vip.packed
    return b"".join((BROADCAST_MAC, mac, _REQUEST_HEAD, mac, ip, ZERO_MAC, ip, _PAD))


def build_request(
    sender_mac: bytes, sender_ip: bytes, target_ip: bytes, eth_dst: bytes = BROADCAST_MAC
) -> bytes:
    """A who-has request (used to probe the responder; broadcast by default)."""
    _check_mac(sender_mac)
    _check_mac(eth_dst)
    if len(sender_ip) != 4 or len(target_ip) != 4:
        raise ValueError("ARP request addresses must be 4 packed bytes")
    return b"".join(
        (eth_dst, sender_mac, _REQUEST_HEAD, sender_mac, sender_ip, ZERO_MAC, target_ip, _PAD)
    )


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
