"""Run the leader election (:mod:`ironlb.operator.leader`) against a real Lease.

Every ``retry_period`` seconds: read the Lease, ask :func:`leader.decide`,
write what it says with the read ``resourceVersion`` (a 409 means another
replica won the race: stand by). ``on_started`` runs when we become leader,
``on_stopped`` as soon as we are not any more: a refused renewal, another
holder seen, or no successful renewal for ``renew_deadline`` seconds (the API
unreachable or slow), whichever comes first, so the old leader stops writing
before a standby may take over at ``lease_duration``. On clean shutdown a held
Lease is released so the standby takes over at once.

Renewal never waits for the callbacks: ``on_started`` (the controller's
rebuild, which lists every object and took 6.7 s at 10,000 Services) runs as
its own task and is cancelled if leadership ends first; each round is bounded
by the renew deadline. Writers ask :attr:`LeaseElector.valid`, which turns
false the moment the renew deadline has passed since the last renewal was
*sent*, even while a round is still hanging on the API (the rule of
client-go's ``leaderelection``: ``RenewDeadline`` < ``LeaseDuration``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from ironlb.operator.k8s_adapter import ApiError, KubeApi
from ironlb.operator.leader import Action, decide, release_spec

__all__ = ["LeaseElector"]

log = logging.getLogger("ironlb.controller.leader")

Callback = Callable[[], Coroutine[Any, Any, None]]


class LeaseElector:
    """Campaign for one Lease; see the module docstring for the rules.

    ``lease_duration`` is in whole seconds (the Lease field), ``retry_period``
    in seconds between rounds; the renew deadline is two thirds of the duration.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: int = 15,
        retry_period: float = 2.0,
        on_started: Callback,
        on_stopped: Callback,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._duration = lease_duration
        self._retry = retry_period
        self._renew_deadline = lease_duration * 2 / 3
        self._on_started = on_started
        self._on_stopped = on_stopped
        self.leading = False
        self._last_renew = 0.0
        self._said_missing = False
        self._starting: asyncio.Task[None] | None = None
        self._last_seen = -float("inf")

    @property
    def following(self) -> bool:
        """A round ended well within the lease duration: we hold the Lease or saw its holder."""
        return time.monotonic() - self._last_seen < self._duration

    @property
    def valid(self) -> bool:
        """Leading and the last successful renewal was sent within the renew deadline."""
        return self.leading and time.monotonic() - self._last_renew < self._renew_deadline

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases"

    async def run(self) -> None:
        """Campaign until cancelled; releases the Lease (if held) on the way out."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self._renew_deadline):
                        await self._round()
                except ApiError as exc:
                    if exc.status == 404:
                        if not self._said_missing:
                            self._said_missing = True
                            log.error(
                                "cannot hold the lease %s/%s: namespace %r does not exist; "
                                "create it (kubectl create namespace %s) or pass --namespace",
                                self._namespace,
                                self._name,
                                self._namespace,
                                self._namespace,
                            )
                    else:
                        log.warning("lease round failed: %s", exc)
                except (OSError, TimeoutError) as exc:
                    log.warning("lease round failed: %s", str(exc) or type(exc).__name__)
                if self.leading and not self.valid:
                    log.error(
                        "could not renew the lease for %.1f s: stepping down", self._renew_deadline
                    )
                    await self._stop()
                await self._check_started()
                await asyncio.sleep(self._retry)
        finally:
            if self.leading:
                await asyncio.shield(self._release())

    async def _check_started(self) -> None:
        """Surface a failed ``on_started``: API trouble steps down (retried next round)."""
        task = self._starting
        if task is None or not task.done() or task.cancelled():
            return
        self._starting = None
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, ApiError | OSError | TimeoutError):
            log.warning("taking over failed: %s", str(exc) or type(exc).__name__)
            if self.leading:
                await self._stop()
            return
        raise exc

    async def _round(self) -> None:
        path = f"{self._collection}/{self._name}"
        sent = time.monotonic()
        lease = await self._api.get(path)
        decision = decide(
            lease, identity=self.identity, now=datetime.now(UTC), duration=self._duration
        )
        if decision.action is Action.STANDBY:
            self._last_seen = time.monotonic()
            if self.leading:
                log.warning("lease now held by %s: stepping down", decision.holder)
                await self._stop()
            return
        assert decision.spec is not None
        try:
            if lease is None:
                await self._api.create(
                    self._collection,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self._name, "namespace": self._namespace},
                        "spec": decision.spec,
                    },
                )
            else:
                body = dict(lease)
                body["spec"] = decision.spec
                await self._api.replace(path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            log.info("lost the race for the lease (%s)", exc.reason)
            self._last_seen = time.monotonic()
            if self.leading:
                await self._stop()
            return
        self._last_renew = self._last_seen = sent
        if not self.leading:
            log.info(
                "acquired the lease %s/%s as %s (%s, previous holder %s)",
                self._namespace,
                self._name,
                self.identity,
                decision.action.value,
                decision.holder,
            )
            self.leading = True
            self._starting = asyncio.create_task(self._on_started(), name="ironlb-lease-started")

    async def _cancel_start(self) -> None:
        task, self._starting = self._starting, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _stop(self) -> None:
        self.leading = False
        await self._cancel_start()
        await self._on_stopped()

    async def _release(self) -> None:
        self.leading = False
        try:
            await self._cancel_start()
            await self._on_stopped()
            path = f"{self._collection}/{self._name}"
            lease = await self._api.get(path)
            spec = release_spec(lease, self.identity) if lease else None
            if lease is not None and spec is not None:
                await self._api.replace(path, {**lease, "spec": spec})
                log.info("released the lease")
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("could not release the lease: %s", exc)
