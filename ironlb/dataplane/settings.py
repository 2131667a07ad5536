"""How a node's data plane runs, as opposed to what it serves (:mod:`.state`).

These settings are fixed for the life of a
:class:`~ironlb.dataplane.dataplane.DataPlane`: how many worker processes,
how they log, and how owned VIPs are announced. ``ironlb forward`` takes them
from its flags and the file's ``announce`` section; ``ironlb speaker`` from
its flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GarpConfig:
    """When to send gratuitous ARP / unsolicited NA after taking a VIP over (seconds)."""

    repeat: tuple[float, ...] = (0.0, 0.5, 2.0)
    refresh: float = 30.0


@dataclass(frozen=True)
class AnnounceConfig:
    """Where and how owned VIPs are announced.

    ``interfaces``: the interfaces the announcer serves at all (empty: every
    up, broadcast-capable Ethernet interface); a state's per-VIP ``announce``
    scope narrows within them.
    """

    interfaces: tuple[str, ...] = ()
    garp: GarpConfig = field(default_factory=GarpConfig)


@dataclass(frozen=True)
class DataPlaneSettings:
    """``workers``: uvloop worker processes sharing the proxy listeners (>= 1).
    ``announce``: ``None`` means this data plane never owns VIPs (a state with
    ``vips`` is refused). ``drain_seconds``: how long the open connections of
    a removed listener may go on after its VIP stopped being announced; then
    they are closed (reset) and the VIP leaves ``lo`` (never sooner than
    :data:`~ironlb.dataplane.vip_announcement.RELEASE_DELAY`)."""

    workers: int = 1
    drain_seconds: float = 0.0
    log_format: str = "text"
    log_level: str = "info"
    announce: AnnounceConfig | None = None
