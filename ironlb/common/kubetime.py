"""Kubernetes timestamps: ``Time`` (RFC 3339, seconds) and ``MicroTime`` (microseconds).

Leases use ``MicroTime`` (``renewTime``, ``acquireTime``); object metadata and
Events use ``Time`` (``creationTimestamp``). Both are UTC with a ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_micro_time(moment: datetime) -> str:
    """Kubernetes ``MicroTime``: RFC 3339, UTC, microseconds (``...T10:00:00.000000Z``).

    Raises :class:`ValueError` for a naive ``datetime``.
    """
    if moment.tzinfo is None:
        raise ValueError("a Kubernetes time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_time(moment: datetime) -> str:
    """Kubernetes ``Time``: RFC 3339, UTC, whole seconds (``...T10:00:00Z``)."""
    if moment.tzinfo is None:
        raise ValueError("a Kubernetes time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime | None:
    """Parse a ``Time``/``MicroTime`` string; ``None`` for a missing or malformed value."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def now_utc() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)
