"""Benchmark of the pure IP allocator on a /16 (65,536 addresses).

Run: ``python -m tests.bench.bench_allocator [--sizes 10000 60000] [--naive-budget 20]``

For each size N it times, on a fresh allocator each:

1. allocate N Services (lowest free address first),
2. re-assign all N (the idempotent call a controller resync makes),
3. release every other one (N/2),
4. allocate N/2 new Services (they fill the holes, lowest first).

The same sequence runs against a naive allocator that scans the pool from its
first address for each Service (MetalLB's approach, but over plain integers and
a set, which flatters it). Both must hand out exactly the same addresses; the
run checks that. The naive run stops a phase after ``--naive-budget`` seconds
and reports the rate over what it completed (marked ``*``): its rate falls as
the pool fills, so a partial rate overstates it. Not a pytest test.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ironlb.operator.allocator import Allocator, ServiceKey, ServiceRequest
from ironlb.operator.pools import parse_pool

POOL = "198.18.0.0/16"
PORTS = (("TCP", 80),)


class NaiveAllocator:
    """Linear scan from the start of the pool for every allocation."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr)
        self.first = int(net.network_address)
        self.last = int(net.broadcast_address)
        self.used: set[int] = set()
        self.by_service: dict[str, int] = {}

    def assign(self, name: str) -> int:
        held = self.by_service.get(name)
        if held is not None:
            return held
        value = self.first
        used = self.used
        while value in used:
            value += 1
        if value > self.last:
            raise RuntimeError("pool full")
        used.add(value)
        self.by_service[name] = value
        return value

    def prefill(self, names: list[str]) -> None:
        """Untimed: give ``names`` the next addresses, as assign() would with no holes."""
        value = max(self.used, default=self.first - 1) + 1
        for name in names:
            if name not in self.by_service:
                self.used.add(value)
                self.by_service[name] = value
                value += 1

    def release(self, name: str) -> None:
        self.used.discard(self.by_service.pop(name))


@dataclass
class Phase:
    name: str
    ops: int
    seconds: float
    done: int  # ops completed (naive may stop early)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else float("inf")


def _timed(ops: list[str], fn: Callable[[str], object], budget: float | None) -> Phase:
    start = time.perf_counter()
    done = 0
    for name in ops:
        fn(name)
        done += 1
        if budget is not None and done % 256 == 0 and time.perf_counter() - start > budget:
            break
    return Phase("", len(ops), time.perf_counter() - start, done)


def run_ironlb(n: int) -> tuple[list[Phase], dict[str, int]]:
    alloc = Allocator()
    alloc.set_pools([parse_pool("bench", {"addresses": [POOL]})])
    requests = {
        f"svc-{i}": ServiceRequest(ServiceKey("bench", f"svc-{i}"), ports=PORTS) for i in range(n)
    }
    refill = {
        f"new-{i}": ServiceRequest(ServiceKey("bench", f"new-{i}"), ports=PORTS)
        for i in range(n // 2)
    }
    names = list(requests)
    released = names[::2]
    phases = [
        _timed(names, lambda s: alloc.assign(requests[s]), None),
        _timed(names, lambda s: alloc.assign(requests[s]), None),
        _timed(released, lambda s: alloc.release(ServiceKey("bench", s)), None),
        _timed(list(refill), lambda s: alloc.assign(refill[s]), None),
    ]
    result = {str(k.name): int(a.ips[0]) for k, a in alloc.assignments().items()}
    usage = alloc.usage("bench")
    assert usage.assigned_ipv4 == len(result), "usage disagrees with the assignments"
    return phases, result


def run_naive(n: int, budget: float) -> tuple[list[Phase], dict[str, int] | None]:
    alloc = NaiveAllocator(POOL)
    names = [f"svc-{i}" for i in range(n)]
    refill = [f"new-{i}" for i in range(n // 2)]
    phases = [_timed(names, alloc.assign, budget)]
    alloc.prefill(names)  # complete what the budget cut short, so later phases start equal
    phases.append(_timed(names, alloc.assign, budget))
    phases.append(_timed(names[::2], alloc.release, budget))
    phases.append(_timed(refill, alloc.assign, budget))
    # prefill() made the state equal to a complete first phase, so the final addresses are
    # comparable whenever the later phases ran to the end.
    complete = all(p.done == p.ops for p in phases[1:])
    return phases, (dict(alloc.by_service) if complete else None)


PHASE_NAMES = ["allocate N", "re-assign N (idempotent)", "release N/2", "allocate N/2 into holes"]


def _fmt_rate(phase: Phase | None) -> str:
    if phase is None:
        return "not run"
    mark = "" if phase.done == phase.ops else f"* ({phase.done}/{phase.ops})"
    return f"{phase.rate:,.0f}{mark}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000])
    parser.add_argument(
        "--naive-budget", type=float, default=20.0, help="seconds per naive phase before stopping"
    )
    args = parser.parse_args(argv)
    rows = []
    compared: list[str] = []
    for n in args.sizes:
        if not 2 <= n <= 65_536:
            parser.error(f"size {n} does not fit a /16")
        print(f"N={n}: ironlb ...", file=sys.stderr, flush=True)
        mine, mine_result = run_ironlb(n)
        print(
            f"N={n}: naive (budget {args.naive_budget:g}s/phase) ...", file=sys.stderr, flush=True
        )
        naive, naive_result = run_naive(n, args.naive_budget)
        if naive_result is not None:
            assert mine_result == naive_result, "ironlb and the naive scan gave different addresses"
            compared.append(f"{n:,}")
        for i, title in enumerate(PHASE_NAMES):
            ours = mine[i]
            theirs = naive[i] if i < len(naive) else None
            compare = theirs is not None and i in (0, 3)  # the phases where the search matters
            ratio = f"{ours.rate / theirs.rate:,.1f}x" if compare and theirs else "-"
            rows.append(
                (f"{n:,}", title, f"{ours.ops:,}", _fmt_rate(ours), _fmt_rate(theirs), ratio)
            )
    print(f"Allocator benchmark: pool {POOL} (65,536 addresses), Python {sys.version.split()[0]}")
    print()
    print("| N | phase | ops | ironlb ops/s | naive scan ops/s | ironlb / naive |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("`*` = naive phase stopped at the time budget; its rate over the part it completed.")
    print(
        "Both allocators gave identical addresses for N = "
        f"{', '.join(compared) or '(none: every naive run was cut short)'}."
    )
    print(
        "Re-assign and release rows: the naive side is bare dict bookkeeping (no request "
        "validation, sharing or pool checks), so no ratio is given."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
