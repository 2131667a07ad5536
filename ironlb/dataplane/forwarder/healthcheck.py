"""Active TCP and UDP health checks with HAProxy-style rise/fall.

:class:`HealthState` is the pure counter logic: a backend starts up, goes
down after ``fall`` failed checks in a row and comes back after ``rise``
successful ones. :class:`HealthChecker` runs one asyncio task per checked
(listener, backend) and calls ``on_change`` when a verdict flips. A TCP
check is a connect (:func:`tcp_check`); a UDP check sends a payload and
expects an answer (:func:`udp_check`), since UDP has no handshake to test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable

from ironlb.dataplane.config import HealthCheck
from ironlb.dataplane.state import Backend, ListenerKey

log = logging.getLogger("ironlb.forward.health")

CheckKey = tuple[ListenerKey, Backend]


class HealthState:
    """Consecutive-result counting; ``up`` flips after ``rise``/``fall`` in a row."""

    __slots__ = ("fall", "rise", "streak", "up")

    def __init__(self, rise: int, fall: int, up: bool = True) -> None:
        self.rise = rise
        self.fall = fall
        self.up = up
        self.streak = 0  # results in a row that disagree with ``up``

    def record(self, ok: bool) -> bool:
        """Count one result; True when ``up`` changed."""
        if ok == self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= (self.rise if ok else self.fall):
            self.up = ok
            self.streak = 0
            return True
        return False


async def tcp_check(address: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to ``address:port`` opens within ``timeout``."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (address, port))
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


class _Answer(asyncio.DatagramProtocol):
    """The first answer (or ICMP error) of a UDP check, as a future."""

    def __init__(self, future: asyncio.Future[bytes | None]) -> None:
        self.future = future

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable
        if not self.future.done():
            self.future.set_result(None)


async def udp_check(address: str, port: int, timeout: float, send: bytes, expect: bytes) -> bool:
    """True when ``address:port`` answers the datagram ``send`` within
    ``timeout`` seconds with one that contains ``expect`` (any answer when
    ``expect`` is empty). An ICMP error, silence or another answer fail."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes | None] = loop.create_future()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Answer(future), remote_addr=(address, port)
        )
    except OSError:
        return False
    try:
        transport.sendto(send)
        async with asyncio.timeout(timeout):
            answer = await future
    except (OSError, TimeoutError):
        return False
    finally:
        transport.close()
    return answer is not None and expect in answer


async def run_check(check: HealthCheck, address: str, port: int) -> bool:
    """One check of ``check.type`` against ``address:port``."""
    if check.type == "udp":
        return await udp_check(address, port, check.timeout, check.send, check.expect)
    return await tcp_check(address, port, check.timeout)


class HealthChecker:
    """Runs the checks; ``down(key, backend)`` tells whether a backend is down."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._tasks: dict[tuple[CheckKey, HealthCheck], asyncio.Task[None]] = {}
        self._states: dict[tuple[CheckKey, HealthCheck], HealthState] = {}

    def down(self, key: ListenerKey, backend: Backend) -> bool:
        for (ckey, _), state in self._states.items():
            if ckey == (key, backend) and not state.up:
                return True
        return False

    def update(self, checks: Iterable[tuple[ListenerKey, Backend, HealthCheck]]) -> None:
        """Run exactly these checks; unchanged ones keep their state and timing."""
        wanted = {((key, backend), check) for key, backend, check in checks}
        for ident in list(self._tasks):
            if ident not in wanted:
                self._tasks.pop(ident).cancel()
                self._states.pop(ident, None)
        for ident in wanted:
            if ident not in self._tasks:
                self._states[ident] = HealthState(ident[1].rise, ident[1].fall)
                self._tasks[ident] = asyncio.get_running_loop().create_task(self._run(ident))

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _run(self, ident: tuple[CheckKey, HealthCheck]) -> None:
        (key, backend), check = ident
        state = self._states[ident]
        port = check.port or backend.port
        while True:
            ok = await run_check(check, str(backend.address), port)
            if state.record(ok):
                log.warning(
                    "listener %s: backend %s is %s (%d check(s) in a row %s)",
                    key,
                    backend,
                    "UP" if state.up else "DOWN",
                    check.rise if state.up else check.fall,
                    "passed" if state.up else "failed",
                )
                self._on_change()
            await asyncio.sleep(check.interval)
