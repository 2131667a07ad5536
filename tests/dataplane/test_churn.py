"""Connection churn against a backend that accepts and closes at once (a busy
iperf3 does this): the worker must survive it. uvloop frees a transport's fd
when the transport closes, so a forwarder that also closes the Python socket
afterwards closes a reused fd number and libuv aborts the worker ("double
free"); this test catches that regression."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .conftest import free_port
from .test_workers import Forward, config_text

CLIENTS = 50
SECONDS = 4.0


@pytest.fixture
async def slamming_backend() -> AsyncIterator[int]:
    """A backend that closes every connection as soon as it is accepted."""

    accepted = 0

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Three ways of hanging up at once, in turn: silently, after a byte
        # (a busy iperf3's "access denied"), after reading a little.
        nonlocal accepted
        accepted += 1
        if accepted % 3 == 1:
            writer.write(b"\x10")
        elif accepted % 3 == 2:
            with contextlib.suppress(OSError):
                await reader.read(37)
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0, backlog=1024)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def forward_process(tmp_path: Path) -> Iterator[list[Forward]]:
    started: list[Forward] = []
    try:
        yield started
    finally:
        for fwd in started:
            pids = fwd.workers() if fwd.proc.poll() is None else set()
            fwd.stop()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def _client_loop(port: int, deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await reader.read()
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        done += 1
    return done


async def test_worker_survives_backends_that_close_at_once(
    slamming_backend: int, forward_process: list[Forward], tmp_path: Path
) -> None:
    # One listener whose backend hangs up at once, one whose backend refuses.
    port, refused_port = free_port(), free_port()
    config = config_text(port, [slamming_backend]) + (
        f"  - address: 127.0.0.1\n    port: {refused_port}\n"
        f'    backends: ["127.0.0.1:{free_port()}"]\n'
    )
    fwd = Forward(tmp_path, config, workers=1)
    forward_process.append(fwd)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    workers_before = fwd.workers()
    deadline = time.monotonic() + SECONDS
    counts = await asyncio.gather(
        *(_client_loop(p, deadline) for p in [port, refused_port] * (CLIENTS // 2))
    )
    assert sum(counts) > CLIENTS  # the load really ran
    log = fwd.text()
    assert "exited with code" not in log, log[-3000:]
    assert fwd.workers() == workers_before
