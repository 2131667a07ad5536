"""Who owns ``table inet ironlb``: an owner mark written into the table's comment.

One data plane per network namespace may write the table. Each writes its
mark, ``ironlb pid=<pid> start=<ticks>``, as the table's ``comment``; the
process start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot)
tells a live owner from a recycled PID. Reading the mark back answers the
three questions the kernel path asks: is this table mine, does a live process
own it (then refuse, naming it), or is it stale (its owner is gone, or it
carries no mark: remove it). Pure apart from reading ``/proc``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Owner", "describe_process", "owner_of_listing"]

_MARK = re.compile(r"^ironlb pid=(\d+) start=(\d+)$")
_COMMENT = re.compile(r'^\s*comment "([^"]*)"\s*$', re.M)


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) if len(fields) > 19 else None


def describe_process(pid: int) -> str:
    """``pid N (command line)`` for messages; ``pid N`` when /proc does not say."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"pid {pid} ({cmdline[:120]})" if cmdline else f"pid {pid}"


@dataclass(frozen=True)
class Owner:
    """A process that may own the table: its PID and start time (clock ticks since boot)."""

    pid: int
    start: int

    @classmethod
    def me(cls) -> Owner:
        """The calling process. Raises ``RuntimeError`` when /proc cannot say its start time."""
        pid = os.getpid()
        start = _start_ticks(pid)
        if start is None:
            raise RuntimeError(f"cannot read /proc/{pid}/stat")
        return cls(pid, start)

    @property
    def mark(self) -> str:
        """The table comment that names this owner."""
        return f"ironlb pid={self.pid} start={self.start}"

    @classmethod
    def parse(cls, mark: str) -> Owner | None:
        """The owner a comment names, or None when it is not an owner mark."""
        match = _MARK.match(mark)
        return cls(int(match[1]), int(match[2])) if match else None

    def alive(self) -> bool:
        """Whether this very process (same PID and start time) still runs."""
        return _start_ticks(self.pid) == self.start


def owner_of_listing(listing: str) -> Owner | None:
    """The owner named by ``nft list table`` output (None: no mark, a stale table)."""
    match = _COMMENT.search(listing)
    return Owner.parse(match[1]) if match else None
