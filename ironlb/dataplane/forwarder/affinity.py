"""ClientIP session affinity for one listener (pure logic: time is passed in).

Kubernetes' ``spec.sessionAffinity: ClientIP`` sends every connection of one
client address to the same endpoint until the client has made no new
connection for ``sessionAffinityConfig.clientIP.timeoutSeconds`` (kube-proxy's
iptables mode: the ``recent`` match, refreshed by each new connection). With
``ipMode: Proxy`` kube-proxy leaves the VIP to us, so the proxy workers keep it.

Shape, and why:

* the *base* choice is rendezvous (highest random weight) hashing of the
  client address over the ready backends, with a hash that is the same in
  every process (BLAKE2b, not Python's per-process salted ``hash``). The
  kernel spreads one client's connections over the ``SO_REUSEPORT`` workers,
  so a per-worker table alone would pin the client once per worker; the
  hash makes every worker (and every node, after a failover) choose the
  same backend without sharing memory. A backend that goes away moves only
  its own clients, each to its next-ranked backend;
* a per-worker *pin table* (client address -> backend, time of last use)
  adds stickiness the hash lacks: a backend that *joins* would take over
  about 1/(n+1) of the clients by rank; a pinned client stays with its
  ready backend until the pin expires. A pin is dropped when its backend
  leaves the ready set, or when unused for the timeout.

Limit (documented in docs/design.md): the pin table is per worker, so after a
backend joins, a client whose connections reach a worker that has no live pin
for it may be re-homed there by rank while another worker still pins it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

__all__ = ["Affinity", "rank"]


def _score(client: bytes, backend: bytes) -> bytes:
    return hashlib.blake2b(client + b"\0" + backend, digest_size=8).digest()


def rank(client: bytes, items: Sequence[T], name: Callable[[T], bytes]) -> list[T]:
    """``items`` in rendezvous order for ``client``: the first is its backend.

    ``name(item)`` is the stable identity hashed with the client (for a
    backend: its ``address:port``). Equal inputs give the same order in every
    process. Ties (equal 64-bit scores) fall back to the name, so the order is
    total.
    """
    return sorted(items, key=lambda item: (_score(client, name(item)), name(item)), reverse=True)


class Affinity(Generic[T]):
    """Pins of one listener: client address -> backend, expiring ``timeout`` s after last use."""

    __slots__ = ("_name", "_pins", "_ready", "timeout")

    def __init__(self, timeout: float, name: Callable[[T], bytes]) -> None:
        self.timeout = timeout
        self._name = name
        self._ready: tuple[T, ...] = ()
        self._pins: dict[bytes, tuple[T, float]] = {}

    def __len__(self) -> int:
        return len(self._pins)

    def update(self, ready: Sequence[T]) -> None:
        """New ready backends; pins to backends no longer among them are dropped."""
        new = tuple(ready)
        if new == self._ready:
            return  # every apply re-sends the backends: skip the pass over the pins
        self._ready = new
        keep = set(self._ready)
        self._pins = {c: pin for c, pin in self._pins.items() if pin[0] in keep}

    def pick(self, client: bytes, now: float) -> T | None:
        """The backend for a new connection (or UDP session) of ``client`` at ``now`` (s).

        The pinned backend while the pin is live, else the first by
        rendezvous rank; that backend is (re)pinned with ``now`` as its last
        use, so call once per connection. ``None`` when nothing is ready.
        """
        pin = self._pins.get(client)
        if pin is not None and now - pin[1] <= self.timeout:
            target = pin[0]
        elif self._ready:
            target = max(self._ready, key=lambda item: self._key(client, item))
        else:
            return None
        self._pins[client] = (target, now)
        return target

    def fallbacks(self, client: bytes) -> list[T]:
        """Every ready backend in rendezvous order for ``client`` (for retries)."""
        return rank(client, self._ready, self._name)

    def _key(self, client: bytes, item: T) -> tuple[bytes, bytes]:
        name = self._name(item)
        return (_score(client, name), name)

    def expire(self, now: float) -> int:
        """Drop the pins unused for longer than the timeout; returns how many."""
        limit = now - self.timeout
        stale = [c for c, (_, used) in self._pins.items() if used < limit]
        for client in stale:
            del self._pins[client]
        return len(stale)
