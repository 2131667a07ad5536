"""File descriptors the listeners' limits need, and ``RLIMIT_NOFILE``.

Each proxied TCP connection holds two descriptors (client and upstream),
each UDP session one (its connected upstream socket), each listener one.
Since the limits are per listener across the workers
(:mod:`.shared_limits`), any one worker may hold all of them. As HAProxy
does from ``maxconn``, the soft ``RLIMIT_NOFILE`` is raised at start (and
whenever a new state needs more) to what the limits need, up to the hard
limit; when the hard limit is lower, one warning says so, and connections
that find no descriptor at run time are closed and counted
(``ironlb_forward_fd_exhausted_total``) instead of failing with a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import resource

from ironlb.dataplane.state import DesiredState

log = logging.getLogger("ironlb.forward")

#: Descriptors besides the listeners' (pipes, epoll, health checks, metrics, logs).
SLACK = 64
#: ``errno`` values that mean "no descriptor left" (process / system table full).
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})
#: Descriptors kept free for accepting: libuv accepts every pending connection
#: before the forwarder sees any, and one that finds the table full is closed by
#: libuv unseen (uncounted). Refusing new work this far from the limit leaves
#: room to accept, close and count a burst of up to this many.
RESERVE = 64


def fds_needed(state: DesiredState) -> int:
    """Descriptors one process needs to serve every listener of ``state`` at its limits
    (plus :data:`SLACK` and the accept :data:`RESERVE`)."""
    total = SLACK + RESERVE
    for key, spec in state.listeners.items():
        opts = spec.options
        total += 1 + (2 * opts.max_connections if key.protocol == "tcp" else opts.udp_max_sessions)
    return total


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` toward ``needed`` (never above the hard
    limit, never lowered); returns the ``(soft, hard)`` limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. above fs.nr_open
            pass
    return soft, hard


class NofileGuard:
    """Raises the limit for each new state; warns once per shortfall."""

    def __init__(self) -> None:
        self._warned: tuple[int, int] | None = None

    def ensure(self, state: DesiredState) -> None:
        """Raise the soft limit for ``state``; log one warning if it stays too low."""
        needed = fds_needed(state)
        soft, _ = raise_nofile(needed)
        if soft < needed and self._warned != (needed, soft):
            self._warned = (needed, soft)
            log.warning(
                "RLIMIT_NOFILE is %d (hard limit) but the listeners' limits need %d file "
                "descriptors (2 per TCP connection, 1 per UDP session): connections beyond "
                "it are closed and counted as fd_exhausted; raise LimitNOFILE= / ulimit -Hn",
                soft,
                needed,
            )


class FdBudget:
    """One worker's descriptors, counted so that work is refused before ``EMFILE``.

    ``used`` counts what the listeners hold (2 per TCP connection from
    admission to the client's close, 1 per UDP session); ``base`` is every
    other open descriptor, measured by :meth:`measure` (at each apply).
    :meth:`take` refuses once ``base + used`` would come within
    :data:`RESERVE` of the soft limit.
    """

    __slots__ = ("base", "room", "used")

    def __init__(self) -> None:
        self.used = 0
        self.base = 0
        self.room = 1 << 62

    def measure(self) -> None:
        """Re-read the soft limit and the descriptors open besides ours."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            open_now = len(os.listdir("/proc/self/fd")) - 1  # the listing's own
        except OSError:
            open_now = self.used + SLACK
        self.base = max(open_now - self.used, 0)
        self.room = soft - RESERVE if soft != resource.RLIM_INFINITY else 1 << 62

    def take(self, count: int) -> bool:
        """Count ``count`` more descriptors unless that passes the room; True when counted."""
        if self.base + self.used + count > self.room:
            return False
        self.used += count
        return True

    def give(self, count: int) -> None:
        """Count ``count`` descriptors less (what :meth:`take` counted)."""
        self.used -= count
