"""Property tests of the allocator: random sequences of assign / restore / release /
set_pools over small pools, checked against invariants computed naively, plus a
lowest-free-address reference model."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ironlb.operator.allocator import (
    AllocationError,
    Allocator,
    Assignment,
    ServiceKey,
    ServiceRequest,
)
from ironlb.operator.ipranges import is_buggy
from ironlb.operator.pools import Pool, parse_pool

IP = ipaddress.ip_address

# Variants per pool name; variants of different names never overlap.
POOL_VARIANTS: dict[str, list[dict[str, Any] | None]] = {
    "a": [
        None,
        {"addresses": ["198.18.0.0/30", "2001:db8::/126"]},
        {"addresses": ["198.18.0.0/31", "2001:db8::/127"]},
        {"addresses": ["198.18.0.0/30", "2001:db8::/126"], "autoAssign": False},
    ],
    "b": [
        None,
        {"addresses": ["198.18.1.0/31"]},
        {"addresses": ["198.18.1.0/31"], "serviceAllocation": {"namespaces": ["ns1"]}},
    ],
    "c": [
        None,
        {
            "addresses": ["2001:db8:1::/127", "198.18.4.7"],
            "serviceAllocation": {"priority": 1, "namespaces": ["ns1"]},
        },
    ],
    "d": [
        None,
        {"addresses": ["198.18.2.254-198.18.3.1"], "avoidBuggyIPs": True},
        {"addresses": ["198.18.2.254-198.18.3.1"]},
    ],
}

UNIVERSE = [
    "198.18.0.0",
    "198.18.0.1",
    "198.18.0.3",
    "198.18.1.1",
    "198.18.2.255",
    "198.18.3.0",
    "198.18.3.1",
    "198.18.4.7",
    "198.18.9.9",
    "2001:db8::",
    "2001:db8::3",
    "2001:db8:1::1",
]

keys = st.builds(ServiceKey, st.sampled_from(["ns1", "ns2"]), st.sampled_from(["s0", "s1", "s2"]))
ports = st.lists(
    st.sampled_from([("TCP", 80), ("TCP", 443), ("UDP", 80), ("TCP", 22), ("SCTP", 9)]),
    max_size=2,
    unique=True,
).map(tuple)
family_choices = st.sampled_from(
    [
        ((4,), "SingleStack"),
        ((6,), "SingleStack"),
        ((4, 6), "PreferDualStack"),
        ((6, 4), "PreferDualStack"),
        ((4, 6), "RequireDualStack"),
        ((4,), "PreferDualStack"),
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> ServiceRequest:
    key = draw(keys)
    families, policy = draw(family_choices)
    requested: tuple[Any, ...] = ()
    if draw(st.integers(0, 4)) == 0:
        requested = tuple(
            IP(x) for x in draw(st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=2))
        )
    return ServiceRequest(
        key=key,
        requested_ips=requested,
        pool=draw(st.sampled_from([None] * 6 + ["a", "b", "c", "d", "missing"])),
        sharing_key=draw(st.sampled_from([None, "k1", "k1", "k1", "k2"])),
        ports=draw(ports),
        families=families,
        family_policy=policy,
        external_traffic_policy=draw(st.sampled_from(["Cluster", "Cluster", "Local"])),
        selector=draw(st.sampled_from([frozenset(), frozenset({("app", "x")})])),
        labels={},
        namespace_labels={},
    )


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator()
        self.pools: dict[str, Pool] = {}
        self.held: dict[ServiceKey, Assignment] = {}
        self.reqs: dict[ServiceKey, ServiceRequest] = {}

    # --- helpers ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.alloc.assignments(),
            {name: self.alloc.usage(name) for name in self.pools},
        )

    def check_satisfies(self, request: ServiceRequest, got: Assignment) -> None:
        pool = self.pools[got.pool]
        versions = [ip.version for ip in got.ips]
        assert 1 <= len(got.ips) <= 2 and len(set(versions)) == len(versions)
        if request.requested_ips:
            assert set(got.ips) == set(request.requested_ips)
        if request.pool is not None:
            assert got.pool == request.pool
        assert pool.matches_service(request.key.namespace, {}, {})
        policy = request.family_policy
        if policy == "PreferDualStack" and len(request.families) == 1:
            policy = "SingleStack"
        if policy == "SingleStack":
            assert versions == [request.families[0]]
        elif policy == "RequireDualStack":
            assert sorted(versions) == [4, 6]
        # Addresses come in the Service's family order.
        assert versions[0] == request.families[0] or len(versions) == 1

    # --- rules ------------------------------------------------------------------------------

    @initialize()
    def start_with_every_pool(self) -> None:
        self.set_pools((1, 1, 1, 1))

    @rule(choice=st.tuples(*(st.integers(0, len(v) - 1) for v in POOL_VARIANTS.values())))
    def set_pools(self, choice: tuple[int, ...]) -> None:
        new: dict[str, Pool] = {}
        for (name, variants), i in zip(POOL_VARIANTS.items(), choice, strict=True):
            spec = variants[i]
            if spec is not None:
                new[name] = parse_pool(name, spec)
        expected_evicted = sorted(
            key
            for key, got in self.held.items()
            if got.pool not in new or not all(new[got.pool].allocatable(ip) for ip in got.ips)
        )
        evicted = self.alloc.set_pools(new.values())
        assert evicted == expected_evicted
        self.pools = new
        for key in evicted:
            del self.held[key]
            del self.reqs[key]

    @rule(request=requests())
    def assign(self, request: ServiceRequest) -> None:
        self.do_assign(request)

    @rule(
        name=st.sampled_from(["s0", "s1", "s2"]),
        index=st.integers(0, 20),
        variant=st.sampled_from(
            ["same", "same-ports", "other-ns", "other-key", "no-key", "policy", "selector"]
        ),
        new_ports=ports,
    )
    def claim_held_address(
        self, name: str, index: int, variant: str, new_ports: tuple[tuple[str, int], ...]
    ) -> None:
        """Ask for an address someone holds, as a near-copy of its owner: every sharing rule."""
        held = sorted({ip for got in self.held.values() for ip in got.ips}, key=str)
        if not held:
            return
        ip = held[index % len(held)]
        base = self.reqs[min(self.alloc.users_of(ip))]
        ns, key, etp = base.key.namespace, base.sharing_key, base.external_traffic_policy
        selector = base.selector
        if variant == "other-ns":
            ns = "ns2" if ns == "ns1" else "ns1"
        elif variant == "other-key":
            key = "k2" if key == "k1" else "k1"
        elif variant == "no-key":
            key = None
        elif variant == "policy":
            etp = "Local" if etp == "Cluster" else "Cluster"
        elif variant == "selector":
            selector = frozenset() if selector else frozenset({("app", "x")})
        event(f"claim {variant}")
        self.do_assign(
            ServiceRequest(
                key=ServiceKey(ns, name),
                requested_ips=(ip,),
                sharing_key=key,
                ports=base.ports if variant == "same-ports" else new_ports,
                families=(ip.version,),
                external_traffic_policy=etp,
                selector=selector,
            )
        )

    @rule(index=st.integers(0, 20))
    def reassign_same(self, index: int) -> None:
        """A resync: the request a Service was granted, again. It keeps its addresses."""
        if not self.held:
            return
        key = sorted(self.held)[index % len(self.held)]
        request, before = self.reqs[key], self.held[key]
        admitted = self.pools[before.pool].matches_service(key.namespace, {}, {})
        try:
            got = self.alloc.assign(request)
        except AllocationError:
            # Only a pool that stopped admitting the Service can make its own request fail,
            # and then it keeps what it had.
            assert not admitted
            assert self.alloc.assignment(key) == before
            return
        if got != before:
            grew = set(before.ips) < set(got.ips) and request.family_policy == "PreferDualStack"
            assert grew or not admitted, (before, got)
        self.held[key] = got

    def do_assign(self, request: ServiceRequest) -> None:
        before = self.snapshot()
        try:
            got = self.alloc.assign(request)
        except AllocationError as exc:
            event(f"assign failed: {exc.reason}")
            assert exc.reason in {
                "InvalidRequest",
                "PoolNotFound",
                "PoolNotAllowed",
                "IPNotInAnyPool",
                "IPNotAllowed",
                "IPNotInPool",
                "IPInUse",
                "SharingKeyMismatch",
                "PortConflict",
                "FamilyNotAvailable",
                "NoAvailableIPs",
            }
            assert self.snapshot() == before, "a failed assign changed state"
            return
        self.check_satisfies(request, got)
        shared = any(len(self.alloc.users_of(ip)) > 1 for ip in got.ips)
        event("assign ok, shared" if shared else "assign ok")
        self.held[request.key] = got
        self.reqs[request.key] = request

    @rule(request=requests(), picks=st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=2))
    def restore(self, request: ServiceRequest, picks: list[str]) -> None:
        before = self.snapshot()
        try:
            got = self.alloc.restore(request, [IP(x) for x in picks])
        except AllocationError:
            assert self.snapshot() == before, "a failed restore changed state"
            return
        assert set(got.ips) == {IP(x) for x in picks}
        self.check_satisfies(request, got)
        self.held[request.key] = got
        self.reqs[request.key] = request

    @rule(key=keys)
    def release(self, key: ServiceKey) -> None:
        assert self.alloc.release(key) == self.held.pop(key, None)
        self.reqs.pop(key, None)
        assert self.alloc.assignment(key) is None

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def assignments_match_model(self) -> None:
        assert self.alloc.assignments() == self.held

    @invariant()
    def every_ip_inside_its_pool(self) -> None:
        for got in self.held.values():
            assert got.pool in self.pools
            for ip in got.ips:
                assert self.pools[got.pool].allocatable(ip)
                assert self.alloc.pool_for_ip(ip) == got.pool

    @invariant()
    def sharing_only_by_valid_key(self) -> None:
        users: dict[Any, list[ServiceKey]] = defaultdict(list)
        for key, got in self.held.items():
            for ip in got.ips:
                users[ip].append(key)
        for ip, on_ip in users.items():
            assert self.alloc.users_of(ip) == set(on_ip)
            if len(on_ip) < 2:
                continue
            reqs = [self.reqs[k] for k in on_ip]
            first = reqs[0]
            for r in reqs:
                assert r.sharing_key is not None and r.sharing_key == first.sharing_key
                assert r.key.namespace == first.key.namespace
                local = {x.external_traffic_policy for x in (r, first)}
                if "Local" in local:
                    assert local == {"Local"} and r.selector == first.selector
            seen: set[tuple[str, int]] = set()
            for r in reqs:
                assert not (seen & set(r.ports)), f"port clash on {ip}"
                seen |= set(r.ports)

    @invariant()
    def usage_counts_are_true(self) -> None:
        for name, pool in self.pools.items():
            distinct = {ip for got in self.held.values() if got.pool == name for ip in got.ips}
            v4 = sum(1 for ip in distinct if ip.version == 4)
            v6 = len(distinct) - v4
            usage = self.alloc.usage(name)
            assert (usage.assigned_ipv4, usage.assigned_ipv6) == (v4, v6)
            assert usage.available_ipv4 == pool.size(4) - v4
            assert usage.available_ipv6 == pool.size(6) - v6


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- lowest free address against a naive reference ------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    avoid=st.booleans(),
    ops=st.lists(
        st.tuples(st.sampled_from(["auto", "want", "release"]), st.integers(0, 39)),
        max_size=120,
    ),
)
def test_lowest_free_matches_naive_reference(avoid: bool, ops: list[tuple[str, int]]) -> None:
    pool = parse_pool("p", {"addresses": ["198.18.0.250-198.18.1.9"], "avoidBuggyIPs": avoid})
    universe = [IP("198.18.0.250") + i for i in range(16)]
    allowed = [ip for ip in universe if not (avoid and is_buggy(4, int(ip)))]
    alloc = Allocator()
    alloc.set_pools([pool])
    held: dict[ServiceKey, Any] = {}
    for op, n in ops:
        key = ServiceKey("ns", f"s{n}")
        free = sorted(set(allowed) - set(held.values()))
        if op == "release":
            got = alloc.release(key)
            want = held.pop(key, None)
            assert (got.ips[0] if got else None) == want
            continue
        if key in held:
            alloc.release(key)
            del held[key]
            free = sorted(set(allowed) - set(held.values()))
        if op == "auto":
            if not free:
                try:
                    alloc.assign(ServiceRequest(key))
                except AllocationError as exc:
                    assert exc.reason == "NoAvailableIPs"
                else:
                    raise AssertionError("assigned from a full pool")
                continue
            assert alloc.assign(ServiceRequest(key)).ips == (free[0],)
            held[key] = free[0]
        else:
            target = universe[n % len(universe)]
            request = ServiceRequest(key, requested_ips=(target,))
            if target in free:
                assert alloc.assign(request).ips == (target,)
                held[key] = target
            else:
                try:
                    alloc.assign(request)
                except AllocationError as exc:
                    assert exc.reason in ("IPInUse", "IPNotInAnyPool", "IPNotAllowed")
                else:
                    raise AssertionError(f"{target} given although not free")
    assert alloc.usage("p").assigned_ipv4 == len(held)


def test_heavy_churn_keeps_lowest_first_order() -> None:
    # Exercise the lazy heap (stale entries, compaction) deterministically.
    alloc = Allocator()
    alloc.set_pools([parse_pool("p", {"addresses": ["198.18.0.0/24"]})])
    base = IP("198.18.0.0")
    for i in range(256):
        alloc.assign(ServiceRequest(ServiceKey("ns", f"s{i}")))
    for _ in range(3):
        for i in range(255, -1, -1):
            if i % 3:
                alloc.release(ServiceKey("ns", f"s{i}"))
        # take some freed addresses explicitly, leaving stale heap entries behind
        for i in range(1, 256, 9):
            if i % 3:
                got = alloc.assign(
                    ServiceRequest(ServiceKey("ns", f"s{i}"), requested_ips=(base + i,))
                )
                assert got.ips == (base + i,)
        expected_free = sorted(i for i in range(256) if i % 3 and i % 9 != 1)
        got_order = []
        for i in expected_free:
            got_order.append(
                int(alloc.assign(ServiceRequest(ServiceKey("ns", f"s{i}"))).ips[0]) - int(base)
            )
        assert got_order == expected_free
    assert alloc.usage("p").assigned_ipv4 == 256
