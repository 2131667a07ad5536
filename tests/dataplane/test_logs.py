"""Structured logging: JSON lines, and rate limiting of per-connection events."""

from __future__ import annotations

import json
import logging

import pytest

from ironlb.common.logs import JsonFormatter
from ironlb.dataplane.forwarder.logs import RateLimitedLog


def test_json_lines_carry_message_level_and_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "ironlb.forward",
            "levelno": 30,
            "levelname": "WARNING",
            "msg": "listener %s: down",
            "args": ("tcp/127.0.0.1:80",),
            "backend": "10.0.0.1:80",
        }
    )
    line = JsonFormatter("worker-1").format(record)
    data = json.loads(line)
    assert data["msg"] == "listener tcp/127.0.0.1:80: down"
    assert data["level"] == "warning"
    assert data["logger"] == "ironlb.forward"
    assert data["backend"] == "10.0.0.1:80"
    assert data["process"] == "worker-1"
    assert data["ts"].endswith("Z")


def test_rate_limited_log_counts_what_it_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for _ in range(50):
            limited.warning("limit %d reached", 10)
    assert [r.getMessage() for r in caplog.records] == ["limit 10 reached"]
    limited._last -= 7200  # the interval has passed
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        limited.warning("limit %d reached", 10)
    assert caplog.records[-1].getMessage() == "limit 10 reached (49 more since the last message)"
