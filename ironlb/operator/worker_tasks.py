"""A fixed number of asyncio tasks running one worker coroutine, started and
cancelled together (the Event and Service-status writers each drain a queue
with a few of them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class WorkerTasks:
    """``count`` tasks named ``{name}-{i}``, each running ``work()``."""

    def __init__(
        self, name: str, count: int, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        self._name = name
        self._count = count
        self._work = work
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self._name}-{i}") for i in range(self._count)
        ]

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
