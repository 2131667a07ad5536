"""Health checks: rise/fall counting and real TCP and UDP checks against loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from ironlb.dataplane.config import HealthCheck
from ironlb.dataplane.forwarder.healthcheck import HealthChecker, HealthState, udp_check
from ironlb.dataplane.state import Backend
from tests.support import eventually

from .conftest import Backends, UdpNamed, free_port, tcp_key, udp_key


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


async def test_udp_check_marks_a_backend_down_and_up_again(backends: Backends) -> None:
    """send/expect: ICMP unreachable fails the check, a matching answer passes it."""
    port = free_port(socket.SOCK_DGRAM)
    backend = Backend(ipaddress.ip_address("127.0.0.1"), port)
    key = udp_key()
    changes: list[bool] = []
    checker = HealthChecker(lambda: changes.append(checker.down(key, backend)))
    check = HealthCheck(
        interval=0.05, timeout=0.3, rise=2, fall=2, type="udp", send=b"q", expect=b"u0:q"
    )
    checker.update([(key, backend, check)])
    try:
        await eventually(lambda: changes == [True], timeout=10, what="down")  # nothing listens
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpNamed("u0", set()), local_addr=("127.0.0.1", port)
        )
        try:
            await eventually(lambda: changes == [True, False], timeout=10, what="up again")
            assert not checker.down(key, backend)
        finally:
            transport.close()
    finally:
        checker.stop()


async def test_udp_check_fails_on_silence_and_on_an_unexpected_answer(
    backends: Backends,
) -> None:
    answering = await backends.udp_server("u1")
    host = str(answering.address)
    assert await udp_check(host, answering.port, 0.5, b"q", b"u1:q")
    assert await udp_check(host, answering.port, 0.5, b"q", b"")  # any answer
    assert not await udp_check(host, answering.port, 0.5, b"q", b"u0:q")  # wrong answer
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert not await udp_check(host, silent.getsockname()[1], 0.2, b"q", b"")
        assert loop.time() - began >= 0.19  # silence: it waited the timeout (uvloop: ms clock)
    finally:
        silent.close()
