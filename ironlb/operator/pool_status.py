"""IPAddressPool status: what it says (pure :func:`pool_status`) and how it is written.

The status carries the CRD's counters (``assignedIPv4/IPv6``,
``availableIPv4/IPv6``, ``used``/``free``; int64, so capped for huge IPv6
ranges) and two conditions: ``Ready`` (the pool is in use) and ``Invalid``
(its spec was refused: the reason and message say why). For ``kubectl get``'s
printer columns it also carries strings, because a CRD column can only show
one JSONPath value: ``addressesText`` (the spec's addresses joined with
commas), ``usedText``/``freeText`` (the exact counts, as the Ready message
says them, never capped) and ``state`` (``Ready`` or ``Invalid (reason)``, the
words ``lbctl pool list`` uses). :class:`PoolStatusWriter` coalesces:
pools are marked dirty as Services come and go, and every ``interval``
seconds each dirty pool gets at most one merge patch, only if its status
actually changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ironlb.common.kubetime import format_time
from ironlb.operator.allocator import PoolUsage
from ironlb.operator.k8s_adapter import ApiError, KubeApi

__all__ = ["PoolStatusWriter", "pool_status", "same_status"]

log = logging.getLogger("ironlb.controller.pools")

POOLS = "/apis/ironlb.io/v1alpha1/ipaddresspools"
_ZERO = PoolUsage(0, 0, 0, 0)


def _condition(
    type_: str,
    status: bool,
    reason: str,
    message: str,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    value = "True" if status else "False"
    since = format_time(now)
    for old in previous:
        if (
            old.get("type") == type_
            and old.get("status") == value
            and old.get("lastTransitionTime")
        ):
            since = str(old["lastTransitionTime"])
    condition: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def pool_status(
    usage: PoolUsage | None,
    problem: tuple[str, str] | None,
    *,
    previous: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime,
    addresses: Sequence[str] = (),
) -> dict[str, Any]:
    """The full status of a pool: ``usage`` when in use, ``problem`` = (reason, message) if not.

    ``previous`` (the status last written) keeps each condition's
    ``lastTransitionTime`` while its value does not change; ``addresses``
    (``spec.addresses``) becomes ``addressesText``.
    """
    old_conditions = list((previous or {}).get("conditions") or [])
    status: dict[str, Any] = dict((usage or _ZERO).to_status())
    if generation is not None:
        status["observedGeneration"] = generation
    if problem is None:
        free = usage.free if usage else 0
        ready = _condition(
            "Ready",
            True,
            "Allocating",
            f"{usage.used if usage else 0} addresses assigned, {free} available",
            old_conditions,
            now,
            generation,
        )
        invalid = _condition(
            "Invalid", False, "Valid", "the spec is valid", old_conditions, now, generation
        )
    else:
        reason, message = problem
        ready = _condition("Ready", False, reason, message, old_conditions, now, generation)
        invalid = _condition("Invalid", True, reason, message, old_conditions, now, generation)
    status["conditions"] = [ready, invalid]
    status["addressesText"] = ",".join(str(a) for a in addresses)
    status["usedText"] = str(usage.used if usage else 0)
    status["freeText"] = str(usage.free if usage else 0)
    status["state"] = "Ready" if problem is None else f"Invalid ({problem[0]})"
    return status


def same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal apart from condition timestamps (which :func:`pool_status` keeps anyway)."""

    def strip(s: Mapping[str, Any] | None) -> dict[str, Any]:
        s = dict(s or {})
        s["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in s.get("conditions") or []
        ]
        return s

    return strip(a) == strip(b)


class PoolStatusWriter:
    """Writes pool status at most once per ``interval`` per pool, only when it changed."""

    def __init__(
        self,
        api: KubeApi,
        *,
        compute: Callable[[str, Mapping[str, Any] | None], dict[str, Any] | None],
        allowed: Callable[[], bool],
        interval: float = 0.5,
    ) -> None:
        self._api = api
        self._compute = compute
        self._allowed = allowed
        self._interval = interval
        self._dirty: set[str] = set()
        self._written: dict[str, Mapping[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0

    def seed(self, name: str, status: Mapping[str, Any] | None) -> None:
        """What the pool's status already says (so a restart rewrites nothing unchanged)."""
        if status:
            self._written[name] = status

    def forget(self, name: str) -> None:
        self._written.pop(name, None)
        self._dirty.discard(name)

    def mark(self, name: str) -> None:
        self._dirty.add(name)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ironlb-pool-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self._interval)

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            if not self._allowed():
                return
            previous = self._written.get(name)
            status = self._compute(name, previous)
            if status is None or same_status(status, previous):
                continue
            try:
                await self._api.merge_patch(f"{POOLS}/{name}/status", {"status": status})
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("writing status of pool %s failed: %s", name, exc)
                    self.mark(name)
                continue
            except (OSError, TimeoutError) as exc:
                log.warning("writing status of pool %s failed: %s", name, exc)
                self.mark(name)
                continue
            self._written[name] = status
            self.writes += 1
