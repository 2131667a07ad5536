"""Passive outlier rules (pure): failures in a row eject, the hold grows, one probe."""

from __future__ import annotations

from ironlb.dataplane.forwarder.outlier import BASE_HOLD, FAILURES, MAX_HOLD, PROBE_WAIT, Outlier


def test_failures_in_a_row_eject_and_a_success_in_between_resets_them() -> None:
    outlier = Outlier()
    assert [outlier.failure(0.0) for _ in range(FAILURES - 1)] == [False] * (FAILURES - 1)
    assert outlier.success() is False  # still in: nothing to report
    assert [outlier.failure(1.0) for _ in range(FAILURES - 1)] == [False] * (FAILURES - 1)
    assert not outlier.out
    assert outlier.failure(1.0) is True  # the FAILURES-th in a row: out
    assert outlier.out and outlier.out_until == 1.0 + BASE_HOLD
    assert outlier.failure(1.5) is False  # reported once per transition


def test_one_probe_after_the_hold_and_its_success_brings_the_backend_back() -> None:
    outlier = Outlier()
    for _ in range(FAILURES):
        outlier.failure(10.0)
    assert not outlier.admit(10.0 + BASE_HOLD - 0.01)  # held down
    assert outlier.admit(10.0 + BASE_HOLD)  # the probe
    assert not outlier.admit(10.0 + BASE_HOLD)  # only one at a time
    assert outlier.success() is True
    assert not outlier.out and outlier.admit(0.0)
    assert outlier.success() is False


def test_a_failed_probe_doubles_the_hold_up_to_the_maximum() -> None:
    outlier = Outlier()
    for _ in range(FAILURES):
        outlier.failure(0.0)
    now, holds = 0.0, []
    for _ in range(8):
        now = outlier.out_until
        assert outlier.admit(now)
        assert outlier.failure(now) is False  # still out: no new transition
        holds.append(outlier.out_until - now)
    assert holds[:3] == [2 * BASE_HOLD, 4 * BASE_HOLD, 8 * BASE_HOLD]
    assert holds[-1] == MAX_HOLD
    outlier.admit(outlier.out_until)
    outlier.success()
    for _ in range(FAILURES):  # back in, a new ejection starts at the base hold again
        outlier.failure(1000.0)
    assert outlier.out_until == 1000.0 + BASE_HOLD


def test_an_abandoned_probe_lets_the_next_flow_probe() -> None:
    outlier = Outlier()
    for _ in range(FAILURES):
        outlier.failure(0.0)
    assert outlier.admit(BASE_HOLD)
    assert not outlier.admit(BASE_HOLD)
    outlier.abandon()
    assert outlier.admit(BASE_HOLD)


def test_a_probe_without_a_verdict_stops_blocking_after_the_probe_wait() -> None:
    outlier = Outlier()
    for _ in range(FAILURES):
        outlier.failure(0.0)
    assert outlier.admit(BASE_HOLD)
    assert not outlier.admit(BASE_HOLD + PROBE_WAIT - 0.01)
    assert outlier.admit(BASE_HOLD + PROBE_WAIT)  # the lost probe is replaced
    assert outlier.failure(BASE_HOLD + PROBE_WAIT) is False
    assert outlier.out_until == BASE_HOLD + PROBE_WAIT + 2 * BASE_HOLD
