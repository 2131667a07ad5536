"""Pure rendering for ``lbctl``: tables, ages, JSON/YAML, pool and Service rows.

Everything here works on plain dicts as the Kubernetes API returns them
(camelCase keys) and returns strings, so it is unit-testable without a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from ironlb.operator.service_request import ALLOCATED_FROM_POOL, ANNOUNCING_NODE
from ironlb.speaker.plan import FORWARDING_MODE, SERVICE_NAME_LABEL

__all__ = [
    "ALLOCATED_FROM_POOL",
    "ANNOUNCING_NODE",
    "FORWARDING_MODE",
    "SERVICE_NAME_LABEL",
    "age",
    "endpoint_counts",
    "external_ips",
    "latest_warning",
    "parse_time",
    "pool_detail",
    "pool_rows",
    "pool_state",
    "service_rows",
    "structured",
    "table",
]


POOL_HEADERS = ["NAME", "ADDRESSES", "USED", "FREE", "AUTO-ASSIGN", "STATUS", "AGE"]
POOL_WIDE_HEADERS = [*POOL_HEADERS, "AVOID-BUGGY-IPS", "PRIORITY", "NAMESPACES"]
SERVICE_HEADERS = [
    "NAMESPACE",
    "NAME",
    "EXTERNAL-IP",
    "POOL",
    "ANNOUNCED-BY",
    "MODE",
    "ENDPOINTS",
    "REASON",
]
SERVICE_WIDE_HEADERS = [*SERVICE_HEADERS, "PORTS", "TRAFFIC-POLICY", "AGE"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, like ``kubectl get`` (no trailing blanks)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp (``...Z`` or with offset, optional fraction) as aware UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def age(timestamp: object, now: datetime) -> str:
    """kubectl-style age: ``45s``, ``12m``, ``5h``, ``3d``; ``<unknown>`` without a timestamp."""
    then = parse_time(timestamp)
    if then is None:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def pool_state(pool: Mapping[str, Any]) -> str:
    """``Ready``, ``Invalid (reason)``, ``NotReady (reason)`` or ``Pending`` (no status yet)."""
    invalid = _condition(pool, "Invalid")
    if invalid is not None and invalid.get("status") == "True":
        return f"Invalid ({invalid.get('reason') or 'unknown'})"
    ready = _condition(pool, "Ready")
    if ready is None:
        return "Pending"
    if ready.get("status") == "True":
        return "Ready"
    return f"NotReady ({ready.get('reason') or 'unknown'})"


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "-"


def _total(status: Mapping[str, Any], key: str) -> str:
    """``usedText``/``freeText`` (exact, from a controller that writes them), else the
    int64 ``used``/``free`` counter (capped for huge IPv6 ranges), else ``-``."""
    text = status.get(f"{key}Text")
    if isinstance(text, str) and text.isdigit():
        return text
    return _count(status.get(key))


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def pool_rows(
    pools: Sequence[Mapping[str, Any]], now: datetime, *, wide: bool = False
) -> list[list[str]]:
    """One table row per pool, sorted by name (columns :data:`POOL_HEADERS`, or wide)."""
    rows = []
    for pool in sorted(pools, key=_name):
        spec = pool.get("spec") or {}
        status = pool.get("status") or {}
        row = [
            _name(pool),
            ",".join(str(a) for a in spec.get("addresses") or []),
            _total(status, "used"),
            _total(status, "free"),
            "false" if spec.get("autoAssign") is False else "true",
            pool_state(pool),
            age((pool.get("metadata") or {}).get("creationTimestamp"), now),
        ]
        if wide:
            alloc = spec.get("serviceAllocation") or {}
            priority = alloc.get("priority")
            row += [
                "true" if spec.get("avoidBuggyIPs") else "false",
                "-" if priority is None else str(priority),
                ",".join(alloc.get("namespaces") or []) or "-",
            ]
        rows.append(row)
    return rows


def external_ips(service: Mapping[str, Any]) -> list[str]:
    """The addresses in ``status.loadBalancer.ingress`` (ip, else hostname)."""
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [
        str(e.get("ip") or e.get("hostname"))
        for e in ingress
        if isinstance(e, Mapping) and (e.get("ip") or e.get("hostname"))
    ]


def endpoint_counts(
    service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """``(ready, total)`` endpoints of ``service`` over its EndpointSlices.

    Slices belong to a Service by the ``kubernetes.io/service-name`` label in its
    namespace; an endpoint whose ``conditions.ready`` is unset counts as ready
    (discovery.k8s.io/v1: "nil should be interpreted as true").
    """
    meta = service.get("metadata") or {}
    ready = total = 0
    for slc in slices:
        smeta = slc.get("metadata") or {}
        labels = smeta.get("labels") or {}
        if smeta.get("namespace") != meta.get("namespace"):
            continue
        if labels.get(SERVICE_NAME_LABEL) != meta.get("name"):
            continue
        for endpoint in slc.get("endpoints") or []:
            if not isinstance(endpoint, Mapping):
                continue
            total += 1
            if (endpoint.get("conditions") or {}).get("ready") is not False:
                ready += 1
    return ready, total


def _event_time(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
        or ""
    )


def latest_warning(
    service: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The newest ``Warning`` Event about ``service`` (by last/event/first time), or None."""
    meta = service.get("metadata") or {}
    mine = [
        e
        for e in events
        if e.get("type") == "Warning"
        and (e.get("involvedObject") or {}).get("kind", "Service") == "Service"
        and (e.get("involvedObject") or {}).get("name") == meta.get("name")
        and (e.get("involvedObject") or {}).get("namespace", meta.get("namespace"))
        == meta.get("namespace")
    ]
    return max(mine, key=_event_time, default=None)


def _ports(spec: Mapping[str, Any]) -> str:
    ports = [
        f"{p.get('port')}/{p.get('protocol') or 'TCP'}"
        for p in spec.get("ports") or []
        if isinstance(p, Mapping)
    ]
    return ",".join(ports) or "-"


def service_rows(
    services: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
    *,
    now: datetime | None = None,
    wide: bool = False,
) -> list[list[str]]:
    """Rows of :data:`SERVICE_HEADERS` (or the wide ones), sorted by namespace and name.

    ``<pending>`` without ingress; REASON is the latest Warning Event's
    ``reason: message`` for a pending Service (``-`` otherwise); MODE is the
    ``ironlb.io/forwarding-mode`` annotation (``-``: the speaker's default).
    """
    rows = []
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], _name(s))):
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        notes = meta.get("annotations") or {}
        ips = external_ips(svc)
        ready, total = endpoint_counts(svc, slices)
        reason = "-"
        if not ips:
            warning = latest_warning(svc, events)
            if warning is not None:
                text = f"{warning.get('reason')}: {warning.get('message') or ''}".strip()
                reason = text if len(text) <= 80 else text[:77] + "..."
        row = [
            str(meta.get("namespace") or ""),
            _name(svc),
            ",".join(ips) or "<pending>",
            str(notes.get(ALLOCATED_FROM_POOL) or "-"),
            str(notes.get(ANNOUNCING_NODE) or "-"),
            str(notes.get(FORWARDING_MODE) or "-"),
            f"{ready}/{total}",
            reason,
        ]
        if wide:
            row += [
                _ports(spec),
                str(spec.get("externalTrafficPolicy") or "Cluster"),
                age(meta.get("creationTimestamp"), now or datetime.now(UTC)),
            ]
        rows.append(row)
    return rows


def structured(obj: Any, fmt: str) -> str:
    """``obj`` as ``json`` (indented, key order kept) or ``yaml`` (block style)."""
    if fmt == "json":
        return json.dumps(obj, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}")


def _selectors(selectors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(json.dumps(s, separators=(",", ":"), sort_keys=True) for s in selectors)


def pool_detail(
    pool: Mapping[str, Any],
    holders: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    wide: bool = False,
) -> str:
    """The ``lbctl pool show`` text: spec, status counts, conditions, Services holding addresses."""
    meta = pool.get("metadata") or {}
    spec = pool.get("spec") or {}
    status = pool.get("status") or {}
    alloc = spec.get("serviceAllocation") or {}
    l2 = spec.get("l2") or {}
    created = meta.get("creationTimestamp")
    lines = [
        f"Name:             {_name(pool)}",
        f"Created:          {created or '<unknown>'} ({age(created, now)} ago)",
        "Addresses:",
        *[f"  {a}" for a in spec.get("addresses") or []],
        f"Auto-assign:      {'false' if spec.get('autoAssign') is False else 'true'}",
        f"Avoid buggy IPs:  {'true' if spec.get('avoidBuggyIPs') else 'false'}",
    ]
    if alloc:
        priority = alloc.get("priority")
        lines.append("Service allocation:")
        lines.append(f"  Priority:            {'-' if priority is None else priority}")
        lines.append(f"  Namespaces:          {', '.join(alloc.get('namespaces') or []) or '-'}")
        if alloc.get("namespaceSelectors"):
            lines.append(f"  Namespace selectors: {_selectors(alloc['namespaceSelectors'])}")
        if alloc.get("serviceSelectors"):
            lines.append(f"  Service selectors:   {_selectors(alloc['serviceSelectors'])}")
    if l2:
        lines.append("L2 announcement:")
        lines.append(f"  Node selectors:      {_selectors(l2.get('nodeSelectors') or []) or '-'}")
        lines.append(f"  Interfaces:          {', '.join(l2.get('interfaces') or []) or '-'}")
    lines.append(f"Status:           {pool_state(pool)}")
    lines.append(f"  Used:           {_total(status, 'used')}")
    lines.append(f"  Free:           {_total(status, 'free')}")
    for family in ("IPv4", "IPv6"):
        assigned, available = status.get(f"assigned{family}"), status.get(f"available{family}")
        if assigned is not None or available is not None:
            lines.append(
                f"  {family}:           {_count(assigned)} assigned, {_count(available)} available"
            )
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("Conditions:")
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("lastTransitionTime", "")),
                str(c.get("message", "")),
            ]
            for c in conditions
            if isinstance(c, Mapping)
        ]
        sub = table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], rows)
        lines += [f"  {line}" for line in sub.splitlines()]
    if holders:
        lines.append(f"Services ({len(holders)}):")
        if wide:
            sub = table(SERVICE_HEADERS, service_rows(holders, now=now))
        else:
            sub = table(
                ["NAMESPACE", "NAME", "EXTERNAL-IP"], [r[:3] for r in service_rows(holders)]
            )
        lines += [f"  {line}" for line in sub.splitlines()]
    else:
        lines.append("Services:         <none>")
    return "\n".join(lines)
