"""Logging set-up for ``ironlb forward``: text or one-JSON-object-per-line.

Also a rate-limited logger for events that can fire per connection (limits
hit, no backend), so a flood produces one line per interval, not one per event.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "process", "msg", ...extra}`` on one line."""

    def __init__(self, process: str = "") -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self._process:
            out["process"] = self._process
        out["msg"] = record.getMessage()
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def setup_logging(fmt: str = "text", level: str = "INFO", process: str = "") -> None:
    """Configure the root logger (call once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        tag = f" [{process}]" if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


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
