"""Per-listener limits counted across worker processes.

``max_connections`` (TCP) and ``max_sessions`` (UDP) are per listener, as
in HAProxy's ``maxconn`` on a frontend, but the kernel spreads a listener's
connections unevenly over the workers' ``SO_REUSEPORT`` sockets, so a limit
split N ways is not the limit the user wrote. Instead every worker counts
against one shared total.

Mechanism: the parent (:class:`SharedCounts`, owned by the
:class:`~.workers.WorkerPool`) allocates one anonymous shared-memory array
of 64-bit integers, a row of ``workers`` cells per listener *slot*, and one
``multiprocessing.Lock``; both are handed to the workers at spawn. The
parent maps each listener to a slot and sends the map with every
:class:`~.messages.Apply`. A worker admits a connection by
:meth:`SlotGate.try_acquire`: under the lock, sum the row, compare with the
limit, add one to its own cell. Releasing subtracts one from its own cell
without the lock (only the owner writes a cell, and an aligned 64-bit store
is atomic; a concurrent reader that sees the old value only refuses
conservatively). Why this shape:

* a cell per worker, not one counter, so a worker that dies takes its count
  with it: the parent zeroes the dead worker's cells before restarting it
  (a semaphore would leak the dead worker's connections);
* the limit is not stored, only the counts: a listener whose options change
  at reload compares the same count with its new limit;
* a slot stays with its listener while any worker still counts connections
  on it (a removed listener drains), so a listener removed and added again
  counts its draining connections too; only slots whose row is all zero are
  reused.

A :class:`LocalGate` does the same for a single process (a
:class:`~.listeners.Forwarder` used without a pool).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterable
from multiprocessing.context import SpawnContext
from typing import Any, Protocol

from ironlb.dataplane.state import ListenerKey

log = logging.getLogger("ironlb.forward")

#: Listener slots in the shared array (memory: CAPACITY * workers * 8 bytes).
CAPACITY = 4096


class Gate(Protocol):
    """Admission of one listener's connections (or UDP sessions)."""

    def try_acquire(self, limit: int) -> bool:
        """Count one more unless ``limit`` are already counted; True when counted."""
        ...

    def release(self) -> None:
        """Count one less (once per successful :meth:`try_acquire`)."""
        ...


class LocalGate:
    """A :class:`Gate` within one process."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def try_acquire(self, limit: int) -> bool:
        if self.count >= limit:
            return False
        self.count += 1
        return True

    def release(self) -> None:
        self.count -= 1


class SlotGate:
    """A :class:`Gate` over one slot of the shared array, for one worker."""

    __slots__ = ("_cell", "_lock", "_row", "_view")

    def __init__(self, view: memoryview, lock: Any, slot: int, workers: int, index: int) -> None:
        base = slot * workers
        self._view = view
        self._row = view[base : base + workers]
        self._cell = base + index
        self._lock = lock

    def try_acquire(self, limit: int) -> bool:
        with self._lock:
            if sum(self._row) >= limit:
                return False
            self._view[self._cell] += 1
        return True

    def release(self) -> None:
        self._view[self._cell] -= 1


class WorkerCounts:
    """A worker's side of :class:`SharedCounts`: gates for its listeners."""

    def __init__(self, array: Any, lock: Any, workers: int, index: int) -> None:
        self._view = memoryview(array).cast("B").cast("q")
        self._lock = lock
        self._workers = workers
        self._index = index

    def gate(self, slot: int | None) -> Gate:
        """The gate of ``slot``; a :class:`LocalGate` when the listener has none."""
        if slot is None:
            return LocalGate()
        return SlotGate(self._view, self._lock, slot, self._workers, self._index)


class SharedCounts:
    """The parent's side: the shared array, the lock and the listener slots."""

    def __init__(self, ctx: SpawnContext, workers: int, capacity: int = CAPACITY) -> None:
        self.workers = workers
        self.capacity = capacity
        self.array = ctx.RawArray("q", capacity * workers)
        self.lock = ctx.Lock()
        self._view = memoryview(self.array).cast("B").cast("q")
        self.slots: dict[ListenerKey, int] = {}
        self._free = list(range(capacity - 1, -1, -1))
        self._absent: set[ListenerKey] = set()
        self._warned = False

    def total(self, slot: int) -> int:
        """Connections (sessions) counted on ``slot`` by all workers."""
        base = slot * self.workers
        return sum(self._view[base : base + self.workers])

    def assign(self, keys: Iterable[ListenerKey]) -> dict[ListenerKey, int]:
        """Slots for ``keys`` (kept for known listeners, new ones for others).

        The slot of a listener not in ``keys`` is freed once no worker counts
        on it, and not before the next call (by then the workers have applied
        the state without it, so none of them counts on it any more). Beyond
        :data:`CAPACITY` listeners, the rest get no slot (their limits are
        then per worker) and one error is logged.
        """
        wanted = set(keys)
        for key, slot in list(self.slots.items()):
            if key in wanted:
                self._absent.discard(key)
            elif key not in self._absent:
                self._absent.add(key)
            elif self.total(slot) == 0:
                del self.slots[key]
                self._absent.discard(key)
                self._free.append(slot)
        for key in sorted(wanted - self.slots.keys(), key=str):
            if not self._free:
                if not self._warned:
                    log.error(
                        "more than %d listeners: limits of the others are per worker",
                        self.capacity,
                    )
                    self._warned = True
                break
            self.slots[key] = self._free.pop()
        return {key: self.slots[key] for key in wanted if key in self.slots}

    def forget_worker(self, index: int) -> None:
        """Zero a dead worker's cells (its connections died with it)."""
        with self.lock:
            for slot in range(self.capacity):
                self._view[slot * self.workers + index] = 0


def spawn_context() -> SpawnContext:
    """The multiprocessing context workers are spawned with (shared by the pool)."""
    return multiprocessing.get_context("spawn")
