"""Watch streams: newline-delimited JSON events over a chunked HTTP response.

Honours ``resourceVersion`` (absent or "0": an ADDED event per existing object
first; otherwise every retained event after it, or one ERROR event with a 410
``Expired`` Status when that history is gone), ``timeoutSeconds``,
``allowWatchBookmarks`` (a BOOKMARK when idle for the bookmark interval) and
``sendInitialEvents`` (a BOOKMARK annotated ``k8s.io/initial-events-end``
after the initial ADDED events). With a selector, objects entering or leaving
the selection are sent as ADDED or DELETED, as the real apiserver does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.cluster import render
from ironlb.lab.apiserver.registry import ResourceType
from ironlb.lab.apiserver.store import Event, ObjectStore, TooOldError, Watch

log = logging.getLogger(__name__)

TRUE = ("true", "1")
Present = Callable[[dict[str, Any]], dict[str, Any]]


class WatchStream:
    """One watch request of one resource type."""

    def __init__(
        self,
        store: ObjectStore,
        rtype: ResourceType,
        accept: Callable[[Mapping[str, Any]], bool],
        present: Present,
    ) -> None:
        self.store = store
        self.rtype = rtype
        self.accept = accept
        self.present = present

    async def serve(
        self, request: web.Request, namespace: str | None, bookmark_interval: float
    ) -> web.StreamResponse:
        query = request.query
        since_text = query.get("resourceVersion", "")
        try:
            since = None if since_text in ("", "0") else int(since_text)
            timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        except ValueError as exc:
            raise errors.bad_request(f"invalid watch parameter: {exc}") from exc
        bookmarks = query.get("allowWatchBookmarks", "").lower() in TRUE
        initial_end = query.get("sendInitialEvents", "").lower() in TRUE
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            backlog, watch = self.store.watch(self.rtype.storage_key, namespace, since)
            subscribed_rv = self.store.resource_version  # every later event is in watch.queue
        except TooOldError as exc:
            await response.prepare(request)
            gone = errors.gone(str(exc.requested), str(exc.oldest)).status
            await self._send(response, "ERROR", gone)
            await response.write_eof()
            return response
        try:
            await response.prepare(request)
            for event in backlog:
                await self._send_event(response, event)
            if initial_end and since is None:
                await self._send_bookmark(response, subscribed_rv, initial_events_end=True)
            await self._stream(response, watch, timeout, bookmark_interval if bookmarks else None)
            await response.write_eof()
        except ConnectionResetError:
            log.debug("watch client went away")
        finally:
            self.store.unwatch(watch)
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        watch: Watch,
        timeout: float | None,
        bookmark_interval: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = bookmark_interval
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            try:
                event = await asyncio.wait_for(watch.queue.get(), wait)
            except TimeoutError:
                if bookmark_interval is not None and watch.queue.empty():
                    await self._send_bookmark(response, self.store.resource_version)
                continue
            if event is None:  # the server is stopping
                return
            await self._send_event(response, event)

    async def _send_event(self, response: web.StreamResponse, event: Event) -> None:
        now_in = self.accept(event.obj)
        if event.type == "MODIFIED" and event.old is not None:
            was_in = self.accept(event.old)
            kind = {(True, True): "MODIFIED", (False, True): "ADDED", (True, False): "DELETED"}.get(
                (was_in, now_in)
            )
            if kind is None:
                return
        elif now_in:
            kind = event.type
        else:
            return
        await self._send(response, kind, self.present(render(self.rtype, event.obj)))

    async def _send_bookmark(
        self, response: web.StreamResponse, resource_version: int, initial_events_end: bool = False
    ) -> None:
        metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
        if initial_events_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        bookmark = {"kind": self.rtype.kind, "apiVersion": self.rtype.api_version}
        await self._send(response, "BOOKMARK", {**bookmark, "metadata": metadata})

    @staticmethod
    async def _send(response: web.StreamResponse, kind: str, obj: Mapping[str, Any]) -> None:
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
