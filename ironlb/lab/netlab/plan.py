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

Pods (optional, ``pods_per_node``) are laid out the way a bridge CNI does it,
off the LAN: node N owns the pod CIDRs 198.19.N.0/24 and fd00:198:19:N::/64,
whose gateway (.1 / ::1) sits on a bridge ``cni0`` inside the node namespace:

==========  ===================  ===============  =====================  =================
role        netns                IPv4             IPv6                   MAC
==========  ===================  ===============  =====================  =================
nodeN-podM  ``P-nodeN-podM``     198.19.N.(10+M)  fd00:198:19:N::(10+M)  02:00:c6:13:NN:MM
gateway     ``cni0`` on nodeN    198.19.N.1       fd00:198:19:N::1       02:00:c6:13:NN:01
veth end    ``pM`` on nodeN      (none)           (none)                 02:01:c6:13:NN:MM
==========  ===================  ===============  =====================  =================

``NN`` is N and ``MM`` is 10+M, in hex. The pod namespace names share the run
prefix, so the ``<prefix>-*`` clean-up removes pods too (:func:`cleanup_order`
puts them first).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
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

POD_SUPERNET4 = IPv4Network("198.19.0.0/16")  # node N: 198.19.N.0/24
POD_PREFIXLEN4 = 24
POD_PREFIXLEN6 = 64  # node N: fd00:198:19:N::/64
POD_BASE = 10  # pod1 -> .11
POD_GATEWAY_OCTET = 1
MAX_PODS_PER_NODE = 200  # .11 .. .210
POD_BRIDGE = "cni0"
POD_MAC_PREFIX = "02:00:c6:13"  # pod eth0 and cni0; c6:13 = 198.19
POD_PEER_MAC_PREFIX = "02:01:c6:13"  # node end of a pod's veth pair

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
    role: str  # "client", "node", "backend" or "pod"
    node: str | None = None  # pods only: role name of the node it lives on ("node2")


@dataclass(frozen=True)
class PodNetwork:
    """The pod side of one node: its pod CIDRs and the gateway on its ``cni0`` bridge.

    ``node_ipv4``/``node_ipv6`` are the node's LAN addresses, the next hop that
    other nodes and the client use for ``ipv4``/``ipv6``.
    """

    node: str  # "node2"
    node_ipv4: IPv4Address  # 198.18.0.12
    node_ipv6: IPv6Address  # fd00:198:18::12
    ipv4: IPv4Network  # 198.19.2.0/24
    ipv6: IPv6Network  # fd00:198:19:2::/64
    gateway4: IPv4Address  # 198.19.2.1
    gateway6: IPv6Address  # fd00:198:19:2::1
    bridge_mac: str


@dataclass(frozen=True)
class PodPort:
    """One pod and the node end of its veth pair (``node_ifname`` in the node namespace)."""

    pod: LabHost
    node_ifname: str  # "p1"
    node_mac: str


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


def pod_network(node_index: int) -> PodNetwork:
    """The pod CIDRs and gateway of node ``node_index`` (1-based, like ``node2``).

    Raises :class:`LabError` outside 1..MAX_NODES.
    """
    if not 1 <= node_index <= MAX_NODES:
        raise LabError(f"node index must be 1..{MAX_NODES}, got {node_index}")
    octet = NODE_BASE + node_index
    net4 = IPv4Network(f"198.19.{node_index}.0/{POD_PREFIXLEN4}")
    net6 = IPv6Network(f"fd00:198:19:{node_index}::/{POD_PREFIXLEN6}")
    return PodNetwork(
        node=f"node{node_index}",
        node_ipv4=ipv4_for(octet),
        node_ipv6=ipv6_for(octet),
        ipv4=net4,
        ipv6=net6,
        gateway4=net4.network_address + POD_GATEWAY_OCTET,
        gateway6=_pod_ipv6(node_index, POD_GATEWAY_OCTET),
        bridge_mac=f"{POD_MAC_PREFIX}:{node_index:02x}:{POD_GATEWAY_OCTET:02x}",
    )


def _pod_ipv6(node_index: int, octet: int) -> IPv6Address:
    return IPv6Address(f"fd00:198:19:{node_index}::{octet}")


def pod_name(node_index: int, pod_index: int) -> str:
    """Role name of pod ``pod_index`` on node ``node_index``: ``node2-pod1``."""
    return f"node{node_index}-pod{pod_index}"


def plan_pod_networks(nodes: int) -> list[PodNetwork]:
    """The pod networks of nodes 1..``nodes``, in node order."""
    if not 0 <= nodes <= MAX_NODES:
        raise LabError(f"nodes must be 0..{MAX_NODES}, got {nodes}")
    return [pod_network(i) for i in range(1, nodes + 1)]


def plan_pods(prefix: str, nodes: int, pods_per_node: int) -> list[PodPort]:
    """Every pod of a lab, node by node (node1-pod1, node1-pod2, node2-pod1, ...).

    Raises :class:`LabError` for a bad prefix, ``nodes`` outside 0..MAX_NODES or
    ``pods_per_node`` outside 0..MAX_PODS_PER_NODE.
    """
    validate_prefix(prefix)
    if not 0 <= pods_per_node <= MAX_PODS_PER_NODE:
        raise LabError(f"pods_per_node must be 0..{MAX_PODS_PER_NODE}, got {pods_per_node}")
    ports: list[PodPort] = []
    for net in plan_pod_networks(nodes):
        node_index = int(net.node.removeprefix("node"))
        ports += [pod_port(prefix, node_index, m) for m in range(1, pods_per_node + 1)]
    return ports


def pod_port(prefix: str, node_index: int, pod_index: int) -> PodPort:
    """Pod ``pod_index`` (1..MAX_PODS_PER_NODE) of node ``node_index``, laid out as in the table.

    The one rule for a pod's names and addresses, whether the lab builds it up
    front (:func:`plan_pods`) or a lab kubelet adds it at run time. Raises
    :class:`LabError` for a bad prefix or an index out of range.
    """
    validate_prefix(prefix)
    if not 1 <= pod_index <= MAX_PODS_PER_NODE:
        raise LabError(f"pod index must be 1..{MAX_PODS_PER_NODE}, got {pod_index}")
    net = pod_network(node_index)
    octet = POD_BASE + pod_index
    name = pod_name(node_index, pod_index)
    pod = LabHost(
        name=name,
        netns=netns_name(prefix, name),
        ifname=HOST_IFNAME,
        mac=f"{POD_MAC_PREFIX}:{node_index:02x}:{octet:02x}",
        ipv4=net.ipv4.network_address + octet,
        ipv6=_pod_ipv6(node_index, octet),
        role="pod",
        node=net.node,
    )
    return PodPort(
        pod=pod,
        node_ifname=f"p{pod_index}",
        node_mac=f"{POD_PEER_MAC_PREFIX}:{node_index:02x}:{octet:02x}",
    )


_POD_NETNS_RE = re.compile(r"-node[0-9]+-pod[0-9]+$")


def cleanup_order(prefix: str, names: Iterable[str]) -> list[str]:
    """Namespaces of a run in removal order: pods, then LAN hosts, then the switch.

    Pods first so their processes die before the node they hang off goes;
    the switch last, since every host's veth peer lives in it.
    """
    switch = switch_netns(prefix)

    def rank(name: str) -> int:
        if name == switch:
            return 2
        return 0 if _POD_NETNS_RE.search(name) else 1

    return sorted(names, key=lambda n: (rank(n), n))


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
