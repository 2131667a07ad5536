"""Helpers for the lab clean-up tests: processes that must be gone, labs whose owner crashed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ironlb.lab.netlab import cleanup_stale
from ironlb.lab.netlab.plan import random_prefix


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """Wait until every pid has exited; returns those still alive after ``timeout``."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if pid_alive(p)]
    return left


@contextlib.contextmanager
def crashed_lab(tmp: Path, body: str) -> Iterator[tuple[str, str]]:
    """Run ``body`` (builds a ``Lab`` with ``prefix=sys.argv[1]``, prints one line) in a
    process that is then SIGKILLed, leaving its lab behind. Yields ``(prefix, line)``;
    everything of the prefix is removed afterwards, also when the test fails."""
    prefix = random_prefix()
    script = tmp / "crash.py"
    script.write_text(
        "import os, signal, subprocess, sys\nfrom ironlb.lab.netlab import Lab\n"
        + textwrap.dedent(body)
        + "\nsys.stdin.readline()\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        yield prefix, line
    finally:
        proc.kill()
        proc.wait()
        cleanup_stale(prefix)
