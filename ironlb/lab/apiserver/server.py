"""The local API server's lifecycle: bind, serve, stop; in the caller's loop or a thread."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from datetime import UTC, datetime
from types import TracebackType

from aiohttp import web

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.audit import AuditLog, audit_event, request_info
from ironlb.lab.apiserver.cluster import Cluster
from ironlb.lab.apiserver.http import VERSION_INFO, ApiHandler
from ironlb.lab.apiserver.identity import TokenRequestError, Tokens, token_request
from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
from ironlb.lab.apiserver.protobody import MEDIA_TYPE as PROTOBUF
from ironlb.lab.apiserver.protobody import decode as decode_protobuf
from ironlb.lab.apiserver.protobody import encode as encode_protobuf
from ironlb.lab.apiserver.protobody import prefers_protobuf
from ironlb.lab.apiserver.store import ObjectStore

#: The TokenRequest subresource of a ServiceAccount.
_TOKEN_REQUEST = re.compile(
    r"/api/v1/namespaces/(?P<ns>[^/]+)/serviceaccounts/(?P<name>[^/]+)/token"
)


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

    ``audit`` (optional) receives an ``audit.k8s.io/v1`` Event per request,
    with the caller :attr:`tokens` resolves (:mod:`~ironlb.lab.apiserver.audit`).
    ServiceAccount tokens are issued by the TokenRequest subresource,
    ``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`` (404 when the
    ServiceAccount does not exist), or directly by ``tokens.issue``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 10_000,
        bookmark_interval: float = 30.0,
        audit: AuditLog | None = None,
    ) -> None:
        self.host = host
        self.audit = audit
        self.tokens = Tokens()
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
        if self.audit is None:
            return await self._serve(request)
        received = datetime.now(UTC)
        info = request_info(request.method, request.path, request.query)

        def record(code: int, stage: str = "ResponseComplete") -> None:
            assert self.audit is not None
            event = audit_event(
                info,
                self.tokens.user(request.headers.get("Authorization")),
                request_uri=request.path_qs,
                code=code,
                user_agent=request.headers.get("User-Agent", ""),
                source_ip=request.remote or "",
                received=received,
                completed=datetime.now(UTC),
            )
            event["stage"] = stage
            self.audit.record(event)

        if info.verb == "watch":  # long-running: recorded when the stream starts, as kube does
            record(200, "ResponseStarted")
            return await self._serve(request)
        response = await self._serve(request)
        record(response.status)
        return response

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        assert self._handler is not None
        token_for = _TOKEN_REQUEST.fullmatch(request.path)
        if token_for is not None and request.method == "POST":
            return await self._token_request(request, token_for["ns"], token_for["name"])
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

    async def _token_request(self, request: web.Request, ns: str, name: str) -> web.Response:
        """TokenRequest: a token for an existing ServiceAccount (201), else a Status."""
        accounts = self.cluster.registry.lookup("", "v1", "serviceaccounts")
        assert accounts is not None
        try:
            self.cluster.get(accounts, ns, name)
            raw = await request.read()
            if request.content_type == PROTOBUF:
                body: object = decode_protobuf(raw)
            else:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise errors.bad_request(f"TokenRequest body is not JSON: {exc}") from exc
            answer = token_request(body, self.tokens.issue(ns, name), datetime.now(UTC), ns, name)
        except TokenRequestError as exc:
            return web.json_response(errors.bad_request(str(exc)).status, status=400)
        except errors.ApiError as exc:
            return web.json_response(exc.status, status=exc.code)
        wire = encode_protobuf(answer) if prefers_protobuf(request.headers.get("Accept")) else None
        if wire is not None:
            return web.Response(body=wire, status=201, content_type=PROTOBUF)
        return web.json_response(answer, status=201)

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
        """End every watch stream, close the listener and open connections (and the
        audit log's file)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.cluster.store.close_all_watches()
        await runner.cleanup()
        if self._handler is not None:
            await self._handler.admission.close()
        if self.audit is not None:
            self.audit.close()

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
