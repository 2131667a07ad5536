"""Passive outlier detection for one backend (pure logic: no sockets, no clock).

The forwarder watches the flows it sends anyway: a TCP connect that is
refused, unreachable or times out, a UDP session that gets an ICMP error or
no answer in time, is a *failure*; an established connection or an answered
datagram is a *success*. After :data:`FAILURES` failures in a row the backend
is taken out (*ejected*) for a hold-down; once it has passed, exactly one flow
(the *probe*) is let through: its success brings the backend back, its
failure ejects it again for twice as long (up to :data:`MAX_HOLD`). An ejected
backend is still used when nothing else is left (see the callers' ``choose``).

This is the shape of Envoy's outlier detection (``consecutive_5xx`` /
``consecutive_local_origin_failure``, ``base_ejection_time`` multiplied by the
number of ejections, ``max_ejection_time``) and of HAProxy's ``observe
layer4`` with ``error-limit`` and ``on-error mark-down`` (traffic errors mark
a server down; it comes back through checks, here through the probe flow).
The time is passed in (``loop.time()``, seconds) so the rules are testable
without waiting.
"""

from __future__ import annotations

#: Failures in a row that take a backend out.
FAILURES = 3
#: The first hold-down (seconds); each failed probe doubles it.
BASE_HOLD = 2.0
#: The longest hold-down (seconds).
MAX_HOLD = 60.0
#: A probe with no verdict after this long (seconds; a flow lost on a path that
#: records nothing) no longer blocks the next probe.
PROBE_WAIT = 30.0


class Outlier:
    """Failure counting and ejection state of one backend of one listener.

    ``out_until`` is 0.0 while the backend is in, else the loop time until
    which no new flow is admitted (the hold-down's end, or while a probe is
    open the time :data:`PROBE_WAIT` after it started); ``probing`` is True
    while the one probe flow is open, ``probe_at`` the time it started.
    """

    __slots__ = ("ejections", "failures", "out_until", "probe_at", "probing")

    def __init__(self) -> None:
        self.failures = 0  # failures in a row
        self.ejections = 0  # ejections since the backend was last in (grows the hold)
        self.out_until = 0.0
        self.probing = False
        self.probe_at = 0.0

    @property
    def out(self) -> bool:
        """True while the backend is ejected (held down or waiting for its probe)."""
        return self.out_until != 0.0

    def hold(self) -> float:
        """The hold-down (seconds) the current ejection lasts."""
        return min(BASE_HOLD * 2.0 ** max(self.ejections - 1, 0), MAX_HOLD)

    def admit(self, now: float) -> bool:
        """May a new flow go to this backend at ``now``?

        True while it is in. While out: False until the hold-down ends, then
        True once (that flow is the probe) and False again until the probe's
        result is recorded (or :data:`PROBE_WAIT` passed without one).
        """
        if not self.out_until:
            return True
        if now < self.out_until:
            return False
        self.probing = True
        self.probe_at = now
        self.out_until = now + PROBE_WAIT
        return True

    def failure(self, now: float) -> bool:
        """Record a failed flow at ``now``; True when it took the backend out
        (the in -> out transition, logged and counted once by the caller)."""
        self.failures += 1
        if self.out_until:
            if self.probing:  # the probe failed: out again, for longer
                self.probing = False
                self.ejections += 1
                self.out_until = now + self.hold()
            return False
        if self.failures < FAILURES:
            return False
        self.ejections = 1
        self.out_until = now + self.hold()
        return True

    def success(self) -> bool:
        """Record a working flow; True when it brought the backend back in."""
        self.failures = 0
        if not self.out_until:
            return False
        self.out_until = 0.0
        self.ejections = 0
        self.probing = False
        return True

    def abandon(self) -> None:
        """A flow ended with no verdict (closed before it could tell, or never
        started for want of a descriptor): if it was the probe, the next flow
        probes instead."""
        if self.probing:
            self.probing = False
            self.out_until = self.probe_at
