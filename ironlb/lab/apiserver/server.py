"""The local API server's lifecycle: bind, serve, stop; in the caller's loop or a thread."""

from __future__ import annotations

import asyncio
import os
import threading
from types import TracebackType

from aiohttp import web

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.cluster import Cluster
from ironlb.lab.apiserver.http import VERSION_INFO, ApiHandler
from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
from ironlb.lab.apiserver.store import ObjectStore


class LocalApiServer:
    """A Kubernetes-compatible API endpoint over plain HTTP (no auth), all state in memory.

    ``slow_paths`` (path -> seconds, settable at any time) holds back every
    non-watch request to exactly that path by that long before answering, to
    play a slow or overloaded API server; ``slowed_requests`` counts the
    answers so held back (both for tests). ``version_info`` is what
    ``GET /version`` answers (Kubernetes 1.32 unless a test changes it, at any
    time, to play an older server). ``forbidden_paths`` (settable at any time)
    answers every request to exactly those paths with 403 Forbidden, as RBAC
    would for a user without the permission.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 10_000,
        bookmark_interval: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.cluster = Cluster(ObjectStore(history_size))
        self._bookmark_interval = bookmark_interval
        self._runner: web.AppRunner | None = None
        self._handler: ApiHandler | None = None
        self.slow_paths: dict[str, float] = {}
        self.slowed_requests = 0
        self.version_info: dict[str, str] = dict(VERSION_INFO)
        self.forbidden_paths: set[str] = set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._handler is not None
        if request.path in self.forbidden_paths:
            denied = errors.ApiError(
                403, "Forbidden", f"{request.method} {request.path} is forbidden for this user"
            )
            return web.json_response(denied.status, status=403)
        delay = self.slow_paths.get(request.path)
        if not delay or request.query.get("watch") in ("true", "1"):
            return await self._handler.handle(request)
        await asyncio.sleep(delay)
        try:
            return await self._handler.handle(request)
        finally:
            self.slowed_requests += 1

    async def start(self) -> None:
        """Bind and serve; port 0 picks a free port (read it back from ``url``)."""
        if self._runner is not None:
            raise RuntimeError("the server is already started")
        app = web.Application(client_max_size=16 * 1024 * 1024)
        self._handler = ApiHandler(self.cluster, self._bookmark_interval, self.version_info)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """End every watch stream, close the listener and open connections."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.cluster.store.close_all_watches()
        await runner.cleanup()
        if self._handler is not None:
            await self._handler.admission.close()

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the server is not started")
        # A wildcard listener is reached through loopback by local clients.
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> None:
        """Write a kubeconfig (context ``ironlb-lab``) for this server to ``path``."""
        write_kubeconfig(path, self.url)


class ServerThread:
    """A :class:`LocalApiServer` on its own event loop in a daemon thread (for sync code)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = LocalApiServer(host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ironlb-lab-apiserver", daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
            raise
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    @property
    def url(self) -> str:
        return self.server.url

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> None:
        self.server.write_kubeconfig(path)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(host: str = "127.0.0.1", port: int = 0) -> ServerThread:
    """``with run_in_thread() as api: ...``: a started server for synchronous code."""
    return ServerThread(host, port)
