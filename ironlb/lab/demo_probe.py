"""The demo's client loop: HTTP GETs to one address at a steady pace, then the longest gap.

``python -m ironlb.lab.demo_probe HOST PORT [--interval S] [--timeout S]`` runs
inside the lab's client namespace (``ip netns exec <prefix>-client ...``) while
``make demo`` kills the announcing speaker. Every ``--interval`` seconds
(default 0.025) it opens one TCP connection, sends ``GET / HTTP/1.0`` and reads
the answer until the server closes (the lab podserver answers ``POD PEER``).
It stops on SIGTERM, SIGINT or when its stdin closes, and prints one JSON line:
``{"requests": N, "answered": N, "failed": N, "longest_gap_ms": F,
"pods": {"web-...": N}, "timeline": [{"via": "node3", "from_ms": F, "to_ms": F,
"n": N}, {"via": "failed", ...}, ...]}``.

``via`` is the node that forwarded the request, read from the peer address the
pod saw (the podserver's ``PEER``): the proxy connects from its node's LAN
address ``198.18.0.(10+N)``, or from the pod gateway ``198.19.N.1`` when the pod
is on that node itself (the lab layout, :mod:`ironlb.lab.netlab.plan`). Runs of
requests through one node (or failing) are merged, times from the first request.

The gap is the longest time between two answered requests (in milliseconds,
from one answer's arrival to the next one's): what a client of the Service sees
during a failover, whatever the reason of the failures in between. It is a
separate small process, not a coroutine of the demo, so its timing does not
depend on the busy event loop that runs the whole lab cluster.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any


@dataclass
class Tally:
    """What the loop saw; times are ``time.monotonic()`` seconds."""

    requests: int = 0
    answered: int = 0
    failed: int = 0
    longest_gap: float = 0.0
    last_answer: float | None = None
    pods: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    #: [via, from, to, count] per run of requests through one node (or "failed").
    timeline: list[list[Any]] = field(default_factory=list)

    def record(self, now: float, pod: str | None, via: str = "?") -> None:
        """One request's outcome at ``now``: ``pod`` answered through ``via``, or None."""
        self.requests += 1
        if self.first is None:
            self.first = now
        where = via if pod is not None else "failed"
        if self.timeline and self.timeline[-1][0] == where:
            self.timeline[-1][2] = now
            self.timeline[-1][3] += 1
        else:
            self.timeline.append([where, now, now, 1])
        if pod is None:
            self.failed += 1
            return
        self.answered += 1
        self.pods[pod] += 1
        if self.last_answer is not None:
            self.longest_gap = max(self.longest_gap, now - self.last_answer)
        self.last_answer = now

    def summary(self) -> dict[str, object]:
        """The JSON-ready result (``longest_gap_ms`` rounded to 0.1 ms)."""
        return {
            "requests": self.requests,
            "answered": self.answered,
            "failed": self.failed,
            "longest_gap_ms": round(self.longest_gap * 1000, 1),
            "pods": dict(sorted(self.pods.items())),
            "timeline": [
                {
                    "via": via,
                    "from_ms": round((start - (self.first or 0.0)) * 1000, 1),
                    "to_ms": round((end - (self.first or 0.0)) * 1000, 1),
                    "n": n,
                }
                for via, start, end, n in self.timeline
            ],
        }


def parse_answer(answer: bytes) -> tuple[str, str] | None:
    """``(pod, peer)`` from an HTTP answer of the lab podserver (body ``POD PEER``), or None."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        return None
    words = body.decode(errors="replace").split()
    return (words[0], words[1] if len(words) > 1 else "") if words else None


def via_node(peer: str) -> str:
    """The lab node that forwarded, from the peer ``ADDR:PORT`` the pod saw; else ``ADDR``.

    ``198.18.0.(10+N)`` (node N's LAN address) and ``198.19.N.1`` (node N's pod
    gateway) are node N, after the lab layout in :mod:`ironlb.lab.netlab.plan`.
    """
    addr = peer.rsplit(":", 1)[0]
    parts = addr.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        a, b, c, d = (int(p) for p in parts)
        if (a, b, c) == (198, 18, 0) and 11 <= d <= 99:
            return f"node{d - 10}"
        if (a, b) == (198, 19) and d == 1 and c >= 1:
            return f"node{c}"
    return addr or "?"


def get_once(host: str, port: int, timeout: float) -> tuple[str, str] | None:
    """One ``GET /`` over a new connection; ``(pod, peer)``, or None on any failure."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return parse_answer(b"".join(chunks))


def run(host: str, port: int, interval: float, timeout: float, stop: threading.Event) -> Tally:
    """Loop until ``stop`` is set; each request starts ``interval`` s after the previous one."""
    tally = Tally()
    while not stop.is_set():
        started = time.monotonic()
        answer = get_once(host, port, timeout)
        if answer is None:
            tally.record(time.monotonic(), None)
        else:
            tally.record(time.monotonic(), answer[0], via_node(answer[1]))
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit 0 after printing the summary, 2 for bad arguments (argparse)."""
    parser = argparse.ArgumentParser(prog="demo_probe", description=__doc__.split("\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--interval", type=float, default=0.025, help="seconds between GETs")
    parser.add_argument("--timeout", type=float, default=0.5, help="seconds per GET")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.timeout <= 0:
        parser.error("--interval and --timeout must be positive")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    tally = run(args.host, args.port, args.interval, args.timeout, stop)
    print(json.dumps(tally.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
