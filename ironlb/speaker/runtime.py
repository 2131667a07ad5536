"""Wire one node's speaker together: Kubernetes objects -> DesiredState -> DataPlane.

:func:`run_speaker` is what ``ironlb speaker`` runs. Its parts, each its own task:

* the node Lease (:mod:`.node_lease`), renewed on its own and never behind
  other work;
* UDP heartbeats to every peer (:mod:`.heartbeat_transport`), feeding
  :class:`~.membership.Membership`;
* kopf watches of Services, EndpointSlices, Nodes, IPAddressPools and the
  speaker Leases, feeding :class:`~.view.ClusterView` (after one list of each
  at start, so the first plan sees the whole cluster, not half of it);
* the reconcile loop: whenever the view or the membership changed (or a
  membership deadline passed), plan (pure, :mod:`.plan`) and apply the
  node's state to the :class:`~ironlb.dataplane.dataplane.DataPlane`, then
  write what changed: the ``ironlb.io/announcing-node`` annotation and Events
  (``NodeAssigned``, ``AnnounceFailed``, the planner's problems).

On stop (SIGTERM): heartbeats say ``leaving`` and the Lease is released, so
peers take the VIPs over at once; the data plane stops announcing, lets open
connections drain for ``drain_seconds``, then closes and unbinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge

from ironlb.common.addresses import IPAddress, address_sort_key
from ironlb.common.signals import reclaim_stop_signals
from ironlb.dataplane.dataplane import DataPlane, DataPlaneError
from ironlb.dataplane.settings import AnnounceConfig, DataPlaneSettings
from ironlb.dataplane.state import Mode
from ironlb.operator.allocator import ServiceKey
from ironlb.operator.events import EventRecorder
from ironlb.operator.k8s_adapter import ApiError, KubeApi
from ironlb.operator.pool_status import POOLS
from ironlb.operator.service_request import ANNOUNCING_NODE, DEFAULT_LOAD_BALANCER_CLASS
from ironlb.speaker.heartbeat import KeyMissing, heartbeat_key_from_secret
from ironlb.speaker.heartbeat_transport import HeartbeatService
from ironlb.speaker.membership import Membership
from ironlb.speaker.node_lease import NodeLease, lease_valid_for, node_of_lease
from ironlb.speaker.plan import NodePlan, plan_node
from ironlb.speaker.view import ClusterView

__all__ = ["ANNOUNCING_NODE", "HEARTBEAT_SECRET", "SpeakerConfig", "SpeakerError", "run_speaker"]

log = logging.getLogger("ironlb.speaker")

HEARTBEAT_SECRET = "ironlb-heartbeat"
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
NODES = "/api/v1/nodes"
_SECRET_POLL = 30.0


class SpeakerError(RuntimeError):
    """The speaker cannot start (no Node object, no heartbeat key, no capability)."""


@dataclass(frozen=True)
class SpeakerConfig:
    """Settings of one speaker (times in seconds)."""

    node: str
    namespace: str = "ironlb-system"
    heartbeat_port: int = 7473
    heartbeat_interval: float = 0.1
    heartbeat_timeout: float = 0.5
    lease_duration: int = 10
    renew_period: float = 2.0
    forwarding_mode: Mode = "proxy"
    drain_seconds: float = 30.0
    workers: int = 1
    interfaces: tuple[str, ...] = ()
    load_balancer_class: str = DEFAULT_LOAD_BALANCER_CLASS
    unset_class: bool = True  # also serve Services without spec.loadBalancerClass
    log_format: str = "text"
    log_level: str = "info"


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.owned = Gauge(
            "ironlb_speaker_owned_vips", "VIPs this node announces", registry=registry
        )
        self.peers = Gauge(
            "ironlb_speaker_live_peers", "Live speakers, this one included", registry=registry
        )
        self.failovers = Counter(
            "ironlb_speaker_failovers", "VIPs taken over from another node", registry=registry
        )
        self.reconciles = Counter(
            "ironlb_speaker_reconciles", "Plans applied to the data plane", registry=registry
        )


class Speaker:
    """One node's speaker; see the module docstring."""

    def __init__(self, config: SpeakerConfig, api: KubeApi, registry: CollectorRegistry) -> None:
        self.config = config
        self.api = api
        self.registry = registry
        self.view = ClusterView()
        self.membership = Membership(
            config.node,
            lease_duration=float(config.lease_duration),
            heartbeat_timeout=config.heartbeat_timeout,
        )
        self.metrics = _Metrics(registry)
        self.dataplane = DataPlane(
            DataPlaneSettings(
                workers=config.workers,
                log_format=config.log_format,
                log_level=config.log_level,
                announce=AnnounceConfig(interfaces=config.interfaces),
                drain_seconds=config.drain_seconds,
            ),
            registry,
        )
        self.events = EventRecorder(
            api, instance=config.node, allowed=lambda: True, component="ironlb-speaker"
        )
        self.lease = NodeLease(
            api,
            namespace=config.namespace,
            node=config.node,
            duration=config.lease_duration,
            renew_period=config.renew_period,
            on_renewed=self._own_lease_renewed,
        )
        self.heartbeats: HeartbeatService | None = None
        self.plan: NodePlan | None = None
        self._dirty = asyncio.Event()
        self._lease_renew_seen: dict[str, str] = {}
        self._owners: dict[IPAddress, str | None] = {}
        self._posted: dict[tuple[ServiceKey, str], str] = {}
        self._stopping = False
        self._key: bytes | None = None
        self._writes: set[asyncio.Task[None]] = set()
        # Own nothing until peers had time to be heard (several heartbeat timeouts).
        self._settled_at = time.monotonic() + max(1.0, 3 * config.heartbeat_timeout)

    # -- inputs -----------------------------------------------------------------

    def _own_lease_renewed(self, now: float) -> None:
        self.membership.own_lease_renewed(now)
        self._dirty.set()

    def on_heartbeat(self, sender: str, leaving: bool) -> None:
        self.membership.observe_heartbeat(sender, now=time.monotonic(), leaving=leaving)
        if leaving:
            log.info("speaker on %s is leaving", sender)
        self._dirty.set()

    def on_lease(self, event: str, lease: Mapping[str, Any]) -> None:
        meta = lease.get("metadata") or {}
        if meta.get("namespace") != self.config.namespace:
            return
        node = node_of_lease(str(meta.get("name") or ""))
        if node is None or node == self.config.node:
            return
        if event == "DELETED":
            self._lease_renew_seen.pop(node, None)
            self.membership.forget_lease(node)
        else:
            spec = lease.get("spec") or {}
            renew = str(spec.get("renewTime") or "")
            renewed = self._lease_renew_seen.get(node) != renew
            self._lease_renew_seen[node] = renew
            self.membership.observe_lease(
                node,
                renewed=renewed,
                valid_for=lease_valid_for(dict(lease), datetime.now(UTC)),
                now=time.monotonic(),
            )
        self._dirty.set()

    def on_object(self, kind: str, event: str, obj: Mapping[str, Any]) -> None:
        handler = {
            "service": self.view.on_service,
            "slice": self.view.on_slice,
            "node": self.view.on_node,
            "pool": self.view.on_pool,
        }[kind]
        handler(event, obj)
        self._dirty.set()

    def peers(self) -> dict[str, tuple[str, int]]:
        """Heartbeat destinations: every other Node's first InternalIP."""
        out: dict[str, tuple[str, int]] = {}
        for name, info in self.view.nodes.items():
            if name != self.config.node and info.internal_ips:
                out[name] = (str(info.internal_ips[0]), self.config.heartbeat_port)
        return out

    # -- start-up -----------------------------------------------------------------

    async def load_key(self) -> bytes:
        """The heartbeat key from the Secret; :class:`SpeakerError` saying what to create."""
        ns = self.config.namespace
        secret = await self.api.get(f"/api/v1/namespaces/{ns}/secrets/{HEARTBEAT_SECRET}")
        if secret is None:
            raise SpeakerError(
                f"Secret {ns}/{HEARTBEAT_SECRET} not found: create it with: kubectl -n {ns} "
                f"create secret generic {HEARTBEAT_SECRET} "
                "--from-literal=key=$(head -c32 /dev/urandom | base64)"
            )
        try:
            return heartbeat_key_from_secret(secret, ns)
        except KeyMissing as exc:
            raise SpeakerError(str(exc)) from None

    async def initial_lists(self) -> None:
        """One full list of everything the plan reads, before the first plan."""
        sources = (("node", NODES), ("pool", POOLS), ("service", SERVICES), ("slice", SLICES))
        for kind, path in sources:
            try:
                async for obj in self.api.list(path):
                    self.on_object(kind, "ADDED", obj)
            except ApiError as exc:
                if exc.status != 404:  # no CRD yet: no pools
                    raise
        ns = self.config.namespace
        async for lease in self.api.list(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"):
            self.on_lease("ADDED", lease)
        if self.config.node not in self.view.nodes:
            raise SpeakerError(
                f"no Node named {self.config.node!r} (set --node-name or NODE_NAME to this "
                "node's name as `kubectl get nodes` shows it)"
            )

    # -- the loop -----------------------------------------------------------------

    async def reconcile_forever(self) -> None:
        while True:
            now = time.monotonic()
            deadline = self.membership.next_deadline(now)
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
            if now < self._settled_at:
                timeout = min(timeout, self._settled_at - now + 0.01)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._dirty.wait()
            self._dirty.clear()
            if self._stopping:
                return
            await self.reconcile()

    async def reconcile(self) -> None:
        now = time.monotonic()
        alive = self.membership.alive(now)
        if now < self._settled_at:
            # Just started: peers' heartbeats may not have arrived yet, and a speaker
            # that sees only itself would claim every VIP. Serve, but own nothing yet.
            alive = alive - {self.config.node}
        plan = plan_node(
            node=self.config.node,
            services=list(self.view.services.values()),
            slices=list(self.view.slices.values()),
            nodes=self.view.nodes,
            pools=self.view.pools,
            alive=alive,
            load_balancer_class=self.config.load_balancer_class,
            unset_class=self.config.unset_class,
            default_mode=self.config.forwarding_mode,
        )
        self.plan = plan
        self.metrics.peers.set(len(alive))
        errors: dict[str, str] = {}
        failure: str | None = None
        try:
            errors = await self.dataplane.apply(plan.state)
        except DataPlaneError as exc:
            failure = str(exc)
            log.error("cannot apply the node's state: %s", exc)
        self.metrics.reconciles.inc()
        self.metrics.owned.set(len(self.dataplane.state.vips))
        self._report(plan, alive, failure, errors)

    # -- what the cluster is told ---------------------------------------------------

    def _service(self, key: ServiceKey) -> Mapping[str, Any] | None:
        return self.view.services.get((key.namespace, key.name))

    def _report(
        self, plan: NodePlan, alive: frozenset[str], failure: str | None, errors: dict[str, str]
    ) -> None:
        me = self.config.node
        reporter = min(alive) if alive else None
        missing = self.dataplane.missing_interfaces()
        for vip in sorted(plan.owners, key=address_sort_key):
            owner = plan.owners[vip]
            before = self._owners.get(vip)
            for key in plan.vip_services.get(vip, ()):
                svc = self._service(key)
                if svc is None:
                    continue
                annotations = (svc.get("metadata") or {}).get("annotations") or {}
                current = annotations.get(ANNOUNCING_NODE)
                if owner == me and failure is None:
                    if current != me:
                        self._annotate(key, me)
                    if before != me:
                        self._event(
                            key, "Normal", "NodeAssigned", f"announcing {vip} from node {me}"
                        )
                elif owner == me and failure is not None:
                    self._event(key, "Warning", "AnnounceFailed", failure)
                if owner == me and str(vip) in missing:
                    names = ", ".join(sorted(missing[str(vip)]))
                    self._event(
                        key,
                        "Warning",
                        "AnnounceFailed",
                        f"{vip}: interface {names} of the pool's l2.interfaces is not "
                        f"served on node {me} (missing, down, or not in --interfaces)",
                    )
                elif owner is None and reporter == me and current:
                    self._annotate(key, None)
            if owner == me and before not in (None, me):
                self.metrics.failovers.inc()
            self._owners[vip] = owner
        for gone in set(self._owners) - set(plan.owners):
            self._owners.pop(gone)
        # Bind errors are logged by the data plane's workers, once while they last.
        if reporter == me:
            for key, problems in plan.problems.items():
                for problem in problems:
                    self._event(key, "Warning", problem.reason, problem.message)

    def _event(self, key: ServiceKey, type_: str, reason: str, message: str) -> None:
        if self._posted.get((key, reason)) == message:
            return
        self._posted[(key, reason)] = message
        svc = self._service(key)
        if svc is not None:
            self.events.emit(svc, type_, reason, message)

    def _annotate(self, key: ServiceKey, node: str | None) -> None:
        path = f"/api/v1/namespaces/{key.namespace}/services/{key.name}"
        body = {"metadata": {"annotations": {ANNOUNCING_NODE: node}}}

        async def write() -> None:
            try:
                await self.api.merge_patch(path, body)
            except (ApiError, OSError, TimeoutError) as exc:
                log.warning("cannot annotate %s: %s", key, exc)

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # -- secret rotation -------------------------------------------------------------

    async def follow_key(self) -> None:
        while True:
            await asyncio.sleep(_SECRET_POLL)
            try:
                key = await self.load_key()
            except (SpeakerError, ApiError, OSError, TimeoutError) as exc:
                log.warning("cannot re-read the heartbeat key (keeping the current one): %s", exc)
                continue
            if key != self._key and self.heartbeats is not None:
                log.info("heartbeat key rotated")
                old = self._key
                self._key = key
                self.heartbeats.set_keys([key, *([old] if old else [])])


def _registry(speaker: Speaker, connection: kopf.ConnectionInfo) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    for group, version, plural, kind in (
        ("", "v1", "services", "service"),
        ("discovery.k8s.io", "v1", "endpointslices", "slice"),
        ("", "v1", "nodes", "node"),
        ("ironlb.io", "v1alpha1", "ipaddresspools", "pool"),
    ):

        def make(kind: str) -> Any:
            async def handler(event: kopf.RawEvent, **_: Any) -> None:
                speaker.on_object(kind, event.get("type") or "ADDED", event["object"])

            return handler

        kopf.on.event(group, version, plural, id=kind, registry=registry)(make(kind))

    @kopf.on.event("coordination.k8s.io", "v1", "leases", id="leases", registry=registry)
    async def lease_event(event: kopf.RawEvent, **_: Any) -> None:
        speaker.on_lease(event.get("type") or "ADDED", event["object"])

    return registry


def _settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.batching.batch_window = 0.0
    settings.batching.idle_timeout = 60.0
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    return settings


async def run_speaker(
    config: SpeakerConfig,
    connection: kopf.ConnectionInfo,
    *,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
    metrics_address: str | None = None,
) -> None:
    """Run until ``stop`` is set; raises :class:`SpeakerError` when it cannot start."""
    registry = registry or CollectorRegistry(auto_describe=False)
    async with KubeApi(connection, timeout=15.0) as api:
        speaker = Speaker(config, api, registry)
        speaker._key = await speaker.load_key()
        await speaker.initial_lists()
        if metrics_address:
            try:
                _serve_metrics(speaker, metrics_address)
            except OSError as exc:
                raise SpeakerError(
                    f"cannot serve metrics on {metrics_address}: {exc.strerror}"
                ) from None
        try:
            await speaker.dataplane.start()
        except DataPlaneError as exc:
            raise SpeakerError(str(exc)) from None
        heartbeats = HeartbeatService(
            config.node,
            [speaker._key],
            peers=speaker.peers,
            on_heartbeat=speaker.on_heartbeat,
            bind=("0.0.0.0", config.heartbeat_port),
            interval=config.heartbeat_interval,
            registry=registry,
        )
        try:
            await heartbeats.start()
        except OSError as exc:
            await speaker.dataplane.stop()
            raise SpeakerError(f"cannot open the heartbeat port: {exc}") from None
        speaker.heartbeats = heartbeats
        speaker._settled_at = time.monotonic() + max(1.0, 3 * config.heartbeat_timeout)
        speaker.events.start()
        lease = asyncio.create_task(speaker.lease.run(), name="ironlb-speaker-lease")
        kopf_stop = asyncio.Event()
        kopf_ready = asyncio.Event()
        operator = asyncio.create_task(
            kopf.operator(
                registry=_registry(speaker, connection),
                settings=_settings(),
                standalone=True,
                clusterwide=True,
                stop_flag=kopf_stop,
                ready_flag=kopf_ready,
            ),
            name="ironlb-speaker-kopf",
        )
        signals = asyncio.create_task(reclaim_stop_signals(kopf_ready, stop))
        loop_task = asyncio.create_task(speaker.reconcile_forever(), name="ironlb-reconcile")
        key_task = asyncio.create_task(speaker.follow_key(), name="ironlb-speaker-key")
        waiter = asyncio.create_task(stop.wait())
        log.info(
            "ironlb speaker on node %s: namespace %s, heartbeats on UDP %d, mode %s",
            config.node,
            config.namespace,
            config.heartbeat_port,
            config.forwarding_mode,
        )
        try:
            done, _ = await asyncio.wait(
                {operator, loop_task, waiter, lease}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done - {waiter}:
                task.result()
        finally:
            # Hand over first: peers hear "leaving" and see the Lease released.
            log.info("stopping: handing the VIPs over")
            speaker._stopping = True
            speaker._dirty.set()
            waiter.cancel()
            key_task.cancel()
            signals.cancel()
            await heartbeats.stop(leaving=True)
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            log.info("handing over: draining for up to %.0fs", config.drain_seconds)
            await speaker.dataplane.stop(config.drain_seconds)
            kopf_stop.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(10):
                    await operator
            if not operator.done():
                operator.cancel()
            await speaker.events.stop()
            log.info("ironlb speaker: stopped")


def _serve_metrics(speaker: Speaker, address: str) -> None:
    from ironlb.dataplane.forwarder.metrics import ForwarderCollector, serve_metrics

    collector = ForwarderCollector(
        speaker.dataplane.snapshot,
        speaker.dataplane.backend_up,
        speaker.dataplane.workers.alive,
        lambda: {"ok": 0, "failed": 0},
    )
    serve_metrics(address, collector, speaker.registry)
    log.info("metrics on http://%s/metrics", address)
