"""Pure pieces of the ``lbctl status`` screen: pool usage per family and speakers per node.

Pool figures are the pool's own ``status`` counters (``assignedIPv4/IPv6``,
``availableIPv4/IPv6``), the same numbers ``kubectl get ipaddresspools`` and
the ``Ready`` condition show, never a recount. Those counters are capped at
2^63-1 (int64) for huge IPv6 ranges; the condition's message is not. For a
capped counter the exact figure is the pool's size (from its spec, the
allocator's own :meth:`~ironlb.operator.pools.Pool.size`) minus the assigned
count, which is the number the condition states; without a parsable spec it
prints as the cap with ``+`` ("at least"). Any figure of more than seven
digits prints in one short form: ``1.8e19`` for a /64.

A speaker is live while its Lease ``ironlb-speaker-<node>`` has a holder and
``renewTime + leaseDurationSeconds`` is in the future, the rule the speakers
themselves apply (:func:`ironlb.speaker.node_lease.lease_valid_for`). Its
heartbeat age is the time since that renewal: the heartbeat the API sees
(the UDP heartbeats between speakers are not visible from outside).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ironlb.lbctl.health import Health, handled_by_ironlb
from ironlb.lbctl.render import external_ips, latest_warning, parse_time, pool_state, table
from ironlb.operator.allocator import INT64_MAX
from ironlb.speaker.node_lease import lease_valid_for, node_of_lease

__all__ = [
    "BAR_WIDTH",
    "FamilyUsage",
    "Speaker",
    "figure",
    "node_ready",
    "pending_rows",
    "pool_table",
    "pool_usage",
    "speaker_table",
    "speakers",
    "status_document",
    "status_screen",
    "usage_bar",
]

BAR_WIDTH = 20
_FAMILIES = ("IPv4", "IPv6")


def figure(n: int) -> str:
    """``n`` for a person: exact up to seven digits, else ``1.8e19``; the int64 cap (the CRD's
    counters stop there) reads ``9.2e18+``, "at least"."""
    if n < 10_000_000:
        return str(n)
    mantissa, exponent = f"{n:.1e}".split("e")
    text = f"{mantissa}e{int(exponent)}"
    return text + "+" if n == INT64_MAX else text


@dataclass(frozen=True)
class FamilyUsage:
    """Addresses of one family in one pool, from its status (``None``: not reported yet).

    ``free`` is the status counter (capped at 2^63-1); ``exact_free`` is the
    uncapped figure when the counter is capped and the spec gives the size.
    """

    family: str
    used: int | None
    free: int | None
    exact_free: int | None = None

    @property
    def shown_free(self) -> str:
        """The free figure to print: exact if known, else the counter (``+`` when capped)."""
        if self.exact_free is not None:
            return figure(self.exact_free)
        return "-" if self.free is None else figure(self.free)

    def as_dict(self) -> dict[str, Any]:
        capped = self.free is not None and self.free >= INT64_MAX
        out: dict[str, Any] = {
            "family": self.family,
            "used": self.used,
            "free": self.free,
            "freeCapped": capped,
        }
        if self.exact_free is not None:
            out["freeExact"] = self.exact_free
        return out


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _spec_families(spec: Mapping[str, Any]) -> set[str]:
    """The families the pool's addresses name (``:`` means IPv6), valid or not."""
    found = set()
    for entry in spec.get("addresses") or []:
        if isinstance(entry, str) and entry.strip():
            found.add("IPv6" if ":" in entry else "IPv4")
    return found


def pool_usage(pool: Mapping[str, Any]) -> list[FamilyUsage]:
    """One :class:`FamilyUsage` per family the pool has addresses of, IPv4 first."""
    status = pool.get("status") or {}
    families = _spec_families(pool.get("spec") or {})
    for family in _FAMILIES:
        if _int(status.get(f"assigned{family}")) or _int(status.get(f"available{family}")):
            families.add(family)
    out = []
    for family in _FAMILIES:
        if family not in families:
            continue
        used = _int(status.get(f"assigned{family}"))
        free = _int(status.get(f"available{family}"))
        exact = None
        if free is not None and free >= INT64_MAX and used is not None and used < INT64_MAX:
            exact = _size(pool, 6 if family == "IPv6" else 4)
            exact = None if exact is None else max(0, exact - used)
        out.append(FamilyUsage(family, used, free, exact))
    return out


def _size(pool: Mapping[str, Any], version: int) -> int | None:
    """The pool's allocatable addresses of ``version`` (4/6) from its spec, None if invalid."""
    from ironlb.operator.pools import PoolError, parse_pool

    name = str((pool.get("metadata") or {}).get("name") or "")
    try:
        return parse_pool(name, pool.get("spec") or {}).size(version)
    except PoolError:
        return None


def usage_bar(used: int | None, free: int | None, width: int = BAR_WIDTH) -> str:
    """``[####----]``: the used share of ``used + free`` in ``width`` cells (``#`` used).

    Any use shows at least one ``#`` and a pool with room left at least one
    ``-``, so neither "empty" nor "full" is shown unless true. A pool of no
    addresses is blank; unknown counts give ``[????]``.
    """
    if used is None or free is None:
        return "[" + "?" * width + "]"
    if used == 0 and free == 0:
        return "[" + " " * width + "]"
    cells = round(width * used / (used + free))
    if used and cells == 0:
        cells = 1
    if free and cells == width:
        cells = width - 1
    return "[" + "#" * cells + "-" * (width - cells) + "]"


def node_ready(node: Mapping[str, Any]) -> bool:
    """The Node's ``Ready`` condition is ``True``."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


@dataclass(frozen=True)
class Speaker:
    """One node's speaker as its Lease shows it.

    ``has_lease`` False: no Lease at all; ``heartbeat_age`` is seconds since
    ``renewTime`` (None without one); ``node_known`` False: a Lease for a node
    that is not (or no longer) a Node; ``node_ready`` its Ready condition.
    """

    node: str
    has_lease: bool
    live: bool
    heartbeat_age: float | None
    valid_for: float
    node_known: bool
    node_ready: bool
    holder: str

    def as_dict(self) -> dict[str, Any]:
        age = None if self.heartbeat_age is None else round(self.heartbeat_age, 1)
        return {
            "node": self.node,
            "live": self.live,
            "heartbeatAgeSeconds": age,
            "lease": self.has_lease,
            "nodeExists": self.node_known,
            "nodeReady": self.node_ready,
        }


def speakers(
    nodes: Sequence[Mapping[str, Any]], leases: Sequence[Mapping[str, Any]], now: datetime
) -> list[Speaker]:
    """One :class:`Speaker` per Node and per speaker Lease without a Node, sorted by node."""
    by_node: dict[str, Mapping[str, Any]] = {}
    for held in leases:
        node = node_of_lease(str((held.get("metadata") or {}).get("name") or ""))
        if node:
            by_node[node] = held
    ready = {str((n.get("metadata") or {}).get("name")): node_ready(n) for n in nodes}
    out = []
    for node in sorted(set(ready) | set(by_node)):
        lease = by_node.get(node)
        spec = (lease or {}).get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        age = None if renewed is None else max(0.0, (now - renewed).total_seconds())
        valid = lease_valid_for(dict(lease), now) if lease is not None else 0.0
        out.append(
            Speaker(
                node=node,
                has_lease=lease is not None,
                live=valid > 0,
                heartbeat_age=age,
                valid_for=valid,
                node_known=node in ready,
                node_ready=ready.get(node, False),
                holder=str(spec.get("holderIdentity") or ""),
            )
        )
    return out


# --- the screen ----------------------------------------------------------------------------------


def _indent(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]


def pool_table(pools: Sequence[Mapping[str, Any]], *, wide: bool = False) -> str:
    """POOL FAMILY USAGE USED FREE STATUS (wide: ADDRESSES too), one row per pool and family."""
    headers = ["POOL", "FAMILY", "USAGE", "USED", "FREE", "STATUS"]
    if wide:
        headers.append("ADDRESSES")
    rows = []
    for pool in sorted(pools, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        name = str((pool.get("metadata") or {}).get("name"))
        addresses = [str(a) for a in (pool.get("spec") or {}).get("addresses") or []]
        for use in pool_usage(pool) or [FamilyUsage("-", None, None)]:
            row = [
                name,
                use.family,
                usage_bar(use.used, use.free if use.exact_free is None else use.exact_free),
                "-" if use.used is None else figure(use.used),
                use.shown_free,
                pool_state(pool),
            ]
            if wide:
                family = [a for a in addresses if (":" in a) == (use.family == "IPv6")]
                row.append(",".join(family or addresses))
            rows.append(row)
    return table(headers, rows)


def speaker_table(rows: Sequence[Speaker], *, wide: bool = False) -> str:
    """NODE SPEAKER HEARTBEAT NODE-READY (wide: LEASE-LEFT, HOLDER)."""
    headers = ["NODE", "SPEAKER", "HEARTBEAT", "NODE-READY"]
    if wide:
        headers += ["LEASE-LEFT", "HOLDER"]
    out = []
    for s in rows:
        state = "live" if s.live else ("no-lease" if not s.has_lease else "dead")
        ready = ("True" if s.node_ready else "False") if s.node_known else "<no Node>"
        row = [
            s.node,
            state,
            "-" if s.heartbeat_age is None else f"{s.heartbeat_age:.0f}s ago",
            ready,
        ]
        if wide:
            row += [f"{max(0.0, s.valid_for):.0f}s" if s.has_lease else "-", s.holder or "-"]
        out.append(row)
    return table(headers, out)


def pending_rows(
    services: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """Pending ironlb Services, each with the newest Warning Event's reason and message."""
    out = []
    for svc in services:
        if not handled_by_ironlb(svc) or external_ips(svc):
            continue
        meta = svc.get("metadata") or {}
        warning = latest_warning(svc, events) or {}
        out.append(
            {
                "namespace": str(meta.get("namespace") or ""),
                "name": str(meta.get("name") or ""),
                "reason": str(warning.get("reason") or ""),
                "message": str(warning.get("message") or ""),
            }
        )
    return sorted(out, key=lambda r: (r["namespace"], r["name"]))


def status_screen(
    health: Health,
    pools: Sequence[Mapping[str, Any]],
    nodes: Sequence[Speaker],
    pending: Sequence[Mapping[str, str]],
    *,
    wide: bool = False,
) -> str:
    """The ``lbctl status`` text: the summary lines of :func:`assess`, each with its detail."""
    lines = [health.sections["crd"], health.sections["controller"], health.sections["pools"]]
    if pools:
        lines += _indent(pool_table(pools, wide=wide))
    live = sum(1 for s in nodes if s.live)
    known = sum(1 for s in nodes if s.node_known)
    lines.append(f"Speakers:   {live} live, {known} node(s)")
    if nodes:
        lines += _indent(speaker_table(nodes, wide=wide))
    lines.append(health.sections["services"])
    if pending:
        rows = [
            [
                f"{p['namespace']}/{p['name']}",
                f"{p['reason']}: {p['message']}" if p["reason"] else "(no Event yet)",
            ]
            for p in pending
        ]
        lines += _indent(table(["PENDING", "WHY"], rows))
    return "\n".join(lines)


def status_document(
    health: Health,
    pools: Sequence[Mapping[str, Any]],
    nodes: Sequence[Speaker],
    pending: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """The ``-o json|yaml`` form: ``healthy``, ``checks``, ``problems`` and the details."""
    return {
        "healthy": health.healthy,
        "checks": health.lines,
        "problems": health.problems,
        "pools": [
            {
                "name": str((p.get("metadata") or {}).get("name")),
                "state": pool_state(p),
                "families": [u.as_dict() for u in pool_usage(p)],
            }
            for p in sorted(pools, key=lambda p: str((p.get("metadata") or {}).get("name")))
        ],
        "speakers": [s.as_dict() for s in nodes],
        "pending": list(pending),
    }
