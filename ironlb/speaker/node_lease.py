"""Keep this speaker's own ``coordination.k8s.io/v1`` Lease renewed.

Every speaker holds the Lease ``ironlb-speaker-<node>`` in its namespace
(``holderIdentity`` = the node name). It is the authority on who is live:
``kubectl get leases -n ironlb-system`` shows every speaker and its last
renewal, and peers that cannot hear our heartbeats still see us alive
through it (:mod:`ironlb.speaker.membership`).

Renewal runs in its own task and waits behind nothing else the speaker
does (no start-up list, no reconcile): each round is one GET and one PUT
with a timeout shorter than the renew period. ``on_renewed`` is called after
every successful write with the monotonic time it succeeded; on a clean stop
the Lease is released (holder cleared, duration 1 s) so peers take over at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ironlb.common.kubetime import format_micro_time, parse_time
from ironlb.operator.k8s_adapter import ApiError, KubeApi

log = logging.getLogger("ironlb.speaker.lease")

LEASE_PREFIX = "ironlb-speaker-"


def lease_name(node: str) -> str:
    """The Lease a speaker holds for ``node`` (``ironlb-speaker-<node>``)."""
    return f"{LEASE_PREFIX}{node}"


def node_of_lease(name: str) -> str | None:
    """The node a speaker Lease is for, or ``None`` for another Lease."""
    return name[len(LEASE_PREFIX) :] if name.startswith(LEASE_PREFIX) else None


def lease_valid_for(lease: dict[str, Any], now: datetime) -> float:
    """Seconds until the Lease expires (``renewTime + leaseDurationSeconds``); <= 0 when
    it has expired, was released (no ``holderIdentity``) or is malformed."""
    spec = lease.get("spec") or {}
    renew = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not spec.get("holderIdentity") or renew is None or not isinstance(duration, int):
        return 0.0
    return (renew - now).total_seconds() + duration


class NodeLease:
    """Renews ``namespace/ironlb-speaker-<node>`` every ``renew_period`` seconds."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        node: str,
        duration: int = 10,
        renew_period: float = 2.0,
        on_renewed: Callable[[float], None] = lambda _now: None,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._node = node
        self._duration = duration
        self._renew = renew_period
        self._on_renewed = on_renewed
        self._acquired: datetime | None = None
        self.last_renewed: float | None = None  # monotonic
        self.failures = 0
        self._missing_namespace_said = False

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases"

    @property
    def path(self) -> str:
        return f"{self._collection}/{lease_name(self._node)}"

    def _spec(self, now: datetime) -> dict[str, Any]:
        acquired = self._acquired or now
        return {
            "holderIdentity": self._node,
            "leaseDurationSeconds": self._duration,
            "acquireTime": format_micro_time(acquired),
            "renewTime": format_micro_time(now),
        }

    async def renew_once(self) -> None:
        """One round: read and write the Lease. Raises ApiError/OSError/TimeoutError."""
        async with asyncio.timeout(max(self._renew * 1.5, 2.0)):
            lease = await self._api.get(self.path)
            now = datetime.now(UTC)
            if lease is None:
                await self._api.create(
                    self._collection,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": lease_name(self._node), "namespace": self._namespace},
                        "spec": self._spec(now),
                    },
                )
            else:
                await self._api.replace(self.path, {**lease, "spec": self._spec(now)})
        if self._acquired is None:
            self._acquired = now
            log.info("holding the lease %s/%s", self._namespace, lease_name(self._node))
        self.last_renewed = time.monotonic()
        self._on_renewed(self.last_renewed)

    async def run(self) -> None:
        """Renew until cancelled; release the Lease on the way out."""
        try:
            while True:
                try:
                    await self.renew_once()
                    self.failures = 0
                except ApiError as exc:
                    self.failures += 1
                    if exc.status == 404 and not self._missing_namespace_said:
                        self._missing_namespace_said = True
                        log.error(
                            "cannot hold the speaker lease: namespace %r does not exist "
                            "(create it: kubectl create namespace %s, or pass --namespace)",
                            self._namespace,
                            self._namespace,
                        )
                    elif exc.status != 409:
                        log.warning("lease renewal failed: %s", exc)
                except (OSError, TimeoutError) as exc:
                    self.failures += 1
                    log.warning("lease renewal failed: %s", str(exc) or type(exc).__name__)
                await asyncio.sleep(self._renew)
        finally:
            await asyncio.shield(self.release())

    async def release(self) -> None:
        """Clear the holder so peers stop counting on us at once."""
        if self._acquired is None:
            return
        self._acquired = None
        with contextlib.suppress(ApiError, OSError, TimeoutError):
            async with asyncio.timeout(3):
                lease = await self._api.get(self.path)
                if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == (
                    self._node
                ):
                    spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                    await self._api.replace(self.path, {**lease, "spec": spec})
                    log.info("released the lease %s", lease_name(self._node))
