"""The data plane leaves out a backend that is its own listener (the speaker's
states come from Kubernetes, where no config parser refused it first)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from ironlb.dataplane.dataplane import DataPlane
from ironlb.dataplane.forwarder.stats import LISTENER_FIELDS
from ironlb.dataplane.settings import DataPlaneSettings
from ironlb.dataplane.state import Backend
from tests.support import eventually

from .conftest import LOCAL, Backends, state, tcp_key, who

ACCEPTED = LISTENER_FIELDS.index("accepted")
WARNING = "is the listener itself, left out (it would loop every connection)"


@pytest.fixture
async def dataplane() -> AsyncIterator[DataPlane]:
    """A started one-worker data plane (proxy mode, no announcing); stopped at the end."""
    plane = DataPlane(DataPlaneSettings(workers=1))
    try:
        await plane.start()
        yield plane
    finally:
        await plane.stop()


async def test_an_endpoint_equal_to_its_listener_is_left_out_with_one_warning(
    dataplane: DataPlane, backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ironlb.dataplane")
    b0 = await backends.tcp("b0")
    key = tcp_key()
    looping = Backend(LOCAL, key.port)

    assert await dataplane.apply(state((key, [looping, b0]))) == {}
    assert {await who(key) for _ in range(6)} == {"b0"}

    def accepted() -> int:
        values, _ = dataplane.snapshot().get(str(key), ((0,), {}))
        return values[ACCEPTED]

    # no connection went round: a looping one would be accepted twice (or more)
    await eventually(lambda: accepted() >= 6, timeout=10, what="the workers' counters")
    await asyncio.sleep(1.2)  # one more snapshot
    assert accepted() == 6
    assert str(looping) not in dataplane.snapshot()[str(key)][1]
    warnings = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert warnings == [f"listener {key}: backend {looping} {WARNING}"]

    # the same loop, now not ready, and a new state around it: no second warning
    not_ready = Backend(LOCAL, key.port, ready=False)
    b1 = await backends.tcp("b1")
    assert await dataplane.apply(state((key, [not_ready, b1]))) == {}
    assert {await who(key) for _ in range(6)} == {"b1"}
    assert sum(WARNING in r.getMessage() for r in caplog.records) == 1
    # the applied state is what was asked for (metrics show the backend as it is)
    assert dataplane.state.backends(key) == (not_ready, b1)
