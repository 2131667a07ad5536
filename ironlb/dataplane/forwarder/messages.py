"""What the control process and its worker processes say to each other.

Small frozen dataclasses, pickled over a ``multiprocessing`` pipe: the
control process sends :class:`Apply` and :class:`CloseDraining`; a worker
answers :class:`Applied` once done, and sends :class:`Stats` once a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ironlb.dataplane.forwarder.stats import Snapshot
from ironlb.dataplane.state import DesiredState, IPAddress, ListenerKey


@dataclass(frozen=True)
class Apply:
    """Control -> worker: serve ``state`` (its proxy-mode listeners) as ``generation``.

    ``slots`` maps listeners to their slot of the shared limit counts
    (:mod:`.shared_limits`); a listener without one counts its limits per worker.
    """

    generation: int
    state: DesiredState
    slots: dict[ListenerKey, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CloseDraining:
    """Control -> worker: close the open connections (UDP sessions) of the
    removed listeners on ``vips`` (the VIPs are about to leave this host), then
    answer :class:`Applied` with ``generation``."""

    generation: int
    vips: frozenset[IPAddress]


@dataclass(frozen=True)
class Applied:
    """Worker -> control: ``generation`` is served; ``errors`` maps listener -> bind error."""

    generation: int
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    """Worker -> control: the worker's counters (see :mod:`.stats`)."""

    snapshot: Snapshot


WorkerMessage = Applied | Stats
