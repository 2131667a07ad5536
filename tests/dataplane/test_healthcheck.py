"""Health checks: rise/fall counting and real TCP checks against loopback."""

from __future__ import annotations

import asyncio
import ipaddress

from ironlb.dataplane.config import HealthCheck
from ironlb.dataplane.forwarder.healthcheck import HealthChecker, HealthState
from ironlb.dataplane.state import Backend

from .conftest import Backends, free_port, tcp_key


def test_state_needs_fall_failures_to_go_down_and_rise_successes_to_come_back() -> None:
    state = HealthState(rise=2, fall=3)
    assert state.up
    assert [state.record(False) for _ in range(3)] == [False, False, True]
    assert not state.up
    assert state.record(True) is False
    assert state.record(False) is False  # a failure resets the rise streak
    assert [state.record(True), state.record(True)] == [False, True]
    assert state.up


def test_a_success_between_failures_resets_the_fall_streak() -> None:
    state = HealthState(rise=1, fall=2)
    assert not state.record(False)
    assert not state.record(True)
    assert not state.record(False)
    assert state.up


async def test_backend_goes_down_and_comes_back_up(backends: Backends) -> None:
    port = free_port()
    backend = Backend(ipaddress.ip_address("127.0.0.1"), port)
    key = tcp_key()
    changes: list[bool] = []
    checker = HealthChecker(lambda: changes.append(checker.down(key, backend)))
    check = HealthCheck(interval=0.05, timeout=0.5, rise=2, fall=2)
    checker.update([(key, backend, check)])
    try:
        # nothing listens: after `fall` failed checks the backend is down
        for _ in range(200):
            if changes:
                break
            await asyncio.sleep(0.02)
        assert changes == [True]
        assert checker.down(key, backend)
        await backends.tcp("b0", port=port)
        for _ in range(200):
            if len(changes) == 2:
                break
            await asyncio.sleep(0.02)
        assert changes == [True, False]
        assert not checker.down(key, backend)
    finally:
        checker.stop()


async def test_unchanged_checks_survive_an_update() -> None:
    backend = Backend(ipaddress.ip_address("127.0.0.1"), free_port())
    key = tcp_key()
    checker = HealthChecker(lambda: None)
    check = HealthCheck(interval=0.05, timeout=0.5, rise=1, fall=1)
    checker.update([(key, backend, check)])
    try:
        for _ in range(200):
            if checker.down(key, backend):
                break
            await asyncio.sleep(0.02)
        assert checker.down(key, backend)
        checker.update([(key, backend, check)])  # same check: state kept
        assert checker.down(key, backend)
        checker.update([])
        assert not checker.down(key, backend)
    finally:
        checker.stop()
