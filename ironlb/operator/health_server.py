"""The controller's HTTP side door: ``/metrics``, ``/healthz`` and ``/readyz`` on one address.

Served by aiohttp on the controller's own event loop, not from a thread as
``prometheus_client.start_http_server`` would (the speaker and forward do
that): an answer from ``/healthz`` then proves the loop itself turns (what a
liveness probe must catch), and the scrape-time gauges read the allocator
without racing it.

- ``/healthz`` (liveness): 200 ``ok`` whenever the loop answers.
- ``/readyz`` (readiness): 200 when logged in and watching, and either the
  leader with its state rebuilt and a valid Lease, or a standby that read
  the Lease within its duration; else 503 with the reason on one line.
- ``/metrics``: the Prometheus text format of the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer", "parse_address"]


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; empty host: all addresses) -> (host, port).

    Raises :class:`ValueError` naming what is wrong.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class HealthServer:
    """Serve the three endpoints on ``address`` until :meth:`stop`.

    ``not_ready()`` returns ``None`` when ready, else the reason (one line).
    :meth:`start` raises :class:`OSError` when the address cannot be bound.
    """

    def __init__(
        self,
        address: str,
        registry: CollectorRegistry,
        not_ready: Callable[[], str | None],
    ) -> None:
        self._host, self._port = parse_address(address)
        self._registry = registry
        self._not_ready = not_ready
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the asked one, or the one the kernel picked for 0)."""
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        reason = self._not_ready()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")
