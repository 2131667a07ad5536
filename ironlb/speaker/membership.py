"""Which speakers are alive, from their Leases and their heartbeats (pure).

Times are a monotonic clock in seconds, passed in by the caller. The rules,
which are the product's contract:

* A peer is **alive** while its last heartbeat is younger than
  ``heartbeat_timeout``.
* Otherwise it is alive while its Lease is valid (observation time plus the
  seconds the Lease had left) **and** either no heartbeat was ever heard from
  it, or its Lease was seen renewed after its heartbeats went quiet (they are
  blocked, but the API vouches for the node).
* So a speaker that is SIGKILLed (Lease still valid, heartbeats stopped) is
  dead after ``heartbeat_timeout``: the sub-second path.
* A ``leaving`` heartbeat makes the peer dead at once, until a later normal
  heartbeat or a later observed Lease renewal.
* **Self** is connected while our own Lease was renewed less than
  ``lease_duration`` ago or any peer's heartbeat is fresh; a speaker cut off
  from both must stop announcing once its own Lease would have expired (no
  two MACs for one IP). ``alive()`` contains self exactly when connected.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Peer:
    lease_until: float | None = None  # monotonic expiry of the last observed Lease
    lease_renewed_at: float | None = None
    heartbeat_at: float | None = None
    leaving_at: float | None = None


@dataclass(frozen=True)
class PeerStatus:
    """What is known of one peer, for status and metrics."""

    lease_valid: bool
    heartbeat_age: float | None
    alive: bool


class Membership:
    """Liveness of ``self_node``'s peers and of itself; see the module docstring."""

    def __init__(
        self, self_node: str, *, lease_duration: float = 10.0, heartbeat_timeout: float = 0.5
    ) -> None:
        if heartbeat_timeout <= 0 or lease_duration <= 0:
            raise ValueError("lease_duration and heartbeat_timeout must be positive")
        self.self_node = self_node
        self.lease_duration = lease_duration
        self.heartbeat_timeout = heartbeat_timeout
        self._peers: dict[str, _Peer] = {}
        self._own_renewed: float | None = None

    # -- inputs ------------------------------------------------------------------------

    def observe_lease(self, node: str, *, renewed: bool, valid_for: float, now: float) -> None:
        """A peer's Lease was seen; ``valid_for`` seconds are left (<= 0: expired or released)."""
        peer = self._peers.setdefault(node, _Peer())
        peer.lease_until = now + valid_for if valid_for > 0 else None
        if renewed and valid_for > 0:
            peer.lease_renewed_at = now

    def forget_lease(self, node: str) -> None:
        peer = self._peers.get(node)
        if peer is not None:
            peer.lease_until = None

    def observe_heartbeat(self, node: str, *, now: float, leaving: bool) -> None:
        peer = self._peers.setdefault(node, _Peer())
        if leaving:
            peer.leaving_at = now
            peer.heartbeat_at = None
        else:
            peer.heartbeat_at = now

    def own_lease_renewed(self, now: float) -> None:
        self._own_renewed = now

    # -- outputs -----------------------------------------------------------------------

    def _fresh(self, peer: _Peer, now: float) -> bool:
        return peer.heartbeat_at is not None and now - peer.heartbeat_at < self.heartbeat_timeout

    def _peer_alive(self, peer: _Peer, now: float) -> bool:
        if peer.leaving_at is not None:
            later = [t for t in (peer.heartbeat_at, peer.lease_renewed_at) if t is not None]
            if not any(t > peer.leaving_at for t in later):
                return False
        if self._fresh(peer, now):
            return True
        if peer.lease_until is None or now >= peer.lease_until:
            return False
        if peer.heartbeat_at is None:
            return True
        quiet_since = peer.heartbeat_at + self.heartbeat_timeout
        return peer.lease_renewed_at is not None and peer.lease_renewed_at > quiet_since

    def self_connected(self, now: float) -> bool:
        if self._own_renewed is not None and now - self._own_renewed < self.lease_duration:
            return True
        return any(self._fresh(p, now) for p in self._peers.values())

    def alive(self, now: float) -> frozenset[str]:
        """Every live speaker, this one included when it is connected."""
        live = {
            n for n, p in self._peers.items() if n != self.self_node and self._peer_alive(p, now)
        }
        if self.self_connected(now):
            live.add(self.self_node)
        return frozenset(live)

    def next_deadline(self, now: float) -> float | None:
        """The earliest future time at which :meth:`alive` may change without new input."""
        times: list[float] = []
        for peer in self._peers.values():
            if peer.heartbeat_at is not None:
                times.append(peer.heartbeat_at + self.heartbeat_timeout)
            if peer.lease_until is not None:
                times.append(peer.lease_until)
        if self._own_renewed is not None:
            times.append(self._own_renewed + self.lease_duration)
        future = [t for t in times if t > now]
        return min(future) if future else None

    def peer_status(self, now: float) -> dict[str, PeerStatus]:
        return {
            node: PeerStatus(
                lease_valid=peer.lease_until is not None and now < peer.lease_until,
                heartbeat_age=None if peer.heartbeat_at is None else now - peer.heartbeat_at,
                alive=self._peer_alive(peer, now),
            )
            for node, peer in sorted(self._peers.items())
        }
