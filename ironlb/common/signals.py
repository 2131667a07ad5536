"""Take SIGTERM/SIGINT back from kopf.

``kopf.operator()`` installs its own SIGTERM/SIGINT handlers on the loop when
it runs in the main thread, even when given a ``stop_flag``; its shutdown then
runs first and ours waits behind it (seconds), which delays a graceful
hand-over. Once kopf is ready, :func:`reclaim_stop_signals` points both
signals back at our own stop event.
"""

from __future__ import annotations

import asyncio
import signal
import threading


async def reclaim_stop_signals(kopf_ready: asyncio.Event, stop: asyncio.Event) -> None:
    """After ``kopf_ready`` is set, make SIGTERM and SIGINT set ``stop`` (main thread only)."""
    await kopf_ready.wait()
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
