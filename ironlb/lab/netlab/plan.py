"""Pure planning for the namespace lab: names, MACs and addresses of every host.

Nothing here touches the system, so the layout rules (who gets which address,
MAC and namespace name; which addresses are reserved for VIPs) are unit-testable
without root. The layout, on one LAN:

========  ==============  ===================  ===================  =================
role      netns           IPv4 (198.18.0.0/24)  IPv6 (fd00:198:18::/64)  MAC
========  ==============  ===================  ===================  =================
client    ``P-client``    198.18.0.1           fd00:198:18::1       02:00:c6:12:00:01
nodeN     ``P-nodeN``     198.18.0.(10+N)      fd00:198:18::(10+N)  02:00:c6:12:00:xx
backendN  ``P-backendN``  198.18.0.(100+N)     fd00:198:18::(100+N) 02:00:c6:12:00:xx
VIP i     (none)          198.18.0.(200+i)     fd00:198:18::(200+i) (none)
========  ==============  ===================  ===================  =================

The IPv6 interface identifier repeats the IPv4 last octet's decimal digits
(``.101`` -> ``::101``) so the two are easy to match by eye. The MAC's last byte
is the IPv4 last octet; ``02`` marks it locally administered. The bridge lives
in ``P-sw``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal, overload

LAN4 = IPv4Network("198.18.0.0/24")
LAN6 = IPv6Network("fd00:198:18::/64")
CLIENT_OCTET = 1
NODE_BASE = 10  # node1 -> .11
BACKEND_BASE = 100  # backend1 -> .101
VIP_BASE = 200  # vip(0) -> .200
MAX_NODES = BACKEND_BASE - NODE_BASE - 1  # .11 .. .99
MAX_BACKENDS = VIP_BASE - BACKEND_BASE - 1  # .101 .. .199
MAX_VIPS = 255 - VIP_BASE  # .200 .. .254
SWITCH_SUFFIX = "sw"
BRIDGE_NAME = "br0"
HOST_IFNAME = "eth0"
MAC_PREFIX = "02:00:c6:12:00"  # locally administered; c6:12 = 198.18

_PREFIX_RE = re.compile(r"^[a-z0-9]{1,24}$")


class LabError(RuntimeError):
    """The lab cannot be built or removed as asked (bad input, prefix in use, ...)."""


@dataclass(frozen=True)
class LabHost:
    """One namespace "host" on the lab LAN."""

    name: str  # role name: "client", "node1", "backend1"
    netns: str
    ifname: str
    mac: str
    ipv4: IPv4Address
    ipv6: IPv6Address
    role: str  # "client", "node" or "backend"


def random_prefix() -> str:
    """A fresh run prefix: ``ilb`` plus five random hex digits."""
    return "ilb" + secrets.token_hex(3)[:5]


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if usable, else raise :class:`LabError`.

    Lower-case letters and digits only (no ``-``): namespaces are named
    ``<prefix>-<role>`` and clean-up matches ``<prefix>-``, so a dash inside a
    prefix would let one run's clean-up match another's namespaces.
    """
    if not _PREFIX_RE.match(prefix):
        raise LabError(
            f"invalid lab prefix {prefix!r}: use 1-24 lower-case letters and digits, no '-'"
        )
    return prefix


def netns_name(prefix: str, role_name: str) -> str:
    return f"{prefix}-{role_name}"


def switch_netns(prefix: str) -> str:
    return netns_name(prefix, SWITCH_SUFFIX)


def mac_for(octet: int) -> str:
    return f"{MAC_PREFIX}:{octet:02x}"


def ipv4_for(octet: int) -> IPv4Address:
    return LAN4.network_address + octet


def ipv6_for(octet: int) -> IPv6Address:
    return IPv6Address(f"{LAN6.network_address}{octet}")


def _host(prefix: str, name: str, role: str, octet: int) -> LabHost:
    return LabHost(
        name=name,
        netns=netns_name(prefix, name),
        ifname=HOST_IFNAME,
        mac=mac_for(octet),
        ipv4=ipv4_for(octet),
        ipv6=ipv6_for(octet),
        role=role,
    )


def plan_hosts(prefix: str, nodes: int, backends: int) -> list[LabHost]:
    """Every host of a lab, client first, then nodes, then backends."""
    validate_prefix(prefix)
    if not 0 <= nodes <= MAX_NODES:
        raise LabError(f"nodes must be 0..{MAX_NODES}, got {nodes}")
    if not 0 <= backends <= MAX_BACKENDS:
        raise LabError(f"backends must be 0..{MAX_BACKENDS}, got {backends}")
    hosts = [_host(prefix, "client", "client", CLIENT_OCTET)]
    hosts += [_host(prefix, f"node{i}", "node", NODE_BASE + i) for i in range(1, nodes + 1)]
    hosts += [
        _host(prefix, f"backend{i}", "backend", BACKEND_BASE + i) for i in range(1, backends + 1)
    ]
    return hosts


@overload
def vip_address(index: int, family: Literal[4] = 4) -> IPv4Address: ...
@overload
def vip_address(index: int, family: Literal[6]) -> IPv6Address: ...
@overload
def vip_address(index: int, family: int) -> IPv4Address | IPv6Address: ...
def vip_address(index: int, family: int = 4) -> IPv4Address | IPv6Address:
    """The ``index``-th address reserved for VIPs on the lab LAN (0-based)."""
    if not 0 <= index < MAX_VIPS:
        raise LabError(f"VIP index must be 0..{MAX_VIPS - 1}, got {index}")
    if family == 4:
        return ipv4_for(VIP_BASE + index)
    if family == 6:
        return ipv6_for(VIP_BASE + index)
    raise LabError(f"family must be 4 or 6, got {family}")
