"""Write what the controller decided onto Services: ingress status and the pool annotation.

The controller calls :meth:`ServiceStatusWriter.put` with the desired outcome
for a Service; a few workers write it. Per Service only the latest wish is
kept, so a burst of events for one Service causes one write, and writes for
one Service never overtake each other. Writes stop at once when
``allowed()`` turns false (leadership lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ironlb.common.addresses import IPAddress
from ironlb.operator.allocator import ServiceKey
from ironlb.operator.k8s_adapter import ApiError, KubeApi
from ironlb.operator.service_request import ALLOCATED_FROM_POOL
from ironlb.operator.worker_tasks import WorkerTasks

__all__ = ["DesiredStatus", "ServiceStatusWriter", "ingress_body"]

log = logging.getLogger("ironlb.controller.status")


@dataclass(frozen=True)
class DesiredStatus:
    """IPs (empty: none) and pool (``None``: remove the annotation); which parts to write."""

    ips: tuple[IPAddress, ...]
    pool: str | None
    write_status: bool = True
    write_annotation: bool = True


def ingress_body(ips: tuple[IPAddress, ...]) -> dict[str, Any]:
    """The merge patch for ``status.loadBalancer`` (``ingress: null`` clears it)."""
    ingress = [{"ip": str(ip), "ipMode": "Proxy"} for ip in ips]
    return {"status": {"loadBalancer": {"ingress": ingress or None}}}


class ServiceStatusWriter:
    def __init__(
        self,
        api: KubeApi,
        *,
        allowed: Callable[[], bool],
        workers: int = 8,
        max_attempts: int = 5,
    ) -> None:
        self._api = api
        self._allowed = allowed
        self._pending: dict[ServiceKey, DesiredStatus] = {}
        self._queue: asyncio.Queue[ServiceKey] = asyncio.Queue()
        self._workers = WorkerTasks("ironlb-status", workers, self._work)
        self._max_attempts = max_attempts
        self._busy: set[ServiceKey] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.writes = 0

    def start(self) -> None:
        self._workers.start()

    async def stop(self) -> None:
        await self._workers.stop()
        self._pending.clear()

    def put(self, key: ServiceKey, desired: DesiredStatus) -> None:
        if not desired.write_status and not desired.write_annotation:
            return
        previous = self._pending.get(key)
        if previous is not None:
            desired = replace(
                desired,
                write_status=desired.write_status or previous.write_status,
                write_annotation=desired.write_annotation or previous.write_annotation,
            )
        else:
            self._queue.put_nowait(key)
        self._pending[key] = desired
        self._idle.clear()

    async def wait_idle(self) -> None:
        """Return once nothing is queued or being written."""
        await self._idle.wait()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            if key in self._busy:
                # Another worker is writing this Service; come back after it.
                await asyncio.sleep(0.01)
                self._queue.put_nowait(key)
                continue
            desired = self._pending.pop(key, None)
            if desired is None:
                continue
            self._busy.add(key)
            try:
                await self._write(key, desired)
            finally:
                self._busy.discard(key)
                if not self._pending and not self._busy:
                    self._idle.set()

    async def _write(self, key: ServiceKey, desired: DesiredStatus) -> None:
        path = f"/api/v1/namespaces/{key.namespace}/services/{key.name}"
        for attempt in range(1, self._max_attempts + 1):
            if not self._allowed():
                return
            try:
                if desired.write_annotation:
                    patch = {"metadata": {"annotations": {ALLOCATED_FROM_POOL: desired.pool}}}
                    await self._api.merge_patch(path, patch)
                    desired = replace(desired, write_annotation=False)
                if desired.write_status and self._allowed():
                    await self._api.merge_patch(f"{path}/status", ingress_body(desired.ips))
                self.writes += 1
                return
            except ApiError as exc:
                if exc.status == 404:
                    return  # deleted meanwhile; nothing to write onto
                log.warning("writing %s failed (%s), attempt %d", key, exc, attempt)
            except (OSError, TimeoutError) as exc:
                log.warning("writing %s failed (%s), attempt %d", key, exc, attempt)
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
        log.error("giving up writing %s after %d attempts", key, self._max_attempts)
