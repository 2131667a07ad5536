"""The uvloop guard and the hand-stepped ``create_connection`` (forwarder/uvloop_steps.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ironlb.dataplane.forwarder.uvloop_steps import (
    VERIFIED,
    UnverifiedUvloop,
    require_verified_uvloop,
    step_coroutine,
)

from .conftest import free_port


def test_the_installed_uvloop_is_verified() -> None:
    require_verified_uvloop()  # the lock file and VERIFIED agree


@pytest.mark.parametrize("version", ["0.22.9", "0.24.0", "1.0.0", "dev"])
def test_other_versions_are_refused_naming_the_verified_range(version: str) -> None:
    first, past = VERIFIED
    with pytest.raises(UnverifiedUvloop) as info:
        require_verified_uvloop(version)
    assert str(info.value).startswith(f"uvloop {version}") or version == "dev"
    if version != "dev":
        assert f">={first[0]}.{first[1]},<{past[0]}.{past[1]}" in str(info.value)


async def test_step_coroutine_makes_a_real_connection_without_a_task() -> None:
    loop = asyncio.get_running_loop()
    accepted = asyncio.Event()
    server = await loop.create_server(lambda: _Accept(accepted), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    made: list[asyncio.BaseTransport] = []
    proto = _Client(made)
    coro = loop.create_connection(lambda: proto, "127.0.0.1", port)
    done = asyncio.Event()

    def step(_: object = None) -> None:
        try:
            future = step_coroutine(coro)
        except StopIteration:
            done.set()
            return
        if future is None:
            loop.call_soon(step)
        else:
            assert future._asyncio_future_blocking is False
            future.add_done_callback(step)

    step()
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.wait_for(accepted.wait(), 10)
    assert made and not made[0].is_closing()
    made[0].close()
    server.close()
    await asyncio.sleep(0.05)


class _Accept(asyncio.Protocol):
    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.event.set()


class _Client(asyncio.Protocol):
    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def test_forward_refuses_to_start_on_an_unverified_uvloop(tmp_path: Path) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"listeners:\n  - address: 127.0.0.1\n    port: {free_port()}\n"
        f'    backends: ["127.0.0.1:{free_port()}"]\n'
    )
    script = (
        "import sys, uvloop; uvloop.__version__ = '0.99.0'; from ironlb.cli import main; "
        f"sys.exit(main(['forward', '--config', {str(config)!r}, '--workers', '1']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "uvloop 0.99.0 is not one the TCP forwarder was verified with" in proc.stderr
    assert "Traceback" not in proc.stderr
