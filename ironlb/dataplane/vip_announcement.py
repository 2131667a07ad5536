"""Owning VIPs on a host: bind them on ``lo`` and announce them on the LAN.

This joins the two L2 halves in the order that keeps a client from ever
being sent to a node that would refuse it: on takeover the VIP is bound on
``lo`` first and announced second; on release it stops being announced first
and is unbound :data:`RELEASE_DELAY` seconds later (make before break: the
node that takes the VIP over learns of the change on its own watch and then
sends its gratuitous ARP; until the LAN has heard it, clients still send to
this host, which keeps serving them instead of dropping their SYNs; a VIP
won back within the delay is never unbound at all). The standalone data
plane (``ironlb forward`` with an ``announce`` section) uses it for its
listener addresses, the speaker for the VIPs it wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ironlb.dataplane.l2.announcer import Announcer
from ironlb.dataplane.settings import AnnounceConfig
from ironlb.dataplane.state import IPAddress
from ironlb.dataplane.vip import VipBinder

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

#: Seconds a VIP given up stays bound on ``lo`` after it stops being announced.
RELEASE_DELAY = 5.0


class VipAnnouncement:
    """Announces exactly the VIPs it is given and binds them on ``lo``; a VIP
    given up stays bound for ``release_delay`` seconds, then ``before_unbind``
    is awaited with the VIPs about to leave (the data plane closes what is
    still open on them) and they are unbound; :meth:`stop` releases all."""

    def __init__(
        self,
        config: AnnounceConfig,
        registry: CollectorRegistry | None = None,
        release_delay: float = RELEASE_DELAY,
        before_unbind: Callable[[frozenset[IPAddress]], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.release_delay = release_delay
        self._before_unbind = before_unbind
        # VIP given up -> loop time at which it comes off lo.
        self._releasing: dict[IPAddress, float] = {}
        self._release_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
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
        async with self._lock:
            # Release: stop answering first; the address leaves lo later.
            self._announcer.set_owned({v: scope[v] for v in kept})
            deadline = asyncio.get_running_loop().time() + self.release_delay
            for vip in self._vips - wanted:
                self._releasing[vip] = deadline
            for vip in wanted:
                self._releasing.pop(vip, None)
            # Takeover: the address is on lo before anyone is told to send to us.
            await self._sync(wanted)
            self._announcer.set_owned(scope)
            self._vips = wanted
        if self._releasing and self._release_task is None:
            self._release_task = asyncio.ensure_future(self._release_later())

    @property
    def releasing(self) -> frozenset[IPAddress]:
        """VIPs no longer announced but still bound on ``lo`` (for up to ``release_delay`` s)."""
        return frozenset(self._releasing)

    async def _sync(self, wanted: frozenset[IPAddress]) -> None:
        """Bind ``wanted`` and the VIPs whose release delay has not run out."""
        assert self._binder is not None
        now = asyncio.get_running_loop().time()
        leaving = frozenset(v for v, at in self._releasing.items() if at <= now)
        for vip in leaving:
            del self._releasing[vip]
        if leaving and self._before_unbind is not None:
            await self._before_unbind(leaving)
        await self._binder.sync_async(wanted | self._releasing.keys())

    async def _release_later(self) -> None:
        try:
            while self._releasing:
                now = asyncio.get_running_loop().time()
                await asyncio.sleep(max(min(self._releasing.values()) - now, 0.0) + 0.01)
                async with self._lock:
                    if self._binder is None:
                        return
                    await self._sync(self._vips)
        except OSError as exc:
            log.error("cannot unbind VIPs given up: %s (retried on the next change)", exc)
        finally:
            self._release_task = None

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
        if self._release_task is not None:
            self._release_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._release_task
        self._releasing.clear()
        self._announcer.set_owned(())
        await self._announcer.stop()
        try:
            await self._binder.release_all_async()
        finally:
            self._binder.close()
            self._binder = None
            self._vips = frozenset()
