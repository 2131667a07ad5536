"""``ironlb forward``: a YAML file + SIGHUP + health checks -> DesiredState -> DataPlane.

The whole standalone balancer is this adapter over
:class:`~ironlb.dataplane.dataplane.DataPlane`:

* the file gives the listeners; with an ``announce`` section this host owns
  (binds and announces) every listener address;
* TCP health checks mark backends not ready; every verdict change becomes a
  new state;
* before the workers bind, listeners held by another process (a second
  ``ironlb forward``, which ``SO_REUSEPORT`` would let in silently) are
  refused, naming the holder (:mod:`.listener_holders`);
* SIGHUP re-reads the file; a bad file, or a new listener held by another
  process, is logged and the running config kept;
* SIGTERM/SIGINT stop: stop announcing, drain (``--drain-seconds``), close
  the listeners, unbind, exit 0;
* ``--metrics-address`` serves the workers' counters, summed.

Exit codes of :meth:`ForwardService.run`: 0 after a signal, 1 when a listener
cannot be bound, the kernel table is refused or VIPs cannot be owned at start,
2 when a listener is held by another process or the metrics address cannot be
served.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry

from ironlb.dataplane.config import ConfigError, ForwardConfig, load_config
from ironlb.dataplane.dataplane import DataPlane, DataPlaneError
from ironlb.dataplane.forwarder.healthcheck import HealthChecker
from ironlb.dataplane.listener_holders import held_listeners, held_message
from ironlb.dataplane.settings import DataPlaneSettings
from ironlb.dataplane.state import DesiredState

log = logging.getLogger("ironlb.forward")


class ForwardService:
    """Runs one ``ironlb forward`` until a signal; see the module docstring."""

    def __init__(
        self,
        config_path: str,
        config: ForwardConfig,
        settings: DataPlaneSettings,
        *,
        metrics_address: str | None = None,
        drain_seconds: float = 0.0,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.metrics_address = metrics_address
        self.drain_seconds = drain_seconds
        self.reloads = {"ok": 0, "failed": 0}
        self.registry = CollectorRegistry(auto_describe=False)
        self.dataplane = DataPlane(replace(settings, announce=config.announce), self.registry)
        self._health: HealthChecker | None = None
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._ready = False
        self._tasks: set[asyncio.Future[None]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        held = held_listeners(self.config.mode_keys("proxy"))
        if held:
            log.error("%s", held_message(held))
            return 2
        if self.metrics_address:
            try:
                self._serve_metrics(self.metrics_address)
            except OSError as exc:
                log.error("cannot serve metrics on %s: %s", self.metrics_address, exc.strerror)
                return 2
        self._health = HealthChecker(self._dirty.set)
        self._health.update(self._checks())
        log.info(
            "ironlb forward: %d listener(s), %d worker(s), config %s",
            len(self.config.listeners),
            self.dataplane.workers.count,
            self.config_path,
        )
        code = 0
        try:
            await self.dataplane.start()
            errors = await self.dataplane.apply(self._desired())
        except DataPlaneError as exc:
            log.error("%s", exc)
            code = 1
        else:
            if errors:
                for key, err in sorted(errors.items()):
                    log.error("listener %s: cannot bind: %s", key, err)
                code = 1
        if code == 0:
            log.info("ready: all workers are serving")
            self._ready = True
            follower = asyncio.create_task(self._follow())
            await self._stop.wait()
            follower.cancel()
        if self._health is not None:
            self._health.stop()
        await self.dataplane.stop(self.drain_seconds if code == 0 else 0.0)
        log.info("ironlb forward: stopped")
        return code

    # -- state ---------------------------------------------------------------------

    def _checks(self) -> list[Any]:
        return [
            (lst.key, backend, lst.health_check)
            for lst in self.config.listeners
            if lst.health_check is not None
            for backend in lst.backends
        ]

    def _desired(self) -> DesiredState:
        health = self._health
        return self.config.desired_state(health.down if health is not None else None)

    async def _follow(self) -> None:
        """Apply a new state whenever a health verdict or the config changed."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.dataplane.apply(self._desired())
            except DataPlaneError as exc:
                log.error("%s (the previous state keeps serving)", exc)

    def _reload_soon(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> None:
        """Re-read the config file (SIGHUP); keep the old one if it is bad or
        a listener it adds is held by another process (ours are not checked)."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.reloads["failed"] += 1
            log.error("reload failed, keeping the running config: %s", exc)
            return
        held = held_listeners(config.mode_keys("proxy") - self.config.mode_keys("proxy"))
        if held:
            self.reloads["failed"] += 1
            log.error("reload failed, keeping the running config: %s", held_message(held))
            return
        self.reloads["ok"] += 1
        changed = config != self.config
        self.config = config
        assert self._health is not None
        self._health.update(self._checks())
        if changed and self._ready:
            try:
                await self.dataplane.set_announce(config.announce)
            except DataPlaneError as exc:
                log.error("%s", exc)
            self._dirty.set()
        log.info("reloaded %s (%s)", self.config_path, "changed" if changed else "unchanged")

    # -- metrics ---------------------------------------------------------------------

    def _serve_metrics(self, address: str) -> None:
        from ironlb.dataplane.forwarder.metrics import ForwarderCollector, serve_metrics

        collector = ForwarderCollector(
            self.dataplane.snapshot,
            self.dataplane.backend_up,
            self.dataplane.workers.alive,
            lambda: dict(self.reloads),
        )
        serve_metrics(address, collector, self.registry)
        log.info("metrics on http://%s/metrics", address)
