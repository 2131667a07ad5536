"""Owning VIPs on a host: bind them on ``lo`` and announce them on the LAN.

This joins the two L2 halves in the order that keeps a client from ever
being sent to a node that would refuse it: on takeover the VIP is bound on
``lo`` first and announced second; on release it stops being announced first
and is unbound second. The standalone data plane (``ironlb forward`` with an
``announce`` section) uses it for its listener addresses; the speaker will
use it for the VIPs it wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ironlb.dataplane.l2.announcer import Announcer
from ironlb.dataplane.settings import AnnounceConfig
from ironlb.dataplane.state import IPAddress
from ironlb.dataplane.vip import VipBinder

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


class VipAnnouncement:
    """Binds and announces exactly the VIPs it is given; releases all on stop."""

    def __init__(self, config: AnnounceConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self._binder: VipBinder | None = None
        self._announcer = Announcer(
            config.interfaces or None,
            garp_repeat=config.garp.repeat,
            refresh_interval=config.garp.refresh,
            registry=registry,
        )
        self._vips: frozenset[IPAddress] = frozenset()

    @property
    def vips(self) -> frozenset[IPAddress]:
        return self._vips

    async def start(self, vips: Iterable[IPAddress]) -> None:
        """Open the announcer's sockets, then take ``vips`` over.

        Raises :class:`PermissionError` without ``CAP_NET_RAW`` / ``NET_ADMIN``.
        """
        self._binder = VipBinder("lo")
        try:
            await self._announcer.start()
        except BaseException:
            self._binder.close()
            self._binder = None
            raise
        await self.update(vips)
        log.info(
            "announcing on %s", ", ".join(sorted(self._announcer.interfaces)) or "no interface yet"
        )

    async def update(
        self, vips: Iterable[IPAddress] | Mapping[IPAddress, frozenset[str] | None]
    ) -> None:
        """Own exactly ``vips`` from now on; a mapping also gives each VIP the
        interfaces it is announced on (see :meth:`Announcer.set_owned`)."""
        if self._binder is None:
            raise RuntimeError("VipAnnouncement is not started")
        scope = dict(vips) if isinstance(vips, Mapping) else dict.fromkeys(vips)
        wanted = frozenset(scope)
        kept = wanted & self._vips
        # Release: stop answering first, then take the address off lo.
        self._announcer.set_owned({v: scope[v] for v in kept})
        # Takeover: the address is on lo before anyone is told to send to us.
        await self._binder.sync_async(wanted)
        self._announcer.set_owned(scope)
        self._vips = wanted

    def missing_interfaces(self) -> dict[IPAddress, frozenset[str]]:
        """Per owned VIP, the scoped interfaces that are not served."""
        return self._announcer.missing_interfaces()

    def withdraw(self) -> None:
        """Stop answering and announcing every VIP at once, but keep them bound on
        ``lo``: connections whose packets still reach this host are served until
        :meth:`stop` (a graceful hand-over: peers take the VIPs over meanwhile)."""
        self._announcer.set_owned(())

    async def stop(self) -> None:
        """Stop announcing, then remove every VIP this host bound."""
        if self._binder is None:
            return
        self._announcer.set_owned(())
        await self._announcer.stop()
        try:
            await self._binder.release_all_async()
        finally:
            self._binder.close()
            self._binder = None
            self._vips = frozenset()
