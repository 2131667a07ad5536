"""What the load benchmarks share: one load's sample, the medians over rounds,
the throughput columns, wrk's output and latencies, tool versions, table cells,
and turning SIGTERM into a clean shutdown."""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass, field
from types import FrameType

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_ms(text: str) -> float:
    """A wrk latency such as ``812.00us`` or ``1.20ms`` in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(out: str) -> tuple[float, int, float, float, int]:
    """(requests/s, requests, p50 ms, p99 ms, errors) from ``wrk --latency`` output.

    Errors are wrk's connect, write and timeout socket errors plus non-2xx/3xx
    responses; its read "errors" are left out, because that is how wrk counts the
    server's close after ``Connection: close``. Raises ValueError on output
    without the expected lines.
    """

    def find(pattern: str) -> str:
        match = re.search(pattern, out, re.M)
        if not match:
            raise ValueError(f"wrk output without {pattern!r}:\n{out}")
        return match[1]

    rps = float(find(r"Requests/sec:\s+([\d.]+)"))
    total = int(find(r"(\d+) requests in"))
    p50, p99 = wrk_ms(find(r"^\s+50%\s+(\S+)")), wrk_ms(find(r"^\s+99%\s+(\S+)"))
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += int(sock[1]) + int(sock[3]) + int(sock[4])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    return rps, total, p50, p99, errors


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


@dataclass
class Sample:
    """One load against one target in one round."""

    value: float  # req/s, conn/s or Gbit/s
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_pct: float | None = None  # CPU as % of one core (what is charged: see each bench)
    cpu_us_per_op: float | None = None  # per request / connection; bulk: CPU ms per GB
    errors: int = 0
    machine_us_per_op: float | None = None  # whole-machine CPU (/proc/stat) per op, µs
    time_wait_per_k: float | None = None  # client TIME_WAIT sockets per 1,000 connections
    syn_retrans_per_k: float | None = None  # client SYN retransmits per 1,000 connections
    paws_tw_per_k: float | None = None  # SYNs the server refused in TIME_WAIT, per 1,000


@dataclass
class Results:
    """Every sample of a run, by (target, load); medians over the rounds."""

    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, target: str, load: str, sample: Sample) -> None:
        self.samples.setdefault((target, load), []).append(sample)

    def median(self, target: str, load: str, attr: str) -> float | None:
        values = [
            v for s in self.samples.get((target, load), []) if (v := getattr(s, attr)) is not None
        ]
        return statistics.median(values) if values else None

    def errors(self, target: str, load: str) -> int:
        return sum(s.errors for s in self.samples.get((target, load), []))


# header, load, Sample attribute, digits
LOAD_COLUMNS: list[tuple[str, str, str, int]] = [
    ("keep-alive req/s", "keepalive", "value", 0),
    ("p50 ms", "keepalive", "p50_ms", 2),
    ("p99 ms", "keepalive", "p99_ms", 2),
    ("new conn/s", "close", "value", 0),
    ("p99 ms", "close", "p99_ms", 2),
    ("bulk 1 stream Gbit/s", "bulk1", "value", 2),
    ("bulk 4 streams Gbit/s", "bulk4", "value", 2),
]
