"""Leader-election decisions (ironlb.operator.leader): pure, no API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ironlb.operator.leader import (
    Action,
    decide,
    format_micro_time,
    parse_micro_time,
    release_spec,
)

NOW = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)


def lease(holder: str | None, renewed: datetime, duration: int = 15, transitions: int = 0):
    return {
        "metadata": {"name": "ironlb-controller", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": format_micro_time(renewed - timedelta(seconds=60)),
            "renewTime": format_micro_time(renewed),
            "leaseTransitions": transitions,
        },
    }


def test_no_lease_is_acquired_with_a_full_spec() -> None:
    decision = decide(None, identity="a", now=NOW, duration=15)
    assert decision.action is Action.ACQUIRE
    assert decision.leading
    assert decision.spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-26T10:00:00.123456Z",
        "renewTime": "2026-11-26T10:00:00.123456Z",
        "leaseTransitions": 0,
    }


def test_own_lease_is_renewed_keeping_acquire_time_and_transitions() -> None:
    current = lease("a", NOW - timedelta(seconds=2), transitions=3)
    decision = decide(current, identity="a", now=NOW, duration=15)
    assert decision.action is Action.RENEW
    assert decision.spec is not None
    assert decision.spec["acquireTime"] == current["spec"]["acquireTime"]
    assert decision.spec["renewTime"] == format_micro_time(NOW)
    assert decision.spec["leaseTransitions"] == 3


def test_live_lease_of_another_means_standby() -> None:
    decision = decide(lease("b", NOW - timedelta(seconds=14)), identity="a", now=NOW, duration=15)
    assert decision.action is Action.STANDBY
    assert not decision.leading
    assert decision.spec is None
    assert decision.holder == "b"


def test_expired_lease_is_taken_over_and_counts_a_transition() -> None:
    decision = decide(
        lease("b", NOW - timedelta(seconds=15), transitions=4), identity="a", now=NOW, duration=15
    )
    assert decision.action is Action.TAKEOVER
    assert decision.holder == "b"
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "a"
    assert decision.spec["leaseTransitions"] == 5
    assert decision.spec["acquireTime"] == format_micro_time(NOW)


def test_the_lease_own_duration_wins_over_ours() -> None:
    current = lease("b", NOW - timedelta(seconds=20), duration=30)
    assert decide(current, identity="a", now=NOW, duration=15).action is Action.STANDBY
    assert (
        decide(current, identity="a", now=NOW + timedelta(seconds=10), duration=15).action
        is Action.TAKEOVER
    )


def test_released_or_malformed_lease_is_taken_over() -> None:
    released: dict[str, Any] = {"spec": {"holderIdentity": None, "leaseTransitions": 2}}
    decision = decide(released, identity="a", now=NOW, duration=15)
    assert decision.action is Action.TAKEOVER
    assert decision.spec is not None and decision.spec["leaseTransitions"] == 2
    garbage = {"spec": {"holderIdentity": "b", "renewTime": "yesterday"}}
    assert decide(garbage, identity="a", now=NOW, duration=15).action is Action.TAKEOVER


def test_release_spec_only_for_the_holder() -> None:
    current = lease("a", NOW)
    spec = release_spec(current, "a")
    assert spec is not None and spec["holderIdentity"] is None
    assert release_spec(current, "b") is None
    assert decide({"spec": spec}, identity="b", now=NOW, duration=15).action is Action.TAKEOVER


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="identity"):
        decide(None, identity="", now=NOW, duration=15)
    with pytest.raises(ValueError, match="positive"):
        decide(None, identity="a", now=NOW, duration=0)
    with pytest.raises(ValueError, match="timezone"):
        decide(None, identity="a", now=datetime(2026, 1, 1), duration=15)


def test_micro_time_round_trip() -> None:
    assert parse_micro_time(format_micro_time(NOW)) == NOW
    assert parse_micro_time("2026-11-26T10:00:00Z") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parse_micro_time(None) is None
    assert parse_micro_time("not a time") is None
