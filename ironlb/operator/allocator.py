"""The IP allocator: which Service holds which pool addresses (MetalLB semantics).

Pure, synchronous, in-memory; the kopf controller owns one :class:`Allocator`,
feeds it pools (:meth:`Allocator.set_pools`), re-takes the addresses Services
already show in their status at start-up (:meth:`Allocator.restore`), and asks
for addresses (:meth:`Allocator.assign`) and gives them back
(:meth:`Allocator.release`). Every failure is an :class:`AllocationError` with
a stable CamelCase ``reason`` and leaves the allocator exactly as it was.

Rules (MetalLB's ``internal/allocator``, plus tenant isolation for sharing):

- Pool choice: the annotated pool if any (even with ``autoAssign: false``);
  else pools whose ``serviceAllocation`` matches the Service, by priority
  (lower number first, unset last, then name); else ``autoAssign`` pools
  without ``serviceAllocation``, by name. A pool whose ``serviceAllocation``
  excludes a Service is never used for it, not even when annotated or when it
  holds the requested address (reason ``PoolNotAllowed``). Requested
  addresses may come from an ``autoAssign: false`` pool.
- Families: ``SingleStack`` takes ``families[0]``; ``RequireDualStack`` one
  address of each family from one pool; ``PreferDualStack`` the first pool
  that has both, else the first with the primary family, else the first
  with the other one (MetalLB's ``findBestPoolForService``).
- Addresses: the lowest free (or shareable) address of the pool, ranges in
  address order, skipping x.x.x.0 and x.x.x.255 with ``avoidBuggyIPs``.
- Sharing (``allow-shared-ip``): Services share an address only with equal
  sharing keys, in the same namespace, with no common (protocol, port), and
  if either has ``externalTrafficPolicy: Local`` both must, with equal
  selectors. An address stays taken until its last user releases it.

Performance: each range keeps a high-water mark (addresses at and above it
were never handed out, except explicitly requested ones, kept in a set) and a
min-heap of freed addresses below it, so finding the lowest free address,
taking and releasing one are O(log n) amortised, never a scan of the range;
usage counts are kept incrementally. The standard library ``heapq`` is used
rather than a sorted-container dependency: the heap plus high-water mark is
all the ordering this needs. A repeated identical request against unchanged
pools (a controller resync) is answered from a cache without re-checking.
Auto-assignment with a sharing key also looks at the addresses its sharing
group already holds, so that step is linear in the size of the group.

Pools: :meth:`Allocator.set_pools` takes parsed pools and refuses (``ValueError``)
duplicate names or overlaps; the caller picks which pool wins with
:func:`ironlb.operator.pools.select_non_overlapping` and marks the loser
Invalid.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ironlb.common.addresses import IPAddress
from ironlb.common.protocols import KUBERNETES_PROTOCOLS
from ironlb.operator.ipranges import IPRange, to_address
from ironlb.operator.pools import Pool, find_overlaps

__all__ = [
    "FAMILY_POLICIES",
    "INT64_MAX",
    "PROTOCOLS",
    "AllocationError",
    "Allocator",
    "Assignment",
    "IPAddress",
    "PoolUsage",
    "ServiceKey",
    "ServiceRequest",
]

FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
TRAFFIC_POLICIES = ("Cluster", "Local")
PROTOCOLS = KUBERNETES_PROTOCOLS
INT64_MAX = 2**63 - 1

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, order=True)
class ServiceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServiceRequest:
    """What a ``type: LoadBalancer`` Service asks of the allocator.

    ``families`` is ``spec.ipFamilies`` (4/6, primary first); empty means IPv4
    first. PreferDualStack with a single family (a single-stack cluster) acts as
    SingleStack. ``requested_ips`` come from ``ironlb.io/loadBalancerIPs`` or
    ``spec.loadBalancerIP``; ``pool`` from ``ironlb.io/address-pool``;
    ``sharing_key`` from ``ironlb.io/allow-shared-ip`` ("" counts as unset).
    """

    key: ServiceKey
    requested_ips: tuple[IPAddress, ...] = ()
    pool: str | None = None
    sharing_key: str | None = None
    ports: tuple[tuple[str, int], ...] = ()
    families: tuple[int, ...] = (4,)
    family_policy: str = "SingleStack"
    external_traffic_policy: str = "Cluster"
    selector: frozenset[tuple[str, str]] = frozenset()
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    namespace_labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)


@dataclass(frozen=True)
class Assignment:
    """The pool and addresses a Service holds; addresses in the Service's family order."""

    pool: str
    ips: tuple[IPAddress, ...]


@dataclass(frozen=True)
class PoolUsage:
    """Distinct addresses in use and still available, per family (exact Python ints)."""

    assigned_ipv4: int
    assigned_ipv6: int
    available_ipv4: int
    available_ipv6: int

    @property
    def used(self) -> int:
        return self.assigned_ipv4 + self.assigned_ipv6

    @property
    def free(self) -> int:
        return self.available_ipv4 + self.available_ipv6

    def to_status(self) -> dict[str, int]:
        """The CRD ``status`` counters; values above int64 (huge IPv6 ranges) are capped."""

        def cap(n: int) -> int:
            return min(n, INT64_MAX)

        return {
            "assignedIPv4": cap(self.assigned_ipv4),
            "assignedIPv6": cap(self.assigned_ipv6),
            "availableIPv4": cap(self.available_ipv4),
            "availableIPv6": cap(self.available_ipv6),
            "used": cap(self.used),
            "free": cap(self.free),
        }


class AllocationError(Exception):
    """Why an allocation failed: ``reason`` (stable CamelCase) and ``message`` (for humans).

    Reasons: InvalidRequest, PoolNotFound, PoolNotAllowed, IPNotInAnyPool,
    IPNotInPool, IPInUse, SharingKeyMismatch, PortConflict,
    FamilyNotAvailable, NoAvailableIPs.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


# --- per-range free structure ------------------------------------------------------------------


class _FreeRange:
    """Free/taken bookkeeping of one range, without ever scanning it.

    Invariant: an address below ``hwm`` is free iff it is in ``freed``
    (buggy addresses below ``hwm`` are neither free nor taken); an address
    at or above ``hwm`` is taken iff it is in ``above``. ``heap`` holds
    ``freed`` plus stale entries that are skipped lazily.
    """

    __slots__ = ("above", "avoid", "capacity", "freed", "heap", "hwm", "rng", "used")

    def __init__(self, rng: IPRange, avoid_buggy_ips: bool) -> None:
        self.rng = rng
        self.avoid = avoid_buggy_ips and rng.version == 4
        self.capacity = rng.usable_size(avoid_buggy_ips)
        self.hwm = rng.first
        self.freed: set[int] = set()
        self.heap: list[int] = []
        self.above: set[int] = set()
        self.used = 0

    def lowest(self) -> int | None:
        """The lowest free allocatable address, or None when the range is full."""
        heap, freed = self.heap, self.freed
        while heap and heap[0] not in freed:
            heapq.heappop(heap)
        if heap:
            return heap[0]  # everything in ``freed`` is below ``hwm``
        hwm, last, above, avoid = self.hwm, self.rng.last, self.above, self.avoid
        while hwm <= last and (hwm in above or (avoid and (hwm & 0xFF) in (0, 0xFF))):
            above.discard(hwm)
            hwm += 1
        self.hwm = hwm
        return hwm if hwm <= last else None

    def take(self, value: int) -> None:
        if value < self.hwm:
            if value not in self.freed:
                raise AssertionError(f"address {value} of {self.rng} is not free")
            self.freed.remove(value)
        else:
            if value in self.above:
                raise AssertionError(f"address {value} of {self.rng} is already taken")
            self.above.add(value)
        self.used += 1

    def release(self, value: int) -> None:
        if value >= self.hwm:
            self.above.remove(value)
        else:
            self.freed.add(value)
            heapq.heappush(self.heap, value)
            if len(self.heap) > 64 and len(self.heap) > 2 * len(self.freed):
                self.heap = sorted(self.freed)  # a sorted list is a valid heap
        self.used -= 1


class _PoolState:
    """A pool plus the free structures of its ranges, per family in address order."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.by_family: dict[int, list[_FreeRange]] = {4: [], 6: []}
        for rng in sorted(pool.ranges):
            self.by_family[rng.version].append(_FreeRange(rng, pool.avoid_buggy_ips))
        self.firsts = {fam: [fr.rng.first for fr in frs] for fam, frs in self.by_family.items()}

    def range_for(self, version: int, value: int) -> _FreeRange | None:
        frs = self.by_family[version]
        i = bisect.bisect_right(self.firsts[version], value) - 1
        if i >= 0 and frs[i].rng.last >= value:
            return frs[i]
        return None

    def lowest(self, family: int) -> int | None:
        for fr in self.by_family[family]:
            if fr.used < fr.capacity:
                value = fr.lowest()
                if value is not None:
                    return value
        return None

    def capacity(self, family: int) -> int:
        return sum(fr.capacity for fr in self.by_family[family])

    def assigned(self, family: int) -> int:
        return sum(fr.used for fr in self.by_family[family])


# --- per-service and per-address bookkeeping ---------------------------------------------------

_IPKey = tuple[int, int]  # (version, integer value)
_Port = tuple[str, int]
_Backend = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class _Holder:
    """The parts of a request that decide whether an address can be shared."""

    key: ServiceKey
    sharing_key: str | None
    backend: _Backend
    ports: frozenset[_Port]

    @property
    def group(self) -> tuple[str, str, _Backend] | None:
        if self.sharing_key is None:
            return None
        return (self.key.namespace, self.sharing_key, self.backend)


@dataclass
class _IPUse:
    users: set[ServiceKey]
    ports: dict[_Port, ServiceKey]


def _ipkey(ip: IPAddress) -> _IPKey:
    return (ip.version, int(ip))


def _addr(k: _IPKey) -> IPAddress:
    return to_address(k[0], k[1])


def _family_order(request: ServiceRequest) -> tuple[int, int]:
    primary = request.families[0] if request.families else 4
    return primary, 10 - primary  # 4 <-> 6


def _policy(request: ServiceRequest) -> str:
    """The effective policy: PreferDualStack with a single ipFamilies entry (a single-stack
    cluster) behaves as SingleStack, as in MetalLB."""
    if request.family_policy == "PreferDualStack" and len(request.families) == 1:
        return "SingleStack"
    return request.family_policy


# --- the allocator -----------------------------------------------------------------------------


class Allocator:
    """Tracks pools and which Service holds which addresses (see module docstring)."""

    def __init__(self) -> None:
        self._pools: dict[str, _PoolState] = {}
        self._index: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        self._index_firsts: dict[int, list[int]] = {4: [], 6: []}
        self._assignments: dict[ServiceKey, Assignment] = {}
        self._holders: dict[ServiceKey, _Holder] = {}
        # The request each current assignment was last granted for, and the pool generation
        # then: an identical request against unchanged pools is answered without re-checking.
        self._granted: dict[ServiceKey, tuple[ServiceRequest, int]] = {}
        self._generation = 0
        self._ip_users: dict[_IPKey, _IPUse] = {}
        self._shared: dict[tuple[str, str, _Backend], set[_IPKey]] = {}

    # --- pools --------------------------------------------------------------------------------

    def set_pools(self, pools: Iterable[Pool]) -> list[ServiceKey]:
        """Replace the pool set; return (sorted) the Services whose allocation was released.

        The caller filters pools first: invalid specs never become a
        :class:`Pool`, and overlapping or duplicate pools raise ``ValueError``
        here (use :func:`ironlb.operator.pools.select_non_overlapping`). A
        Service keeps its addresses while the pool of the same name still
        offers all of them; otherwise its allocation is released and it is
        returned so the caller can assign it again. Unchanged pools keep their
        state untouched, so calling this on every pool event is cheap.
        """
        new_list = list(pools)
        names = [p.name for p in new_list]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate pool names: {dupes}")
        overlaps = find_overlaps(new_list)
        if overlaps:
            raise ValueError(f"overlapping pools: {overlaps}")
        old = self._pools
        new_states: dict[str, _PoolState] = {}
        for pool in new_list:
            prev = old.get(pool.name)
            new_states[pool.name] = (
                prev if prev is not None and prev.pool == pool else _PoolState(pool)
            )
        moved: list[tuple[ServiceKey, Assignment, _Holder]] = []
        for key, assignment in list(self._assignments.items()):
            if new_states.get(assignment.pool) is old.get(assignment.pool):
                continue
            moved.append((key, assignment, self._holders[key]))
            self._release(key)
        self._pools = new_states
        self._generation += 1
        self._rebuild_index()
        evicted: list[ServiceKey] = []
        for key, assignment, holder in moved:
            state = self._pools.get(assignment.pool)
            if state is not None and all(state.pool.allocatable(ip) for ip in assignment.ips):
                self._take(key, assignment, holder)
            else:
                evicted.append(key)
                self._granted.pop(key, None)
        return sorted(evicted)

    def pools(self) -> list[Pool]:
        return [state.pool for state in self._pools.values()]

    def _rebuild_index(self) -> None:
        for family in (4, 6):
            entries = sorted(
                (fr.rng.first, fr.rng.last, state.pool.name)
                for state in self._pools.values()
                for fr in state.by_family[family]
            )
            self._index[family] = entries
            self._index_firsts[family] = [e[0] for e in entries]

    def pool_containing(self, ip: IPAddress) -> str | None:
        """The pool whose ranges hold ``ip`` (buggy addresses included), or None."""
        value = int(ip)
        i = bisect.bisect_right(self._index_firsts[ip.version], value) - 1
        if i < 0:
            return None
        _, last, name = self._index[ip.version][i]
        return None if value > last else name

    def pool_for_ip(self, ip: IPAddress) -> str | None:
        """The pool that may hand out ``ip`` (buggy addresses excluded), or None."""
        name = self.pool_containing(ip)
        return name if name is not None and self._pools[name].pool.allocatable(ip) else None

    def usage(self, pool: str) -> PoolUsage:
        """Assigned and available distinct addresses per family; O(number of ranges)."""
        state = self._pools.get(pool)
        if state is None:
            raise AllocationError("PoolNotFound", f"no IPAddressPool named {pool!r}")
        a4, a6 = state.assigned(4), state.assigned(6)
        return PoolUsage(a4, a6, state.capacity(4) - a4, state.capacity(6) - a6)

    # --- queries ------------------------------------------------------------------------------

    def assignment(self, key: ServiceKey) -> Assignment | None:
        return self._assignments.get(key)

    def assignments(self) -> dict[ServiceKey, Assignment]:
        return dict(self._assignments)

    def users_of(self, ip: IPAddress) -> frozenset[ServiceKey]:
        use = self._ip_users.get(_ipkey(ip))
        return frozenset(use.users) if use else frozenset()

    # --- assignment ---------------------------------------------------------------------------

    def assign(self, request: ServiceRequest) -> Assignment:
        """Give the Service addresses; idempotent; on failure nothing changes."""
        key = request.key
        current = self._assignments.get(key)
        if (
            current is not None
            and self._granted.get(key) == (request, self._generation)
            and (len(current.ips) == 2 or _policy(request) != "PreferDualStack")
        ):
            return current  # same request, same pools: nothing can have changed
        holder = _holder_for(request)
        if current is not None:
            try:
                self._check_ips(request, holder, current.ips, exclude=key)
            except AllocationError:
                pass
            else:
                wanted = Assignment(current.pool, _ordered(request, current.ips))
                extend = _policy(request) == "PreferDualStack" and not request.requested_ips
                if extend and len(current.ips) == 1:
                    wanted = self._add_other_family(request, holder, current)
                self._replace(key, wanted, holder)
                self._granted[key] = (request, self._generation)
                return wanted
        snapshot = self._snapshot(key)
        try:
            if request.requested_ips:
                ips = _ordered(request, request.requested_ips)
                self._check_requested_shape(request, ips)
                pool = self._check_ips(request, holder, ips, exclude=None)
                assignment = Assignment(pool, ips)
            else:
                assignment = self._allocate(request, holder)
        except AllocationError:
            self._restore_snapshot(key, snapshot)
            raise
        self._take(key, assignment, holder)
        self._granted[key] = (request, self._generation)
        return assignment

    def restore(self, request: ServiceRequest, ips: Sequence[IPAddress]) -> Assignment:
        """Re-take addresses the Service already shows (controller start-up).

        Valid when the addresses still satisfy the request: the requested
        addresses (if any) are exactly these, they lie in one pool (the
        annotated one, if any) that admits the Service, fit its family policy,
        and are free or shareable. ``autoAssign`` is not re-checked, so a pool
        switched to ``autoAssign: false`` keeps its existing users (as MetalLB).
        """
        holder = _holder_for(request)
        key = request.key
        for ip in ips:
            if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise AllocationError("InvalidRequest", f"{key}: {ip!r} is not an IP address")
        ordered = _ordered(request, tuple(ips))
        if not ordered:
            raise AllocationError("InvalidRequest", f"{key}: no addresses to restore")
        snapshot = self._snapshot(key)
        try:
            self._check_requested_shape(request, ordered)
            if request.requested_ips and set(request.requested_ips) != set(ordered):
                raise AllocationError(
                    "InvalidRequest",
                    f"{key} holds {_fmt(ordered)} but requests {_fmt(request.requested_ips)}",
                )
            pool = self._check_ips(request, holder, ordered, exclude=None)
        except AllocationError:
            self._restore_snapshot(key, snapshot)
            raise
        assignment = Assignment(pool, ordered)
        self._take(key, assignment, holder)
        self._granted[key] = (request, self._generation)
        return assignment

    def release(self, key: ServiceKey) -> Assignment | None:
        """Give back everything ``key`` holds; returns exactly that, or None."""
        if key not in self._assignments:
            return None
        self._granted.pop(key, None)
        return self._release(key)

    # --- internals: checks --------------------------------------------------------------------

    def _check_requested_shape(self, request: ServiceRequest, ips: tuple[IPAddress, ...]) -> None:
        key = request.key
        versions = [ip.version for ip in ips]
        if len(ips) > 2 or len(set(versions)) != len(versions):
            raise AllocationError(
                "InvalidRequest",
                f"{key}: at most one IPv4 and one IPv6 address may be requested, got {_fmt(ips)}",
            )
        policy = _policy(request)
        primary, _ = _family_order(request)
        if policy == "SingleStack" and (len(ips) != 1 or versions[0] != primary):
            raise AllocationError(
                "InvalidRequest",
                f"{key} is SingleStack IPv{primary} but requests {_fmt(ips)}",
            )
        if policy == "RequireDualStack" and set(versions) != {4, 6}:
            raise AllocationError(
                "InvalidRequest",
                f"{key} is RequireDualStack and needs one IPv4 and one IPv6, got {_fmt(ips)}",
            )

    def _check_ips(
        self,
        request: ServiceRequest,
        holder: _Holder,
        ips: tuple[IPAddress, ...],
        exclude: ServiceKey | None,
    ) -> str:
        """Raise unless ``ips`` may be held by the request; return their pool's name."""
        key = request.key
        if exclude is not None:
            # Checking a current holding: requested addresses and family must still match.
            self._check_requested_shape(request, ips)
            if request.requested_ips and set(request.requested_ips) != set(ips):
                raise AllocationError("InvalidRequest", f"{key}: requested addresses changed")
        pool_name: str | None = None
        for ip in ips:
            name = self.pool_for_ip(ip)
            if name is None:
                holder_pool = self.pool_containing(ip)
                if holder_pool is not None:
                    raise AllocationError(
                        "IPNotAllowed",
                        f"{ip} is in pool {holder_pool!r}, which sets avoidBuggyIPs: addresses "
                        "ending in .0 or .255 are not handed out",
                    )
                raise AllocationError("IPNotInAnyPool", f"{ip} is not in any IPAddressPool")
            if pool_name is not None and name != pool_name:
                raise AllocationError(
                    "InvalidRequest",
                    f"{key}: {_fmt(ips)} are in different pools ({pool_name}, {name})",
                )
            pool_name = name
        assert pool_name is not None
        if request.pool is not None and request.pool != pool_name:
            if request.pool not in self._pools:
                raise AllocationError("PoolNotFound", f"no IPAddressPool named {request.pool!r}")
            raise AllocationError(
                "IPNotInPool", f"{_fmt(ips)} belongs to pool {pool_name!r}, not {request.pool!r}"
            )
        pool = self._pools[pool_name].pool
        if not _admits(pool, request):
            raise AllocationError(
                "PoolNotAllowed",
                f"pool {pool_name!r} does not serve {key} (spec.serviceAllocation)",
            )
        for ip in ips:
            problem = self._sharing_problem(_ipkey(ip), holder, exclude)
            if problem is not None:
                raise problem
        return pool_name

    def _sharing_problem(
        self, ik: _IPKey, holder: _Holder, exclude: ServiceKey | None
    ) -> AllocationError | None:
        use = self._ip_users.get(ik)
        if use is None:
            return None
        others = [k for k in use.users if k != exclude]
        if not others:
            return None
        other = self._holders[min(others)]
        ip = _addr(ik)
        if other.sharing_key is None or holder.sharing_key is None:
            return AllocationError(
                "IPInUse",
                f"{ip} is in use by {other.key}; both Services need the same "
                "ironlb.io/allow-shared-ip to share it",
            )
        if other.key.namespace != holder.key.namespace:
            return AllocationError(
                "IPInUse",
                f"{ip} is in use by {other.key}; addresses are shared only within one namespace",
            )
        if other.sharing_key != holder.sharing_key:
            return AllocationError(
                "SharingKeyMismatch",
                f"{ip} is shared under key {other.sharing_key!r}, not {holder.sharing_key!r}",
            )
        if other.backend != holder.backend:
            return AllocationError(
                "SharingKeyMismatch",
                f"{ip} is used by {other.key}; with externalTrafficPolicy Local, Services share "
                "an address only if both are Local and have the same selector",
            )
        for port in sorted(holder.ports):
            owner = use.ports.get(port)
            if owner is not None and owner != exclude:
                return AllocationError(
                    "PortConflict", f"{port[0]}/{port[1]} on {ip} is already used by {owner}"
                )
        return None

    # --- internals: choosing addresses --------------------------------------------------------

    def _pick(self, state: _PoolState, family: int, holder: _Holder) -> int | None:
        """Lowest free or shareable address of ``family`` in the pool (integer value)."""
        best = state.lowest(family)
        group = holder.group
        if group is not None:
            for ik in self._shared.get(group, ()):
                if ik[0] != family or (best is not None and ik[1] >= best):
                    continue
                if state.range_for(family, ik[1]) is None:
                    continue
                if self._sharing_problem(ik, holder, None) is None:
                    best = ik[1]
        return best

    def _best_in(
        self, states: Sequence[_PoolState], request: ServiceRequest, holder: _Holder
    ) -> Assignment | None:
        primary, secondary = _family_order(request)
        policy = _policy(request)
        fallback: Assignment | None = None
        fallback_secondary: Assignment | None = None
        for state in states:
            name = state.pool.name
            a = self._pick(state, primary, holder)
            if policy == "SingleStack":
                if a is not None:
                    return Assignment(name, (_addr((primary, a)),))
                continue
            b = self._pick(state, secondary, holder)
            if a is not None and b is not None:
                return Assignment(name, (_addr((primary, a)), _addr((secondary, b))))
            if policy == "PreferDualStack":
                if a is not None and fallback is None:
                    fallback = Assignment(name, (_addr((primary, a)),))
                if b is not None and fallback_secondary is None:
                    fallback_secondary = Assignment(name, (_addr((secondary, b)),))
        return fallback or fallback_secondary

    def _allocate(self, request: ServiceRequest, holder: _Holder) -> Assignment:
        if request.pool is not None:
            state = self._pools.get(request.pool)
            if state is None:
                raise AllocationError("PoolNotFound", f"no IPAddressPool named {request.pool!r}")
            if not _admits(state.pool, request):
                raise AllocationError(
                    "PoolNotAllowed",
                    f"pool {request.pool!r} does not serve {request.key} (spec.serviceAllocation)",
                )
            tiers: list[list[_PoolState]] = [[state]]
        else:
            pinned = [
                s
                for s in self._pools.values()
                if s.pool.auto_assign and s.pool.allocation is not None and _admits(s.pool, request)
            ]
            pinned.sort(key=_priority_key)
            general = sorted(
                (
                    s
                    for s in self._pools.values()
                    if s.pool.auto_assign and s.pool.allocation is None
                ),
                key=lambda s: s.pool.name,
            )
            tiers = [pinned, general]
        for tier in tiers:
            found = self._best_in(tier, request, holder)
            if found is not None:
                return found
        candidates = [s for tier in tiers for s in tier]
        if not candidates:
            raise AllocationError(
                "NoAvailableIPs",
                f"no IPAddressPool with autoAssign admits {request.key} "
                "(see spec.autoAssign and spec.serviceAllocation)",
            )
        wanted = _wanted_families(request)
        where = f"pool {request.pool!r}" if request.pool else "the pools this Service may use"
        if not any(wanted(s.pool.families) for s in candidates):
            offered = frozenset().union(*(s.pool.families for s in candidates))
            if _policy(request) == "RequireDualStack" and offered >= {4, 6}:
                raise AllocationError(
                    "FamilyNotAvailable",
                    f"{request.key} is RequireDualStack: its IPv4 and IPv6 addresses must come "
                    f"from one pool, but {where} offer only one family each; add both families "
                    "to one pool",
                )
            raise AllocationError(
                "FamilyNotAvailable",
                f"{request.key} needs {_describe_families(request)} but {where} offers none",
            )
        raise AllocationError("NoAvailableIPs", f"no free address for {request.key} in {where}")

    def _add_other_family(
        self, request: ServiceRequest, holder: _Holder, current: Assignment
    ) -> Assignment:
        """PreferDualStack holding one family: add the other from the same pool if possible."""
        other = 10 - current.ips[0].version
        state = self._pools[current.pool]
        if not state.by_family[other]:
            return current
        value = self._pick(state, other, holder)
        if value is None:
            return current
        ips = _ordered(request, (*current.ips, _addr((other, value))))
        return Assignment(current.pool, ips)

    # --- internals: state changes -------------------------------------------------------------

    def _snapshot(self, key: ServiceKey) -> tuple[Assignment, _Holder] | None:
        """Release ``key`` and return what it held, so a failed attempt can put it back."""
        if key not in self._assignments:
            return None
        holder = self._holders[key]
        return self._release(key), holder

    def _restore_snapshot(
        self, key: ServiceKey, snapshot: tuple[Assignment, _Holder] | None
    ) -> None:
        if snapshot is not None:
            self._take(key, snapshot[0], snapshot[1])

    def _replace(self, key: ServiceKey, assignment: Assignment, holder: _Holder) -> None:
        if self._assignments[key] == assignment and self._holders[key] == holder:
            return
        self._release(key)
        self._take(key, assignment, holder)

    def _take(self, key: ServiceKey, assignment: Assignment, holder: _Holder) -> None:
        state = self._pools[assignment.pool]
        group = holder.group
        for ip in assignment.ips:
            ik = _ipkey(ip)
            use = self._ip_users.get(ik)
            if use is None:
                fr = state.range_for(ik[0], ik[1])
                if fr is None:
                    raise AssertionError(f"{ip} is not in pool {assignment.pool}")
                fr.take(ik[1])
                use = self._ip_users[ik] = _IPUse(set(), {})
            use.users.add(key)
            for port in holder.ports:
                use.ports[port] = key
            if group is not None:
                self._shared.setdefault(group, set()).add(ik)
        self._assignments[key] = assignment
        self._holders[key] = holder

    def _release(self, key: ServiceKey) -> Assignment:
        assignment = self._assignments.pop(key)
        holder = self._holders.pop(key)
        state = self._pools[assignment.pool]
        group = holder.group
        for ip in assignment.ips:
            ik = _ipkey(ip)
            use = self._ip_users[ik]
            use.users.discard(key)
            for port in holder.ports:
                if use.ports.get(port) == key:
                    del use.ports[port]
            if not use.users:
                del self._ip_users[ik]
                fr = state.range_for(ik[0], ik[1])
                assert fr is not None
                fr.release(ik[1])
                if group is not None:
                    members = self._shared.get(group)
                    if members is not None:
                        members.discard(ik)
                        if not members:
                            del self._shared[group]
        return assignment


# --- helpers -----------------------------------------------------------------------------------


def _holder_for(request: ServiceRequest) -> _Holder:
    """Validate the request's shape and extract its sharing identity."""
    key = request.key
    if not isinstance(key, ServiceKey) or not key.namespace or not key.name:
        raise AllocationError("InvalidRequest", f"bad service key {key!r}")
    if request.family_policy not in FAMILY_POLICIES:
        raise AllocationError(
            "InvalidRequest",
            f"{key}: ipFamilyPolicy {request.family_policy!r} is not one of {FAMILY_POLICIES}",
        )
    fams = request.families
    if any(f not in (4, 6) for f in fams) or len(set(fams)) != len(fams):
        raise AllocationError("InvalidRequest", f"{key}: bad ipFamilies {fams!r}")
    if request.external_traffic_policy not in TRAFFIC_POLICIES:
        raise AllocationError(
            "InvalidRequest",
            f"{key}: externalTrafficPolicy {request.external_traffic_policy!r} "
            f"is not one of {TRAFFIC_POLICIES}",
        )
    for proto, port in request.ports:
        if proto not in PROTOCOLS or isinstance(port, bool) or not 1 <= port <= 65535:
            raise AllocationError("InvalidRequest", f"{key}: bad port {proto}/{port}")
    for ip in request.requested_ips:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise AllocationError("InvalidRequest", f"{key}: {ip!r} is not an IP address")
    backend: _Backend = (
        ("Local", tuple(sorted(request.selector)))
        if request.external_traffic_policy == "Local"
        else ("Cluster", ())
    )
    return _Holder(key, request.sharing_key or None, backend, frozenset(request.ports))


def _admits(pool: Pool, request: ServiceRequest) -> bool:
    return pool.matches_service(request.key.namespace, request.namespace_labels, request.labels)


def _priority_key(state: _PoolState) -> tuple[bool, int, str]:
    alloc = state.pool.allocation
    priority = alloc.priority if alloc is not None else None
    return (priority is None, priority or 0, state.pool.name)


def _ordered(request: ServiceRequest, ips: tuple[IPAddress, ...]) -> tuple[IPAddress, ...]:
    primary, _ = _family_order(request)
    return tuple(sorted(ips, key=lambda ip: (ip.version != primary, int(ip))))


def _wanted_families(request: ServiceRequest) -> Callable[[frozenset[int]], bool]:
    primary, secondary = _family_order(request)
    if _policy(request) == "SingleStack":
        return lambda fams: primary in fams
    if _policy(request) == "RequireDualStack":
        return lambda fams: primary in fams and secondary in fams
    return lambda fams: bool(fams)


def _describe_families(request: ServiceRequest) -> str:
    primary, _ = _family_order(request)
    if _policy(request) == "SingleStack":
        return f"an IPv{primary} address"
    if _policy(request) == "RequireDualStack":
        return "an IPv4 and an IPv6 address"
    return "an IPv4 or IPv6 address"


def _fmt(ips: Iterable[IPAddress]) -> str:
    return ", ".join(str(ip) for ip in ips) or "(none)"
