"""Leader-election decisions over a ``coordination.k8s.io/v1`` Lease (pure logic).

Two controller replicas run; one is active. Each replica periodically reads
the Lease and asks :func:`decide` what to do given the Lease object (or
``None`` when it does not exist yet), the current time and its own identity:

- ``ACQUIRE``: no Lease exists: create one holding it;
- ``RENEW``: we hold it: write a fresh ``renewTime``;
- ``TAKEOVER``: the holder let it expire (or released it): write ourselves in
  and count a transition;
- ``STANDBY``: someone else holds a live Lease: do nothing, look again later.

Every write the adapter makes carries the Lease's ``resourceVersion``, so of
two replicas deciding ``TAKEOVER`` at once only one wins (the other gets a 409
and stands by). Expiry is judged on ``renewTime + leaseDurationSeconds`` of
the record, so the replicas' clocks are assumed to agree to well within the
lease duration (as they do on NTP-synchronised nodes).

No Kubernetes client and no asyncio here: the adapter is ``lease_elector``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ironlb.common.kubetime import format_micro_time
from ironlb.common.kubetime import parse_time as parse_micro_time

__all__ = [
    "Action",
    "Decision",
    "LeaseRecord",
    "decide",
    "format_micro_time",
    "parse_micro_time",
    "release_spec",
]


class Action(enum.Enum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    TAKEOVER = "takeover"
    STANDBY = "standby"


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that the election reads."""

    holder: str | None
    acquire_time: datetime | None
    renew_time: datetime | None
    duration_seconds: int | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=spec.get("holderIdentity") or None,
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            duration_seconds=duration if isinstance(duration, int) and duration > 0 else None,
            transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
        )

    def expired(self, now: datetime, default_duration: int) -> bool:
        """True when nobody holds it or the holder has not renewed within the duration."""
        if self.holder is None or self.renew_time is None:
            return True
        duration = self.duration_seconds or default_duration
        return now >= self.renew_time + timedelta(seconds=duration)


@dataclass(frozen=True)
class Decision:
    """What to do now; ``spec`` is the complete Lease spec to write (``None`` for STANDBY)."""

    action: Action
    spec: dict[str, Any] | None
    holder: str | None

    @property
    def leading(self) -> bool:
        """Whether we hold the Lease once ``spec`` has been written successfully."""
        return self.action is not Action.STANDBY


def _spec(
    identity: str, duration: int, acquired: datetime, now: datetime, transitions: int
) -> dict[str, Any]:
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "acquireTime": format_micro_time(acquired),
        "renewTime": format_micro_time(now),
        "leaseTransitions": transitions,
    }


def decide(
    lease: Mapping[str, Any] | None, *, identity: str, now: datetime, duration: int
) -> Decision:
    """Decide what ``identity`` does about ``lease`` at ``now`` (a timezone-aware time)."""
    if not identity:
        raise ValueError("the election identity must not be empty")
    if duration <= 0:
        raise ValueError(f"lease duration must be positive, got {duration}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if lease is None:
        return Decision(Action.ACQUIRE, _spec(identity, duration, now, now, 0), None)
    record = LeaseRecord.from_lease(lease)
    if record.holder == identity:
        acquired = record.acquire_time or now
        spec = _spec(identity, duration, acquired, now, record.transitions)
        return Decision(Action.RENEW, spec, identity)
    if record.expired(now, duration):
        transitions = record.transitions + 1 if record.holder is not None else record.transitions
        spec = _spec(identity, duration, now, now, transitions)
        return Decision(Action.TAKEOVER, spec, record.holder)
    return Decision(Action.STANDBY, None, record.holder)


def release_spec(lease: Mapping[str, Any], identity: str) -> dict[str, Any] | None:
    """The spec that gives up a Lease we hold (on clean shutdown), else ``None``.

    The holder is cleared so a standby takes over on its next look instead of
    waiting for the lease to expire.
    """
    record = LeaseRecord.from_lease(lease)
    if record.holder != identity:
        return None
    spec = dict(lease.get("spec") or {})
    spec["holderIdentity"] = None
    spec["leaseDurationSeconds"] = 1
    return spec
