"""Post core/v1 Events about Services, off the hot path.

:meth:`EventRecorder.emit` only queues; a few workers post. Posting is gated
by ``allowed()`` (the controller is leader) so a replica that just lost its
lease writes nothing more. A full queue drops the oldest-style surplus with a
log line rather than slowing allocation down: Events are for humans.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ironlb.common.kubetime import format_micro_time, format_time
from ironlb.operator.k8s_adapter import ApiError, KubeApi
from ironlb.operator.worker_tasks import WorkerTasks

__all__ = ["EventRecorder", "build_event"]

log = logging.getLogger("ironlb.controller.events")

COMPONENT = "ironlb-controller"


@dataclass(frozen=True)
class _Pending:
    namespace: str
    body: dict[str, Any]


def build_event(
    involved: Mapping[str, Any],
    *,
    type_: str,
    reason: str,
    message: str,
    instance: str,
    now: datetime,
    component: str = COMPONENT,
) -> dict[str, Any]:
    """A core/v1 Event body about ``involved`` (a Service object)."""
    meta = involved.get("metadata") or {}
    stamp = format_time(now)
    micro = format_micro_time(now)
    namespace = meta.get("namespace") or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'unknown')}.{secrets.token_hex(8)}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", "Service"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "reportingComponent": f"ironlb.io/{component}",
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": micro,
        "action": reason,
        "count": 1,
    }


class EventRecorder:
    def __init__(
        self,
        api: KubeApi,
        *,
        instance: str,
        allowed: Callable[[], bool],
        workers: int = 4,
        max_queue: int = 50_000,
        component: str = COMPONENT,
    ) -> None:
        self._api = api
        self._component = component
        self._instance = instance
        self._allowed = allowed
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(max_queue)
        self._workers = WorkerTasks("ironlb-events", workers, self._work)
        self.dropped = 0

    def start(self) -> None:
        self._workers.start()

    async def stop(self) -> None:
        await self._workers.stop()

    def emit(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        log.info(
            "%s %s/%s: %s",
            reason,
            (involved.get("metadata") or {}).get("namespace"),
            (involved.get("metadata") or {}).get("name"),
            message,
        )
        if not self._allowed():
            return
        body = build_event(
            involved,
            type_=type_,
            reason=reason,
            message=message,
            instance=self._instance,
            now=datetime.now(UTC),
            component=self._component,
        )
        try:
            self._queue.put_nowait(_Pending(body["metadata"]["namespace"], body))
        except asyncio.QueueFull:
            self.dropped += 1

    async def drain(self) -> None:
        """Wait until every queued Event has been posted (for tests and shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if self._allowed():
                    await self._api.create(f"/api/v1/namespaces/{item.namespace}/events", item.body)
            except (ApiError, OSError, TimeoutError) as exc:
                log.warning("could not post event %s: %s", item.body["reason"], exc)
            finally:
                self._queue.task_done()
