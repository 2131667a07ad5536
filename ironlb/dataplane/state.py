"""The typed desired state that drives the data plane of one node.

One value describes everything the data plane of a node should be doing:

* ``listeners``: for each ``(VIP, protocol, port)`` the backends connections
  are spread over (in round-robin order) and the listener's options (who
  forwards it, ``proxy`` or ``kernel``; timeouts; limits; source ranges);
* ``vips``: the addresses this node *owns*: bound on ``lo`` and announced
  with ARP/NDP. This set is independent of the listeners: a standby node
  keeps listeners ready (bound with ``IP_FREEBIND``) for VIPs it does not
  own, so a takeover is bind + gratuitous ARP only. A VIP may be owned with
  no listener yet. ``announce`` optionally narrows, per owned VIP, the
  interfaces it is announced on (an IPAddressPool's ``l2.interfaces``).

The speaker computes it from Kubernetes objects; ``ironlb forward`` reads it
from a YAML file. Both hand the same type to
:class:`~ironlb.dataplane.dataplane.DataPlane`, which never learns where the
state came from.

Values are immutable and hashable: applying the same state twice is detectably
a no-op, and a diff between two states is a set operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from ironlb.common.addresses import IPAddress, IPNetwork, format_endpoint
from ironlb.common.protocols import PROTOCOLS, Protocol

__all__ = [
    "AFFINITY_TIMEOUT_DEFAULT",
    "AFFINITY_TIMEOUT_MAX",
    "MODES",
    "PROTOCOLS",
    "Backend",
    "DesiredState",
    "IPAddress",
    "ListenerKey",
    "ListenerOptions",
    "ListenerSpec",
    "Mode",
    "Protocol",
]

K = TypeVar("K")
V = TypeVar("V")

#: Who forwards a listener: the uvloop workers (``proxy``) or nftables DNAT (``kernel``).
Mode = Literal["proxy", "kernel"]
#: PROXY protocol versions a listener can send to its backends (HAProxy's spec).
ProxyVersion = Literal["v1", "v2"]
PROXY_VERSIONS: tuple[ProxyVersion, ...] = ("v1", "v2")
MODES: tuple[Mode, ...] = ("proxy", "kernel")


@dataclass(frozen=True, order=True)
class Backend:
    """One endpoint connections may be sent to; ``ready`` False keeps it out of rotation."""

    address: IPAddress
    port: int
    ready: bool = True

    def __str__(self) -> str:
        return format_endpoint(self.address, self.port)


@dataclass(frozen=True, order=True)
class ListenerKey:
    """Where clients connect: a VIP, a protocol and a port."""

    vip: IPAddress
    protocol: Protocol
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}/{format_endpoint(self.vip, self.port)}"


@dataclass(frozen=True)
class ListenerOptions:
    """Per-listener options (times in seconds).

    ``mode``: ``proxy`` (the userspace workers) or ``kernel`` (nftables DNAT,
    :mod:`ironlb.dataplane.fastpath`; the proxy tunables do not apply to it).
    ``source_ranges``: when not empty, only clients inside one of these
    networks are served; others are refused (TCP reset / ICMP unreachable in
    kernel mode, an immediate close in proxy mode). This is Kubernetes'
    ``spec.loadBalancerSourceRanges``: with ``ipMode: Proxy`` kube-proxy no
    longer filters the VIP, so the data plane must. ``masquerade``: kernel
    mode only; ``False`` keeps the client's source address towards the
    backend (``externalTrafficPolicy: Local``, where the backend is on this
    node and replies come back through it). ``udp_expect_reply`` /
    ``udp_reply_timeout``: a UDP datagram its backend has not answered within
    ``udp_reply_timeout`` counts as a failure of that backend (passive
    detection, :mod:`ironlb.dataplane.forwarder.outlier`); right for
    request/response protocols such as DNS, wrong for one-way streams, which
    set ``udp_expect_reply`` False (then only ICMP errors count).
    ``affinity_timeout``: ``None`` spreads connections round-robin; a number
    of seconds pins each client address to one backend until it has opened no
    connection (or UDP flow) for that long (Kubernetes ``spec.sessionAffinity:
    ClientIP`` with ``sessionAffinityConfig.clientIP.timeoutSeconds``; proxy
    mode: :mod:`ironlb.dataplane.forwarder.affinity`, kernel mode: sets in
    :mod:`ironlb.dataplane.fastpath.render`, whole seconds).
    ``proxy_protocol``: TCP in proxy mode only; ``v1``/``v2`` sends a PROXY
    protocol header (:mod:`ironlb.dataplane.forwarder.proxy_header`) first on
    every backend connection, so the backend sees the client's address.
    """

    mode: Mode = "proxy"
    connect_timeout: float = 5.0
    idle_timeout: float = 300.0
    retries: int = 2
    max_connections: int = 10000
    udp_session_timeout: float = 30.0
    udp_max_sessions: int = 10000
    udp_expect_reply: bool = True
    udp_reply_timeout: float = 2.0
    source_ranges: tuple[IPNetwork, ...] = ()
    masquerade: bool = True
    affinity_timeout: float | None = None
    proxy_protocol: ProxyVersion | None = None

    def allows(self, client: IPAddress) -> bool:
        """Whether ``client`` may use the listener (``source_ranges``)."""
        if not self.source_ranges:
            return True
        return any(client.version == net.version and client in net for net in self.source_ranges)


DEFAULT_OPTIONS = ListenerOptions()
#: Kubernetes core/v1 ``ClientIPConfig.timeoutSeconds`` (ServiceSpec
#: ``sessionAffinityConfig.clientIP``): default 10800 s (3 hours), at most 86400 s (1 day).
AFFINITY_TIMEOUT_DEFAULT = 10800
AFFINITY_TIMEOUT_MAX = 86400


@dataclass(frozen=True)
class ListenerSpec:
    """What one listener serves: its backends in round-robin order and its options."""

    backends: tuple[Backend, ...] = ()
    options: ListenerOptions = DEFAULT_OPTIONS

    @property
    def ready(self) -> tuple[Backend, ...]:
        """The backends that get new connections."""
        return tuple(b for b in self.backends if b.ready)


@dataclass(frozen=True)
class DesiredState:
    """Everything the data plane of one node should serve.

    ``listeners`` maps each listener to its :class:`ListenerSpec`. ``vips`` is
    the set of addresses the node owns (bound and announced), independent of
    the listeners. ``announce`` maps an owned VIP to the interfaces it is
    announced on; a VIP missing from it (or mapped to an empty set) is
    announced on every interface the announcer serves.
    """

    listeners: Mapping[ListenerKey, ListenerSpec] = field(default_factory=dict)
    vips: frozenset[IPAddress] = frozenset()
    announce: Mapping[IPAddress, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze the mappings so the value is safe to share between tasks and processes.
        object.__setattr__(self, "listeners", _FrozenDict(dict(self.listeners)))
        object.__setattr__(self, "vips", frozenset(self.vips))
        scopes = {vip: frozenset(names) for vip, names in self.announce.items() if names}
        object.__setattr__(self, "announce", _FrozenDict(scopes))

    @classmethod
    def build(
        cls,
        entries: Iterable[tuple[ListenerKey, Iterable[Backend]]],
        options: Mapping[ListenerKey, ListenerOptions] | None = None,
        vips: Iterable[IPAddress] = (),
    ) -> DesiredState:
        """A state from ``(key, backends)`` pairs, with optional options per key and owned VIPs."""
        opts = options or {}
        return cls(
            listeners={
                key: ListenerSpec(tuple(backends), opts.get(key, DEFAULT_OPTIONS))
                for key, backends in entries
            },
            vips=frozenset(vips),
        )

    def backends(self, key: ListenerKey) -> tuple[Backend, ...]:
        """The backends of one listener (``KeyError`` when there is no such listener)."""
        return self.listeners[key].backends

    def only(self, mode: Mode) -> DesiredState:
        """The listeners forwarded by ``mode`` (owned VIPs kept as they are)."""
        return DesiredState(
            listeners={k: s for k, s in self.listeners.items() if s.options.mode == mode},
            vips=self.vips,
            announce=self.announce,
        )

    def with_vips(
        self, vips: Iterable[IPAddress], announce: Mapping[IPAddress, frozenset[str]] | None = None
    ) -> DesiredState:
        """The same listeners, owning ``vips`` instead."""
        return DesiredState(listeners=self.listeners, vips=frozenset(vips), announce=announce or {})

    def listener_vips(self) -> frozenset[IPAddress]:
        """Every address some listener serves."""
        return frozenset(key.vip for key in self.listeners)


class _FrozenDict(Mapping[K, V]):
    """A read-only, hashable mapping."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[K, V]) -> None:
        self._items = items

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __reduce__(self) -> tuple[type[_FrozenDict[K, V]], tuple[dict[K, V]]]:
        return (type(self), (self._items,))

    def __repr__(self) -> str:
        return f"{self._items!r}"
