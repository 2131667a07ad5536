"""Raw ``AF_PACKET`` sockets for the announcer: one ARP socket and one
IPv6 Neighbor Solicitation socket per interface, each bound to its interface,
non-blocking, with a classic BPF filter so the kernel only wakes us for
packets we may answer; plus multicast membership for solicited-node groups.

The sockets belong to the network namespace of the thread that opens them.
Closing a socket drops its memberships (the kernel does it), so a killed
announcer leaves none behind.

The filters are seven hand-assembled classic BPF instructions; Python has no
standard assembler and compiling through libpcap (scapy's ``compile_filter``)
would need tcpdump at run time for a fixed program.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from ironlb.dataplane.l2.arp import ETH_P_ARP, OP_REQUEST
from ironlb.dataplane.l2.ndp import ETH_P_IPV6, IPPROTO_ICMPV6, ND_NEIGHBOR_SOLICIT

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26

# Classic BPF opcodes (linux/filter.h).
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_RET_K = 0x06
_SKF_AD_PKTTYPE = -0x1000 + 4  # ancillary load: skb->pkt_type
_ACCEPT = 0x40000
_SOCK_BUF = 4 * 1024 * 1024

Insn = tuple[int, int, int, int]


def _filter(checks: list[tuple[int, int, int]]) -> list[Insn]:
    """Accept a packet when every ``(load opcode, offset, value)`` check holds
    and it is not our own outgoing copy; otherwise drop it."""
    program: list[Insn] = []
    n = len(checks)
    # Layout: n (load, jeq) pairs, load pkttype, jeq OUTGOING, ret accept, ret 0.
    for i, (load, offset, value) in enumerate(checks):
        program.append((load, 0, 0, offset & 0xFFFFFFFF))
        to_drop = 2 * (n - i - 1) + 3  # skip the remaining pairs + pkttype tail
        program.append((_JEQ_K, 0, to_drop, value))
    program.append((_LD_W_ABS, 0, 0, _SKF_AD_PKTTYPE & 0xFFFFFFFF))
    program.append((_JEQ_K, 1, 0, PACKET_OUTGOING))
    program.append((_RET_K, 0, 0, _ACCEPT))
    program.append((_RET_K, 0, 0, 0))
    return program


ARP_REQUEST_FILTER = _filter([(_LD_H_ABS, 12, ETH_P_ARP), (_LD_H_ABS, 20, OP_REQUEST)])
NEIGHBOR_SOLICIT_FILTER = _filter(
    [
        (_LD_H_ABS, 12, ETH_P_IPV6),
        (_LD_B_ABS, 14 + 6, IPPROTO_ICMPV6),
        (_LD_B_ABS, 14 + 40, ND_NEIGHBOR_SOLICIT),
    ]
)


def attach_filter(sock: socket.socket, program: list[Insn]) -> None:
    """Attach a classic BPF ``program`` (SO_ATTACH_FILTER)."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_packet_socket(ifname: str, ethertype: int, program: list[Insn]) -> socket.socket:
    """A non-blocking raw socket on ``ifname`` for ``ethertype`` frames that
    pass ``program``.

    The socket is created with protocol 0 (it receives nothing), gets its
    filter, and only then is bound, so no unfiltered frame ever queues up.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(sock, program)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCK_BUF)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCK_BUF)
        sock.bind((ifname, ethertype))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_arp_socket(ifname: str) -> socket.socket:
    """Receives ARP requests arriving on ``ifname``; sends frames out of it."""
    return open_packet_socket(ifname, ETH_P_ARP, ARP_REQUEST_FILTER)


def open_ns_socket(ifname: str) -> socket.socket:
    """Receives IPv6 Neighbor Solicitations arriving on ``ifname``."""
    return open_packet_socket(ifname, ETH_P_IPV6, NEIGHBOR_SOLICIT_FILTER)


def _mreq(ifindex: int, mac: bytes) -> bytes:
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
    return struct.pack("iHH8s", ifindex, PACKET_MR_MULTICAST, 6, mac)


def add_membership(sock: socket.socket, ifindex: int, mac: bytes) -> None:
    """Make the interface accept frames to multicast ``mac`` (for this socket)."""
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, _mreq(ifindex, mac))


def drop_membership(sock: socket.socket, ifindex: int, mac: bytes) -> None:
    """Undo :func:`add_membership`."""
    sock.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, _mreq(ifindex, mac))
