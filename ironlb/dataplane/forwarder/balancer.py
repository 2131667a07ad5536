"""Round-robin choice over the ready backends of one listener (pure logic).

The position survives updates: re-applying the same backends changes nothing,
and a changed set continues from where the rotation was instead of restarting
at the first backend (which would overload it after every reconfiguration).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Cycle over ``items``; ``None`` when there is nothing to pick."""

    __slots__ = ("_items", "_next")

    def __init__(self, items: Sequence[T] = ()) -> None:
        self._items: tuple[T, ...] = tuple(items)
        self._next = 0

    @property
    def items(self) -> tuple[T, ...]:
        return self._items

    def update(self, items: Sequence[T]) -> None:
        """Replace the rotation, keeping the position (no-op for equal items)."""
        new = tuple(items)
        if new == self._items:
            return
        if self._items and new:
            # Continue after the item that was picked last, if it is still there.
            last = self._items[(self._next - 1) % len(self._items)]
            self._next = (new.index(last) + 1) if last in new else self._next % len(new)
        else:
            self._next = 0
        self._items = new

    def pick(self) -> T | None:
        items = self._items
        if not items:
            return None
        i = self._next
        if i >= len(items):
            i = 0
        self._next = i + 1
        return items[i]
