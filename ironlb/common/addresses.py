"""IP addresses: the one ``IPAddress`` type, family names, and what may be a VIP.

A VIP is an address one node owns on the LAN: it is bound on ``lo`` and
answered for with ARP/NDP. Addresses that no LAN neighbour could be sent to
on our behalf are refused everywhere the same way (the forward config, the
announcer, the binder, the speaker): unspecified, multicast, loopback,
link-local and the IPv4 limited broadcast.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Family = Literal[4, 6]

#: Kubernetes' names for the families (``spec.ipFamilies``).
KUBERNETES_FAMILIES: dict[str, Family] = {"IPv4": 4, "IPv6": 6}

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def family_label(addr: IPAddress | IPNetwork) -> str:
    """``"ipv4"`` or ``"ipv6"``: the label value used in metrics."""
    return "ipv4" if addr.version == 4 else "ipv6"


def address_sort_key(addr: IPAddress) -> tuple[int, int]:
    """A total order over both families (IPv4 first), since they do not compare."""
    return (addr.version, int(addr))


def vip_problem(addr: IPAddress) -> str | None:
    """Why ``addr`` cannot be a VIP (e.g. ``"a loopback address"``), or ``None`` if it can."""
    for unfit, what in (
        (addr.is_unspecified, "an unspecified"),
        (addr.is_multicast, "a multicast"),
        (addr.is_loopback, "a loopback"),
        (addr.is_link_local, "a link-local"),
        (addr == _BROADCAST, "the broadcast"),
    ):
        if unfit:
            return f"{what} address"
    return None


def check_vip(addr: object) -> IPAddress:
    """``addr`` if it may be a VIP.

    Raises :class:`TypeError` when it is not an ``IPv4Address``/``IPv6Address``
    and :class:`ValueError` (``"<addr> is a loopback address and cannot be a
    VIP"``) when it is unfit.
    """
    if not isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise TypeError(f"a VIP must be an IPv4Address or IPv6Address, got {addr!r}")
    problem = vip_problem(addr)
    if problem is not None:
        raise ValueError(f"{addr} is {problem} and cannot be a VIP")
    return addr


def format_endpoint(addr: IPAddress, port: int) -> str:
    """``198.18.0.1:80`` or ``[fd00::1]:80``."""
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"{host}:{port}"
