"""One node's data plane, driven by one call: ``await DataPlane.apply(state)``.

:class:`DataPlane` owns everything that forwards or announces on the node:

* the uvloop worker processes (:class:`~.forwarder.workers.WorkerPool`) for
  the ``proxy``-mode listeners,
* ``table inet ironlb`` (:class:`~.fastpath.kernel_path.KernelPath`) for the
  ``kernel``-mode listeners: a stale table from a dead ironlb is removed at
  start, another live ironlb's table is never overwritten, and the table is
  checked every :data:`KERNEL_CHECK_INTERVAL` s and rewritten when flushed or
  changed,
* VIP binding on ``lo`` and the ARP/NDP announcer
  (:class:`~.vip_announcement.VipAnnouncement`) for the owned VIPs.

``ironlb forward`` feeds it from a YAML file, SIGHUP and health checks;
``ironlb speaker`` from Kubernetes objects. :meth:`DataPlane.apply` is
declarative (options included) and ordered so that no client is ever sent
to a node that would refuse it: listeners first (kernel table, then the
workers' acknowledgement), VIPs second (a new VIP is bound, then
announced; a VIP given up stops being announced, then is unbound). A
backend that is its own proxy listener (an endpoint equal to the VIP and
port) is left out with a warning: it would loop every connection (:mod:`.loops`).
:meth:`DataPlane.stop` reverses it: stop announcing (peers take over),
stop accepting, let open connections finish for up to ``drain_seconds``,
close the rest (clients get FIN/RST from the VIP), unbind, remove the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from ironlb.common.addresses import address_sort_key
from ironlb.dataplane.fastpath.kernel_path import KernelPath, KernelPathError
from ironlb.dataplane.forwarder.fd_limits import NofileGuard
from ironlb.dataplane.forwarder.stats import Snapshot
from ironlb.dataplane.forwarder.uvloop_steps import UnverifiedUvloop, require_verified_uvloop
from ironlb.dataplane.forwarder.workers import WorkerPool
from ironlb.dataplane.loops import without_self_loops
from ironlb.dataplane.settings import AnnounceConfig, DataPlaneSettings
from ironlb.dataplane.state import Backend, DesiredState, IPAddress, ListenerKey

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ironlb.dataplane.vip_announcement import VipAnnouncement

log = logging.getLogger("ironlb.dataplane")

#: Seconds to wait for every worker to acknowledge a new state.
APPLY_TIMEOUT = 10.0
#: Seconds between checks that the kernel table is still there and unchanged.
KERNEL_CHECK_INTERVAL = 2.0
#: Seconds an announcing data plane keeps accepting after it stopped announcing.
HANDOVER_SECONDS = 2.0
#: Worker counters arrive once a second: a drain waits at least this long for fresh ones.
_STATS_LAG = 1.2


class DataPlaneError(RuntimeError):
    """The state could not be served (kernel table refused, VIPs cannot be owned)."""


class DataPlane:
    """The node's forwarding and announcing, from one :class:`DesiredState` at a time.

    Call :meth:`start` once on the running loop, :meth:`apply` for each new
    state (calls are serialised; the last one wins), :meth:`stop` at the end.
    ``bind_errors`` holds the listeners the workers could not bind (they are
    retried every few seconds).
    """

    def __init__(
        self, settings: DataPlaneSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.state = DesiredState()
        self.bind_errors: dict[str, str] = {}
        self.workers = WorkerPool(
            settings.workers, log_format=settings.log_format, log_level=settings.log_level
        )
        self.kernel = KernelPath()
        self._announce_config: AnnounceConfig | None = settings.announce
        self._announcement: VipAnnouncement | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self._stopped = False
        self._proxy: DesiredState | None = None
        self._nofile = NofileGuard()
        self._kernel_watch: asyncio.Task[None] | None = None
        self._kernel_problem = ""
        self._loops: frozenset[tuple[ListenerKey, Backend]] = frozenset()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and, when announcing, the binder and the announcer.

        Raises :class:`DataPlaneError` when VIPs cannot be owned (no
        ``CAP_NET_RAW`` / ``CAP_NET_ADMIN``) or the installed uvloop is not
        one the TCP forwarder was verified with (:mod:`.forwarder.uvloop_steps`).
        """
        try:
            require_verified_uvloop()
        except UnverifiedUvloop as exc:
            raise DataPlaneError(str(exc)) from exc
        try:
            self.kernel.clear_stale()
        except KernelPathError as exc:
            log.error("%s", exc)
        self.workers.start()
        self._started = True
        self._kernel_watch = asyncio.get_running_loop().create_task(self._watch_kernel())
        await self._open_announcement(self._announce_config)

    async def apply(self, state: DesiredState) -> dict[str, str]:
        """Serve ``state``; returns bind errors by listener (empty when all bound).

        Raises :class:`DataPlaneError` when the kernel table is refused (the
        previous table keeps serving) or when ``state`` owns VIPs and this data
        plane does not announce. Applying an equal state again changes nothing.
        """
        if not self._started or self._stopped:
            raise DataPlaneError("the data plane is not running")
        async with self._lock:
            if state.vips and self._announcement is None:
                vips = ", ".join(str(v) for v in sorted(state.vips, key=address_sort_key))
                raise DataPlaneError(f"cannot own {vips}: this data plane does not announce")
            try:
                self.kernel.apply(state)
            except KernelPathError as exc:
                raise DataPlaneError(str(exc)) from exc
            proxy = self._without_loops(state.only("proxy").with_vips(()))
            if proxy != self._proxy:
                self._nofile.ensure(proxy)
                generation = self.workers.publish(proxy)
                errors = await self.workers.wait_applied(generation, APPLY_TIMEOUT)
                if errors is None:
                    log.warning("workers did not acknowledge the new state in %.0fs", APPLY_TIMEOUT)
                    errors = {}
                self.bind_errors = errors
                self._proxy = proxy
            if self._announcement is not None:
                await self._own(state)
            self.state = state
            return dict(self.bind_errors)

    async def set_announce(self, config: AnnounceConfig | None) -> None:
        """Announce with ``config`` from now on (``None``: own no VIPs any more).

        The current VIPs are given up first and taken again with the new
        settings. Raises :class:`DataPlaneError` as :meth:`start` does.
        """
        async with self._lock:
            if config == self._announce_config and (
                config is None or self._announcement is not None
            ):
                return
            if self._announcement is not None:
                await self._announcement.stop()
                self._announcement = None
            self._announce_config = config
            await self._open_announcement(config)
            if self._announcement is not None:
                await self._own(self.state)
            else:
                self.state = self.state.with_vips(())

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Hand over and shut down: stop announcing, stop accepting, drain, close,
        unbind, remove the table.

        ``drain_seconds``: how long open connections (and UDP sessions) may
        keep going after the VIPs stopped being announced; 0 closes at once.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._kernel_watch is not None:
            self._kernel_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._kernel_watch
            self._kernel_watch = None
        async with self._lock:
            announcement, self._announcement = self._announcement, None
            if announcement is not None:
                announcement.withdraw()
            if drain_seconds > 0 and self._started:
                if announcement is not None:
                    # Peers are taking the VIPs over; until the LAN has heard them,
                    # new clients still arrive here and are served.
                    await asyncio.sleep(min(HANDOVER_SECONDS, drain_seconds))
                # Stop accepting (the proxy listeners drain), then wait for the open flows.
                generation = self.workers.publish(DesiredState())
                await self.workers.wait_applied(generation, APPLY_TIMEOUT)
                await self._drain(drain_seconds)
            if self._started:
                await self.workers.stop()
            if announcement is not None:
                try:
                    await announcement.stop()
                except OSError as exc:
                    log.error("cannot remove the VIPs: %s", exc)
            try:
                self.kernel.remove()
            except KernelPathError as exc:
                log.error("%s", exc)

    # -- metrics -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The proxy counters of all workers, summed."""
        return self.workers.snapshot()

    def missing_interfaces(self) -> dict[str, frozenset[str]]:
        """Per owned VIP (as text), the interfaces of its scope that are not served."""
        if self._announcement is None:
            return {}
        return {str(v): n for v, n in self._announcement.missing_interfaces().items()}

    def backend_up(self) -> dict[tuple[str, str], bool]:
        """``{(listener, backend): ready}`` of the applied state."""
        return {
            (str(key), str(backend)): backend.ready
            for key, spec in self.state.listeners.items()
            for backend in spec.backends
        }

    # -- internals -----------------------------------------------------------------

    def _without_loops(self, proxy: DesiredState) -> DesiredState:
        """``proxy`` less the backends that are their own listener (a pod endpoint
        equal to its Service's VIP and port would loop every connection); one
        warning per such backend while it lasts."""
        proxy, found = without_self_loops(proxy)
        dropped = frozenset((key, replace(backend, ready=True)) for key, backend in found)
        for key, backend in sorted(dropped):
            if (key, backend) not in self._loops:
                log.warning(
                    "listener %s: backend %s is the listener itself, left out "
                    "(it would loop every connection)",
                    key,
                    backend,
                )
        self._loops = dropped
        return proxy

    async def _watch_kernel(self) -> None:
        """Every :data:`KERNEL_CHECK_INTERVAL` s, rewrite the table if it went missing
        (``nft flush ruleset``) or was changed; problems are logged once each."""
        while True:
            await asyncio.sleep(KERNEL_CHECK_INTERVAL)
            async with self._lock:
                if self._stopped:
                    return
                try:
                    self.kernel.repair()
                    self._kernel_problem = ""
                except KernelPathError as exc:
                    if str(exc) != self._kernel_problem:
                        self._kernel_problem = str(exc)
                        log.error("%s", exc)

    async def _open_announcement(self, config: AnnounceConfig | None) -> None:
        if config is None:
            return
        from ironlb.dataplane.vip_announcement import RELEASE_DELAY, VipAnnouncement

        announcement = VipAnnouncement(
            config,
            registry=self.registry,
            release_delay=max(RELEASE_DELAY, self.settings.drain_seconds),
            before_unbind=self._close_released,
        )
        try:
            await announcement.start(())
        except (OSError, RuntimeError) as exc:
            raise DataPlaneError(f"cannot announce: {exc}") from exc
        self._announcement = announcement

    async def _close_released(self, vips: frozenset[IPAddress]) -> None:
        """The removed listeners on ``vips`` close their open connections before
        the VIPs leave ``lo`` (a client sees a reset, not a silent stall)."""
        if not self._started or self._stopped:
            return
        generation = self.workers.close_draining(vips)
        if await self.workers.wait_applied(generation, APPLY_TIMEOUT) is None:
            log.warning("workers did not close the connections of %d VIP(s) in time", len(vips))

    async def _own(self, state: DesiredState) -> None:
        assert self._announcement is not None
        before = self._announcement.vips
        try:
            await self._announcement.update({v: state.announce.get(v) for v in state.vips})
        except (OSError, RuntimeError) as exc:
            raise DataPlaneError(f"cannot own the VIPs: {exc}") from exc
        if state.vips != before:
            log.info(
                "owned VIPs: %s",
                ", ".join(str(v) for v in sorted(state.vips, key=address_sort_key)) or "none",
            )

    async def _drain(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        await asyncio.sleep(min(_STATS_LAG, seconds))
        while loop.time() < deadline:
            flows = self.workers.open_flows()
            if flows == 0:
                log.info("drained: no open connections left")
                return
            await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
        log.info(
            "drain period of %.0fs over: closing %d open connection(s)",
            seconds,
            self.workers.open_flows(),
        )
