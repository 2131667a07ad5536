"""What the validating admission webhook decides about an IPAddressPool (pure).

A pool is admitted when its spec parses (:func:`ironlb.operator.pools.parse_pool`:
CIDR syntax, host bits, reversed or overlapping ranges, empty lists, unknown
fields) and none of its addresses overlap another existing, valid pool. On
update the pool is compared with every pool but its own old version. The kopf
adapter (``kopf_handlers``) turns a refusal into ``kopf.AdmissionError``,
which the API server shows the user as the reason the request was denied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ironlb.operator.pools import Pool, PoolError, parse_pool, select_non_overlapping

__all__ = ["pool_admission_problem"]


def pool_admission_problem(
    name: str, spec: Mapping[str, Any] | None, others: Iterable[tuple[str, Mapping[str, Any]]]
) -> str | None:
    """``None`` to admit the pool, else a message saying why it is refused."""
    try:
        candidate = parse_pool(name, spec if spec is not None else {})
    except PoolError as exc:
        return f"invalid IPAddressPool {name!r}: {exc}"
    existing: list[Pool] = []
    for other_name, other_spec in others:
        if other_name == name:
            continue
        try:
            existing.append(parse_pool(other_name, other_spec))
        except PoolError:
            continue  # an invalid pool is never used, so it cannot collide
    accepted, _ = select_non_overlapping(existing)
    _, rejected = select_non_overlapping([*accepted, candidate])
    if name in rejected:
        return f"invalid IPAddressPool {name!r}: {rejected[name]}"
    return None
