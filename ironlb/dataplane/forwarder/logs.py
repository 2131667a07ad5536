"""A rate-limited logger for ``ironlb forward``'s per-connection events.

Events that can fire per connection (limits hit, no backend) produce one
line per interval, not one per event. The log set-up itself (flags, text or
JSON lines) is shared by every ironlb process: :mod:`ironlb.common.logs`.
"""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Log at most one line per ``interval`` seconds, counting the suppressed ones."""

    __slots__ = ("_interval", "_last", "_logger", "_suppressed")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last = -interval
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} more since the last message)"
        self._suppressed = 0
        self._last = now
        self._logger.warning(msg, *args)
