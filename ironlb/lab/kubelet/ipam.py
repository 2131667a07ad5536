"""Pod address management for one lab node: which pod index (and so which IPs) a Pod gets.

A pod's addresses follow from its index on the node
(:func:`ironlb.lab.netlab.plan.pod_port`: index 3 on node2 is 198.19.2.13 and
fd00:198:19:2::13), so the allocator hands out indexes: the lowest free one,
which makes a freed address the next one reused, as host-local IPAM does
within its range. One allocation per Pod UID, so a repeated event for the
same Pod gets the same index.
"""

from __future__ import annotations

from ironlb.lab.netlab.plan import MAX_PODS_PER_NODE


class IpamExhausted(RuntimeError):
    """Every pod index of the node is taken."""


class PodIndexes:
    """Pod indexes 1..``size`` of one node, keyed by Pod UID; ``reserved`` are never handed out."""

    def __init__(
        self, size: int = MAX_PODS_PER_NODE, reserved: frozenset[int] = frozenset()
    ) -> None:
        self.size = size
        self.reserved = reserved
        self._by_owner: dict[str, int] = {}

    def allocate(self, owner: str) -> int:
        """The owner's index (the lowest free one on first call). Raises :class:`IpamExhausted`."""
        if owner in self._by_owner:
            return self._by_owner[owner]
        taken = set(self._by_owner.values()) | self.reserved
        for index in range(1, self.size + 1):
            if index not in taken:
                self._by_owner[owner] = index
                return index
        raise IpamExhausted(f"all {self.size} pod addresses of the node are in use")

    def release(self, owner: str) -> int | None:
        """Free the owner's index; returns it (None if it had none)."""
        return self._by_owner.pop(owner, None)

    def owned(self) -> dict[str, int]:
        """Owner -> index, a copy."""
        return dict(self._by_owner)
