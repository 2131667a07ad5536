"""Limit counts shared by worker processes (forwarder/shared_limits.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ironlb.dataplane.forwarder.shared_limits import SharedCounts, WorkerCounts, spawn_context
from ironlb.dataplane.state import ListenerKey

LOCAL = ipaddress.ip_address("127.0.0.1")


def _churn(array: Any, lock: Any, barrier: Any, index: int, out: Any) -> None:
    """Acquire and release 20000 times against a limit of 2; count overshoots seen."""
    gate = WorkerCounts(array, lock, 4, index).gate(0)
    row = memoryview(array).cast("B").cast("q")[0:4]
    barrier.wait()
    held = overshoots = 0
    for _ in range(20000):
        if gate.try_acquire(2):
            held += 1
            with lock:  # a consistent view of the row
                if sum(row) > 2:
                    overshoots += 1
            gate.release()
    out.put((held, overshoots))


def test_four_processes_racing_for_a_limit_of_2_never_hold_more_than_2() -> None:
    ctx = spawn_context()
    counts = SharedCounts(ctx, 4, capacity=1)
    assert counts.assign([ListenerKey(LOCAL, "tcp", 80)]) == {ListenerKey(LOCAL, "tcp", 80): 0}
    out, barrier = ctx.Queue(), ctx.Barrier(4)
    procs = [
        ctx.Process(target=_churn, args=(counts.array, counts.lock, barrier, i, out))
        for i in range(4)
    ]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert sum(held for held, _ in results) > 0
    assert sum(overshoots for _, overshoots in results) == 0
    assert counts.total(0) == 0  # every acquire was released


def test_a_draining_listener_keeps_its_slot_and_a_dead_worker_its_count_is_zeroed() -> None:
    counts = SharedCounts(spawn_context(), 2, capacity=2)
    a, b, c = (ListenerKey(LOCAL, "tcp", port) for port in (1, 2, 3))
    slots = counts.assign([a, b])
    w0 = WorkerCounts(counts.array, counts.lock, 2, 0)
    w1 = WorkerCounts(counts.array, counts.lock, 2, 1)
    gate0, gate1 = w0.gate(slots[a]), w1.gate(slots[a])
    assert gate0.try_acquire(2) and gate1.try_acquire(2)
    assert not gate0.try_acquire(2)  # the limit is the listener's, not each worker's
    assert counts.assign([b, c]) == {b: slots[b]}  # a drains: no slot free for c yet
    assert counts.assign([a, b]) == slots  # a added back: same slot, same count
    assert not gate1.try_acquire(2)
    counts.forget_worker(1)  # worker 1 died with its connection
    assert counts.total(slots[a]) == 1
    gate0.release()
    assert counts.assign([b, c]) == {b: slots[b]}  # a gone: workers may still see it once
    assert counts.assign([b, c]) == {b: slots[b], c: slots[a]}  # now a's slot is c's
