"""Pure health assessment for ``lbctl status`` (no API access: plain dicts in, lines out).

Healthy means: the IPAddressPool CRD is registered, the controller Lease has
a holder and was renewed within its ``leaseDurationSeconds``, no pool is
Invalid, and no ironlb-handled LoadBalancer Service is waiting for an address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ironlb.lbctl.render import external_ips, parse_time, pool_state

__all__ = ["Health", "assess", "handled_by_ironlb", "lease_freshness"]

OUR_CLASS = "ironlb.io/ironlb"


@dataclass
class Health:
    """What ``lbctl status`` prints: ``lines`` always, ``problems`` make it exit 1."""

    sections: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        """The summary lines, in order: ``crd``, ``controller``, ``pools``, ``services``."""
        return list(self.sections.values())

    @property
    def healthy(self) -> bool:
        return not self.problems


def lease_freshness(lease: Mapping[str, Any], now: datetime) -> tuple[str, float | None]:
    """``(holder, seconds left)``; seconds left is negative when expired, None if unknowable."""
    spec = lease.get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int):
        return holder, None
    return holder, (renewed + timedelta(seconds=duration) - now).total_seconds()


def handled_by_ironlb(service: Mapping[str, Any]) -> bool:
    """A LoadBalancer Service whose ``loadBalancerClass`` is unset or ironlb's."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (
        None,
        OUR_CLASS,
    )


def _names(objs: Sequence[Mapping[str, Any]], limit: int = 5) -> str:
    names = []
    for obj in objs[:limit]:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace")
        names.append(f"{ns}/{meta.get('name')}" if ns else str(meta.get("name")))
    more = f" and {len(objs) - limit} more" if len(objs) > limit else ""
    return ", ".join(names) + more


def assess(
    *,
    crd_registered: bool,
    lease: Mapping[str, Any] | None,
    lease_ref: str,
    pools: Sequence[Mapping[str, Any]],
    services: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Health:
    """Judge the install from what the API returned (``lease_ref`` = ``namespace/name``)."""
    health = Health()
    if crd_registered:
        health.sections["crd"] = "CRD:        ipaddresspools.ironlb.io registered"
    else:
        health.sections["crd"] = "CRD:        ipaddresspools.ironlb.io MISSING"
        health.problems.append("the IPAddressPool CRD (ipaddresspools.ironlb.io) is not installed")

    if lease is None:
        health.sections["controller"] = f"Controller: no Lease {lease_ref}"
        health.problems.append(
            f"controller Lease {lease_ref} not found: is the controller running?"
        )
    else:
        holder, left = lease_freshness(lease, now)
        if not holder:
            health.sections["controller"] = f"Controller: Lease {lease_ref} has no holder"
            health.problems.append(f"controller Lease {lease_ref} has no holder (no leader)")
        elif left is None:
            health.sections["controller"] = f"Controller: leader {holder}, renewal time unknown"
            health.problems.append(f"controller Lease {lease_ref} has no renewTime/duration")
        elif left < 0:
            health.sections["controller"] = (
                f"Controller: leader {holder}, Lease EXPIRED {-left:.0f}s ago"
            )
            health.problems.append(
                f"controller Lease {lease_ref} held by {holder} expired {-left:.0f}s ago"
            )
        else:
            health.sections["controller"] = (
                f"Controller: leader {holder}, Lease fresh ({left:.0f}s left)"
            )

    states = [pool_state(p) for p in pools]
    ready = sum(1 for s in states if s == "Ready")
    invalid = [p for p, s in zip(pools, states, strict=True) if s.startswith("Invalid")]
    other = len(pools) - ready - len(invalid)
    health.sections["pools"] = (
        f"Pools:      {len(pools)} total, {ready} Ready, {len(invalid)} Invalid, {other} not ready"
    )
    if invalid:
        details = "; ".join(
            f"{(p.get('metadata') or {}).get('name')}: {pool_state(p)}" for p in invalid
        )
        health.problems.append(f"{len(invalid)} invalid pool(s): {details}")

    ours = [s for s in services if handled_by_ironlb(s)]
    pending = [s for s in ours if not external_ips(s)]
    health.sections["services"] = f"Services:   {len(ours)} LoadBalancer, {len(pending)} pending"
    if pending:
        health.problems.append(
            f"{len(pending)} LoadBalancer Service(s) without an address: {_names(pending)}"
        )
    return health
