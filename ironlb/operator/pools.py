"""Parsing and validation of ``IPAddressPool`` specs (ironlb.io/v1alpha1).

:func:`parse_pool` turns the ``spec`` of one pool object into an immutable
:class:`Pool` or raises :class:`PoolError` naming the offending field and value
(e.g. ``spec.addresses[2]: '198.18.10.20-198.18.10.10' is reversed``). The
same code serves the controller, the admission webhook and ``lbctl``, so a
pool is judged identically everywhere. Defaults are applied here as well as
in the CRD schema (``autoAssign: true``, ``avoidBuggyIPs: false``), so specs
that never went through an API server's defaulting are read the same way.

Decisions (documented in the CRD too):

- a CIDR with host bits set (``198.18.10.7/24``) is rejected, not masked;
- ranges inside one pool must not overlap; overlap *between* pools is found
  by :func:`find_overlaps` and resolved by :func:`select_non_overlapping`
  (first come, first served in the order the caller gives, normally by
  creation time), because rejecting the newcomer never disturbs Services that
  already hold addresses of the older pool;
- unknown keys in the spec are errors (the CRD schema prunes them anyway).

Pure code: imports nothing from kopf or kubernetes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ironlb.common.addresses import IPAddress
from ironlb.common.ifnames import interface_name_problem
from ironlb.operator.ipranges import IPRange, RangeError, is_buggy, parse_range

__all__ = [
    "L2Scope",
    "LabelSelector",
    "Pool",
    "PoolError",
    "SelectorRequirement",
    "ServiceAllocation",
    "find_overlaps",
    "parse_pool",
    "parse_selector",
    "select_non_overlapping",
    "withdrawal_reason",
]

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")


class PoolError(ValueError):
    """An invalid pool spec. ``field`` is a path like ``spec.addresses[2]``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SelectorRequirement:
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            # Kubernetes semantics: a missing key satisfies NotIn.
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes ``metav1.LabelSelector``; the empty selector matches everything."""

    match_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def __hash__(self) -> int:
        return hash((frozenset(self.match_labels.items()), self.match_expressions))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return (
            dict(self.match_labels) == dict(other.match_labels)
            and self.match_expressions == other.match_expressions
        )

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)


@dataclass(frozen=True)
class ServiceAllocation:
    """MetalLB's ``serviceAllocation``: which Services a pool serves, and at what priority.

    Lower ``priority`` numbers win; ``None`` (unset) sorts after every number.
    An empty ``namespaces`` set and no ``namespace_selectors`` means "any
    namespace"; otherwise the Service's namespace must be listed or match one
    selector. No ``service_selectors`` means "any Service"; otherwise one must
    match the Service's labels.
    """

    priority: int | None = None
    namespaces: frozenset[str] = frozenset()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def matches(
        self,
        namespace: str,
        namespace_labels: Mapping[str, str],
        service_labels: Mapping[str, str],
    ) -> bool:
        if (self.namespaces or self.namespace_selectors) and not (
            namespace in self.namespaces
            or any(sel.matches(namespace_labels) for sel in self.namespace_selectors)
        ):
            return False
        if self.service_selectors:
            return any(sel.matches(service_labels) for sel in self.service_selectors)
        return True


@dataclass(frozen=True)
class L2Scope:
    """Where the pool's addresses are announced: node selectors and interfaces (empty = all)."""

    node_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()

    def node_allowed(self, node_labels: Mapping[str, str]) -> bool:
        return not self.node_selectors or any(s.matches(node_labels) for s in self.node_selectors)


@dataclass(frozen=True)
class Pool:
    """A validated ``IPAddressPool``. ``ranges`` are sorted by (family, first address)."""

    name: str
    ranges: tuple[IPRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    allocation: ServiceAllocation | None = None
    l2: L2Scope = field(default_factory=L2Scope)

    def contains(self, ip: IPAddress) -> bool:
        """Whether ``ip`` lies in one of the pool's ranges (buggy addresses included)."""
        return any(r.contains(ip) for r in self.ranges)

    def allocatable(self, ip: IPAddress) -> bool:
        """Whether the allocator may hand out ``ip`` from this pool (MetalLB's ``poolFor``)."""
        if self.avoid_buggy_ips and is_buggy(ip.version, int(ip)):
            return False
        return self.contains(ip)

    def size(self, family: int) -> int:
        """Number of allocatable addresses of ``family`` (4 or 6); exact, may exceed 2**64."""
        return sum(r.usable_size(self.avoid_buggy_ips) for r in self.ranges if r.version == family)

    @property
    def families(self) -> frozenset[int]:
        return frozenset(r.version for r in self.ranges)

    def matches_service(
        self,
        namespace: str,
        namespace_labels: Mapping[str, str],
        service_labels: Mapping[str, str],
    ) -> bool:
        """False if ``serviceAllocation`` excludes the Service; True without restrictions."""
        if self.allocation is None:
            return True
        return self.allocation.matches(namespace, namespace_labels, service_labels)


# --- parsing -----------------------------------------------------------------------------------

_SPEC_KEYS = {"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation", "l2"}
_ALLOCATION_KEYS = {"priority", "namespaces", "namespaceSelectors", "serviceSelectors"}
_L2_KEYS = {"nodeSelectors", "interfaces"}
_SELECTOR_KEYS = {"matchLabels", "matchExpressions"}
_REQUIREMENT_KEYS = {"key", "operator", "values"}


def _mapping(obj: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise PoolError(path, f"must be an object, got {obj!r}")
    return obj


def _list(obj: Any, path: str) -> Sequence[Any]:
    if not isinstance(obj, list | tuple):
        raise PoolError(path, f"must be a list, got {obj!r}")
    return obj


def _string(obj: Any, path: str) -> str:
    if not isinstance(obj, str):
        raise PoolError(path, f"must be a string, got {obj!r}")
    return obj


def _bool(obj: Any, path: str) -> bool:
    if not isinstance(obj, bool):
        raise PoolError(path, f"must be true or false, got {obj!r}")
    return obj


def _label(key: object) -> str:
    """A key as it appears in a field path: quoted unless plain printable text."""
    plain = isinstance(key, str) and key.isprintable() and key.strip() == key != ""
    return str(key) if plain else repr(key)


def _no_unknown_keys(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted((str(k) for k in set(obj) - allowed), key=str)
    if unknown:
        raise PoolError(
            f"{path}.{_label(unknown[0])}", f"unknown field (allowed: {sorted(allowed)})"
        )


def parse_selector(obj: Mapping[str, Any], field: str) -> LabelSelector:
    """Parse a ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``)."""
    obj = _mapping(obj, field)
    _no_unknown_keys(obj, _SELECTOR_KEYS, field)
    labels: dict[str, str] = {}
    raw_labels = obj.get("matchLabels") or {}
    for key, value in _mapping(raw_labels, f"{field}.matchLabels").items():
        if not isinstance(key, str) or not key:
            raise PoolError(f"{field}.matchLabels", f"label key {key!r} must be a non-empty string")
        labels[key] = _string(value, f"{field}.matchLabels[{_label(key)}]")
    requirements = []
    for i, raw in enumerate(_list(obj.get("matchExpressions") or [], f"{field}.matchExpressions")):
        path = f"{field}.matchExpressions[{i}]"
        req = _mapping(raw, path)
        _no_unknown_keys(req, _REQUIREMENT_KEYS, path)
        req_key = req.get("key")
        if not isinstance(req_key, str) or not req_key:
            raise PoolError(f"{path}.key", f"must be a non-empty string, got {req_key!r}")
        op = req.get("operator")
        if op not in OPERATORS:
            raise PoolError(f"{path}.operator", f"must be one of {list(OPERATORS)}, got {op!r}")
        values = [
            _string(v, f"{path}.values[{j}]")
            for j, v in enumerate(_list(req.get("values") or [], f"{path}.values"))
        ]
        if op in ("In", "NotIn") and not values:
            raise PoolError(f"{path}.values", f"operator {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise PoolError(f"{path}.values", f"operator {op} takes no values, got {values!r}")
        requirements.append(SelectorRequirement(req_key, op, frozenset(values)))
    return LabelSelector(MappingProxyType(labels), tuple(requirements))


def _selectors(obj: Any, path: str) -> tuple[LabelSelector, ...]:
    if obj is None:
        return ()
    return tuple(parse_selector(s, f"{path}[{i}]") for i, s in enumerate(_list(obj, path)))


def _parse_allocation(obj: Any, path: str) -> ServiceAllocation | None:
    if obj is None:
        return None
    obj = _mapping(obj, path)
    _no_unknown_keys(obj, _ALLOCATION_KEYS, path)
    priority = obj.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise PoolError(f"{path}.priority", f"must be an integer, got {priority!r}")
    if priority is not None and priority < 0:
        raise PoolError(f"{path}.priority", f"must not be negative, got {priority}")
    namespaces = [
        _string(ns, f"{path}.namespaces[{i}]")
        for i, ns in enumerate(_list(obj.get("namespaces") or [], f"{path}.namespaces"))
    ]
    for i, ns in enumerate(namespaces):
        if not ns:
            raise PoolError(f"{path}.namespaces[{i}]", "must not be empty")
    return ServiceAllocation(
        priority=priority,
        namespaces=frozenset(namespaces),
        namespace_selectors=_selectors(obj.get("namespaceSelectors"), f"{path}.namespaceSelectors"),
        service_selectors=_selectors(obj.get("serviceSelectors"), f"{path}.serviceSelectors"),
    )


def _parse_l2(obj: Any, path: str) -> L2Scope:
    if obj is None:
        return L2Scope()
    obj = _mapping(obj, path)
    _no_unknown_keys(obj, _L2_KEYS, path)
    interfaces = tuple(
        _string(name, f"{path}.interfaces[{i}]")
        for i, name in enumerate(_list(obj.get("interfaces") or [], f"{path}.interfaces"))
    )
    for i, name in enumerate(interfaces):
        problem = interface_name_problem(name)
        if problem is not None:
            raise PoolError(
                f"{path}.interfaces[{i}]", f"{name!r} is not a valid interface name: it {problem}"
            )
    return L2Scope(_selectors(obj.get("nodeSelectors"), f"{path}.nodeSelectors"), interfaces)


def _parse_addresses(obj: Any) -> tuple[IPRange, ...]:
    path = "spec.addresses"
    if obj is None:
        raise PoolError(path, "is required (a list of CIDRs, 'first-last' ranges or addresses)")
    items = _list(obj, path)
    if not items:
        raise PoolError(path, "must contain at least one CIDR, range or address")
    parsed: list[tuple[IPRange, int]] = []
    for i, text in enumerate(items):
        item_path = f"{path}[{i}]"
        try:
            parsed.append((parse_range(_string(text, item_path)), i))
        except RangeError as exc:
            raise PoolError(item_path, str(exc)) from None
    ordered = sorted(parsed)
    for (a, ia), (b, ib) in itertools.pairwise(ordered):
        if a.overlaps(b):
            first, second = sorted(((a, ia), (b, ib)), key=lambda p: p[1])
            raise PoolError(
                f"{path}[{second[1]}]",
                f"{str(second[0])!r} overlaps {str(first[0])!r} ({path}[{first[1]}])",
            )
    return tuple(r for r, _ in ordered)


def parse_pool(name: str, spec: Mapping[str, Any]) -> Pool:
    """Validate one pool spec; raises :class:`PoolError` naming the field and value."""
    if not isinstance(name, str) or not name:
        raise PoolError("metadata.name", f"must be a non-empty string, got {name!r}")
    spec = _mapping(spec, "spec")
    _no_unknown_keys(spec, _SPEC_KEYS, "spec")
    ranges = _parse_addresses(spec.get("addresses"))
    auto_assign = spec.get("autoAssign")
    avoid_buggy = spec.get("avoidBuggyIPs")
    return Pool(
        name=name,
        ranges=ranges,
        auto_assign=True if auto_assign is None else _bool(auto_assign, "spec.autoAssign"),
        avoid_buggy_ips=False if avoid_buggy is None else _bool(avoid_buggy, "spec.avoidBuggyIPs"),
        allocation=_parse_allocation(spec.get("serviceAllocation"), "spec.serviceAllocation"),
        l2=_parse_l2(spec.get("l2"), "spec.l2"),
    )


# --- overlaps between pools ----------------------------------------------------------------------


def find_overlaps(pools: Iterable[Pool]) -> list[tuple[str, str]]:
    """Sorted, unique ``(a, b)`` name pairs (``a < b``) of pools whose addresses overlap.

    A sweep over all ranges sorted by start: O(n log n + pairs).
    """
    spans = sorted((r.version, r.first, r.last, pool.name) for pool in pools for r in pool.ranges)
    pairs: set[tuple[str, str]] = set()
    active: list[tuple[int, str]] = []  # (last, pool) of ranges that may still overlap
    current_version = 0
    for version, first, last, name in spans:
        if version != current_version:
            active, current_version = [], version
        active = [(end, other) for end, other in active if end >= first]
        for _, other in active:
            if other != name:
                a, b = sorted((name, other))
                pairs.add((a, b))
        active.append((last, name))
    return sorted(pairs)


def select_non_overlapping(pools: Iterable[Pool]) -> tuple[list[Pool], dict[str, str]]:
    """Accept pools in the given order, skipping any that overlaps an accepted one.

    Returns ``(accepted, rejected)`` where ``rejected`` maps a pool name to a
    human message naming the pool it collides with. The caller passes pools
    oldest first (creationTimestamp, then name) so an existing pool keeps its
    addresses when a newer one collides with it. Duplicate names are rejected
    the same way.
    """
    accepted: list[Pool] = []
    rejected: dict[str, str] = {}
    seen: set[str] = set()
    for pool in pools:
        if pool.name in seen:
            rejected[pool.name] = f"duplicate pool name {pool.name!r}"
            continue
        clash = next(
            (
                (other.name, mine, theirs)
                for other in accepted
                for mine in pool.ranges
                for theirs in other.ranges
                if mine.overlaps(theirs)
            ),
            None,
        )
        if clash is not None:
            other_name, mine, theirs = clash
            rejected[pool.name] = (
                f"{str(mine)!r} overlaps {str(theirs)!r} of IPAddressPool {other_name!r}"
            )
            continue
        seen.add(pool.name)
        accepted.append(pool)
    return accepted, rejected


# --- why a held address was withdrawn ---------------------------------------------------------


def withdrawal_reason(
    ip: IPAddress, before: Pool, after: Pool | None, problem: tuple[str, str] | None = None
) -> str:
    """Why pool ``before`` no longer offers ``ip``, which a Service holds from it.

    ``after`` is the pool of the same name as now accepted (None when it was
    deleted or is refused; ``problem`` is then its ``(reason, message)`` from
    the pool status, if any). One line, for the Service's ``IPWithdrawn`` Event.
    """
    name = before.name
    if after is None:
        if problem is None:
            return f"{ip} was withdrawn: pool {name!r} was deleted"
        return f"{ip} was withdrawn: pool {name!r} is not usable ({problem[0]}: {problem[1]})"
    if after.contains(ip) and not after.allocatable(ip):
        return (
            f"{ip} was withdrawn: pool {name!r} now sets avoidBuggyIPs, which excludes "
            "addresses ending in .0 or .255"
        )
    if not after.contains(ip):
        return f"{ip} was withdrawn: pool {name!r} no longer lists it in spec.addresses"
    return f"{ip} was withdrawn: pool {name!r} changed"
