"""Parsing and formatting shared by the benchmark scripts: wrk latencies,
tool versions, table cells, and turning SIGTERM into a clean shutdown."""

from __future__ import annotations

import re
import subprocess
from types import FrameType

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_ms(text: str) -> float:
    """A wrk latency such as ``812.00us`` or ``1.20ms`` in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def first_line(argv: list[str]) -> str:
    """The first line a command prints (stdout, else stderr), or ``?``."""
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def fmt(value: float | None, digits: int = 0) -> str:
    """A table cell: thousands separators, ``n/a`` for a missing value."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C, so ``finally`` blocks clean up."""
    raise KeyboardInterrupt(f"signal {signum}")
