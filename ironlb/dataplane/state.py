"""The typed desired state that drives the data plane.

One value describes everything the data plane of a node should be doing:
which VIPs it serves, and for each ``(protocol, port)`` of a VIP the backends
connections are spread over. The speaker computes it from Kubernetes objects;
``ironlb forward`` reads it from a YAML file. Both hand the same type to the
forwarder, so the forwarder never learns where the state came from.

Values are immutable and hashable: applying the same state twice is detectably
a no-op, and a diff between two states is a set operation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")


@dataclass(frozen=True, order=True)
class Backend:
    """One endpoint connections may be sent to."""

    address: IPAddress
    port: int
    ready: bool = True

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


@dataclass(frozen=True, order=True)
class ListenerKey:
    """Where clients connect: a VIP, a protocol and a port."""

    vip: IPAddress
    protocol: Protocol
    port: int

    def __str__(self) -> str:
        host = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        return f"{self.protocol}/{host}:{self.port}"


@dataclass(frozen=True)
class DesiredState:
    """Everything the data plane of one node should serve.

    ``listeners`` maps each listener to its backends in round-robin order.
    ``vips`` is the set of addresses the node owns; every listener VIP is in
    it (a VIP may be owned with no listeners yet).
    """

    listeners: Mapping[ListenerKey, tuple[Backend, ...]] = field(default_factory=dict)
    vips: frozenset[IPAddress] = frozenset()

    def __post_init__(self) -> None:
        # Freeze the mapping so the value is safe to share between tasks.
        frozen = {key: tuple(backends) for key, backends in self.listeners.items()}
        object.__setattr__(self, "listeners", _FrozenDict(frozen))
        missing = {key.vip for key in frozen} - set(self.vips)
        object.__setattr__(self, "vips", frozenset(self.vips) | missing)

    @classmethod
    def build(cls, entries: Iterable[tuple[ListenerKey, Iterable[Backend]]]) -> DesiredState:
        return cls(listeners={key: tuple(backends) for key, backends in entries})

    def for_vip(self, vip: IPAddress) -> dict[tuple[Protocol, int], tuple[Backend, ...]]:
        """The ``{(protocol, port): backends}`` view of one VIP."""
        return {
            (key.protocol, key.port): backends
            for key, backends in self.listeners.items()
            if key.vip == vip
        }


class _FrozenDict(Mapping[ListenerKey, tuple[Backend, ...]]):
    """A read-only, hashable mapping."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[ListenerKey, tuple[Backend, ...]]) -> None:
        self._items = items

    def __getitem__(self, key: ListenerKey) -> tuple[Backend, ...]:
        return self._items[key]

    def __iter__(self) -> Iterator[ListenerKey]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"{self._items!r}"
