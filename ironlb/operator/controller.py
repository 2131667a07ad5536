"""The allocation controller's state machine: Services, pools and namespaces in, writes out.

:class:`AllocationController` owns one :class:`~ironlb.operator.allocator.Allocator`
and reacts to watch events (delivered by the kopf adapter, ``kopf_handlers``):

- a Service of ours (``type: LoadBalancer``, our class) is parsed
  (:mod:`service_request`) and assigned; its status and pool annotation are
  written when they differ from what the object shows; refusals become
  ``AllocationFailed`` Events (once per distinct reason/message). A refusal
  for a fault in the Service's own request (:data:`REQUEST_REASONS`) leaves
  the addresses it holds in place: a typo never hands a pinned address to
  another tenant;
- a Service that stops being ours (deleted, type or class changed) releases
  its addresses; what we wrote onto it is cleared (``ClearAssignment``);
- pools are parsed, overlaps resolved oldest-first, and handed to the
  allocator; Services whose addresses a pool no longer offers get an
  ``IPWithdrawn`` Event naming the address and why, and are reallocated or
  cleared with an ``AllocationFailed`` Event;
- Services that failed are retried (debounced, oldest claim first) whenever
  they could now succeed: addresses released, pools changed, or another
  Service's request changed (sharing key, ports, policy, selector, labels).

Only the elected leader acts: :meth:`activate` rebuilds the state from a fresh
list of pools, namespaces and Services (re-taking the addresses Services
already show, so a restart or failover moves no IP, then allocating the rest)
before any event is processed; :meth:`deactivate` stops all writing at once.
Per-event work is O(1) apart from the Service's own fields; everything runs on
one event loop, so allocator calls never interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ironlb.operator.allocator import (
    AllocationError,
    Allocator,
    Assignment,
    ServiceKey,
    ServiceRequest,
)
from ironlb.operator.events import EventRecorder
from ironlb.operator.k8s_adapter import KubeApi
from ironlb.operator.pool_status import POOLS, PoolStatusWriter, pool_status
from ironlb.operator.pools import (
    Pool,
    PoolError,
    parse_pool,
    select_non_overlapping,
    withdrawal_reason,
)
from ironlb.operator.service_request import (
    ServiceRequestError,
    allocated_pool,
    annotation_aliases,
    current_ingress_ips,
    holding_request,
    is_ours,
    parse_service,
    service_key,
)
from ironlb.operator.service_status import DesiredStatus, ServiceStatusWriter

__all__ = ["AllocationController"]

log = logging.getLogger("ironlb.controller")

Body = Mapping[str, Any]


def _created(obj: Body) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


async def _breathe(i: int) -> None:
    """Every 256th step of the rebuild, let the loop run others (the Lease renewal)."""
    if i % 256 == 255:
        await asyncio.sleep(0)


def _addresses(pool: Body) -> list[str]:
    """``spec.addresses`` as strings (whatever the spec holds, for the printer column)."""
    listed = (pool.get("spec") or {}).get("addresses")
    return [str(a) for a in listed] if isinstance(listed, list) else []


def _ip_list(ips: tuple[Any, ...]) -> str:
    return json.dumps([str(ip) for ip in ips])


#: Refusals that lie in the Service's own request (a typo in an annotation or a field, a
#: pool or address that does not exist): a Service that holds addresses keeps them and is
#: told what is wrong, as MetalLB does. Other refusals (sharing rules, capacity) mean the
#: addresses it holds no longer fit, and it loses them.
REQUEST_REASONS = frozenset(
    {"InvalidRequest", "PoolNotFound", "IPNotInAnyPool", "IPNotAllowed", "IPNotInPool"}
)


class AllocationController:
    def __init__(
        self,
        api: KubeApi,
        *,
        load_balancer_class: str,
        instance: str,
        unset_class: bool = True,
        pool_status_interval: float = 0.5,
        retry_delay: float = 0.2,
        lease_valid: Callable[[], bool] = lambda: True,
        on_allocated: Callable[[str], None] = lambda pool: None,
        on_failed: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._api = api
        self._lease_valid = lease_valid  # writers stop the moment the Lease lapses
        self._on_allocated = on_allocated  # metrics hooks: pool, failure reason
        self._on_failed = on_failed
        self._class = load_balancer_class
        self._unset_class = unset_class  # False: Services without a class are not ours
        self._retry_delay = retry_delay
        self.allocator = Allocator()
        self.leading = False
        self._term = 0
        self._ready = asyncio.Event()
        self._services: dict[ServiceKey, Body] = {}
        self._by_namespace: dict[str, set[ServiceKey]] = {}
        self._failed: dict[ServiceKey, tuple[str, str]] = {}
        # The last request each Service made: a holder whose request changes may unblock others.
        self._requests: dict[ServiceKey, ServiceRequest] = {}
        # The MetalLB alias annotations each Service was last told about.
        self._aliases: dict[ServiceKey, tuple[str, ...]] = {}
        self._namespaces: dict[str, dict[str, str]] = {}
        self._pool_objects: dict[str, Body] = {}
        self._pool_problems: dict[str, tuple[str, str]] = {}
        # With --ignore-unset-class, Services without a class are another implementation's
        # (MetalLB during a migration). What they show from our pools is held in the
        # allocator, so it is never handed out twice; the hold ends when they stop showing
        # it or become ours. Nothing is ever written to them.
        self._foreign: dict[ServiceKey, Body] = {}
        self._retry_task: asyncio.Task[None] | None = None
        self.status = ServiceStatusWriter(api, allowed=self._allowed)
        self.events = EventRecorder(api, instance=instance, allowed=self._allowed)
        self.pool_status = PoolStatusWriter(
            api, compute=self._pool_status, allowed=self._allowed, interval=pool_status_interval
        )

    def _allowed(self) -> bool:
        return self.leading and self._lease_valid()

    @property
    def ready(self) -> bool:
        """Leading and done rebuilding the state: events are being processed."""
        return self.leading and self._ready.is_set()

    # --- leadership ---------------------------------------------------------------------------

    async def activate(self) -> None:
        """Became leader: rebuild everything from the API, then start processing events."""
        self._term += 1
        term = self._term
        self.leading = True
        self._reset()
        self.status.start()
        self.events.start()
        self.pool_status.start()
        try:
            await self._bootstrap()
        except Exception:
            log.exception("rebuilding the state failed; giving up leadership of this term")
            await self.deactivate()
            raise
        if self._term == term and self.leading:
            self._ready.set()
            log.info(
                "controller active: %d pools, %d services assigned",
                len(self.allocator.pools()),
                len(self.allocator.assignments()),
            )

    async def deactivate(self) -> None:
        """Lost (or gave up) leadership: stop writing at once and drop the state."""
        was_leading, self.leading = self.leading, False
        self._term += 1
        self._ready.clear()
        if self._retry_task is not None:
            self._retry_task.cancel()
            self._retry_task = None
        await self.status.stop()
        await self.events.stop()
        await self.pool_status.stop()
        self._reset()
        if was_leading:
            log.info("controller standing by")

    def _reset(self) -> None:
        self.allocator = Allocator()
        self._services.clear()
        self._by_namespace.clear()
        self._failed.clear()
        self._requests.clear()
        self._aliases.clear()
        self._pool_objects.clear()
        self._pool_problems.clear()
        self._foreign.clear()

    async def _wait_ready(self) -> bool:
        term = self._term
        while not self._ready.is_set():
            if not self.leading or self._term != term:
                return False
            await asyncio.sleep(0.05)
        return self.leading

    async def _bootstrap(self) -> None:
        async for pool in self._api.list(POOLS):
            name = pool["metadata"]["name"]
            self._pool_objects[name] = pool
            self.pool_status.seed(name, pool.get("status"))
        async for namespace in self._api.list("/api/v1/namespaces"):
            self._remember_namespace(namespace)
        self._apply_pools()
        services = [s async for s in self._api.list("/api/v1/services")]
        services.sort(key=_created)
        later: list[Body] = []
        restored = 0
        for i, service in enumerate(services):
            await _breathe(i)
            key = service_key(service)
            if not self._ours(service):
                if allocated_pool(service) is not None:
                    self._drop(key, service, "the Service is no longer ours")
                elif self._is_foreign(service):
                    self._hold_foreign(key, service)
                continue
            self._remember(key, service)
            ips = current_ingress_ips(service)
            if not ips:
                later.append(service)
                continue
            labels = self._namespace_labels(key.namespace)
            try:
                request = parse_service(service, labels)
                self.allocator.restore(request, ips)
                self._requests[key] = request
                restored += 1
                continue
            except (ServiceRequestError, AllocationError) as exc:
                reason = exc.reason if isinstance(exc, AllocationError) else "InvalidRequest"
                log.info("could not restore %s %s: %s", key, _ip_list(ips), exc)
            later.append(service)
            if reason in REQUEST_REASONS:
                # Its own request is refused: it keeps what it shows (and is told why below).
                try:
                    self.allocator.restore(holding_request(service, labels, ips), ips)
                    restored += 1
                except AllocationError as exc:
                    log.info("%s cannot keep %s either: %s", key, _ip_list(ips), exc)
        for i, pending in enumerate(later):
            await _breathe(i)
            self._sync(service_key(pending), pending)
        # Services restored as they were still may lack the pool annotation.
        for i, service in enumerate(services):
            await _breathe(i)
            key = service_key(service)
            assignment = self.allocator.assignment(key)
            if assignment is not None and key not in self._foreign:
                self._write(key, service, assignment)
        for name in self._pool_objects:
            self.pool_status.mark(name)
        log.info("restored %d services, allocating %d", restored, len(later))

    # --- events -------------------------------------------------------------------------------

    async def on_service(self, event_type: str, body: Body) -> None:
        if not self.leading or not await self._wait_ready():
            return
        key = service_key(body)
        if event_type == "DELETED":
            self._forget(key)
            self._foreign.pop(key, None)
            released = self.allocator.release(key)
            if released is not None:
                self.pool_status.mark(released.pool)
                self._schedule_retry()
            return
        if not self._ours(body):
            if key in self._services or allocated_pool(body) is not None:
                self._drop(key, body, self._why_not_ours(body))
            elif self._is_foreign(body):
                self._hold_foreign(key, body)
            elif key in self._foreign:
                self._unhold_foreign(key)  # e.g. its type changed: the other one let go
            return
        if key in self._foreign:
            self._unhold_foreign(key)  # it asks us now (its class was set): no longer held
        self._remember(key, body)
        self._sync(key, body)

    async def on_pool(self, event_type: str, body: Body) -> None:
        if not self.leading or not await self._wait_ready():
            return
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self._pool_objects.pop(name, None)
            self.pool_status.forget(name)
        else:
            self._pool_objects[name] = body
        self._apply_pools()

    async def on_namespace(self, event_type: str, body: Body) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self._namespaces.pop(name, None)
            return
        changed = self._remember_namespace(body)
        if changed and self.ready:
            for key in self._oldest_first(self._by_namespace.get(name, ())):
                self._sync(key, self._services[key])

    # --- services -----------------------------------------------------------------------------

    def _ours(self, body: Body) -> bool:
        return is_ours(body, self._class, unset_class=self._unset_class)

    def _is_foreign(self, body: Body) -> bool:
        """A Service left to another implementation by --ignore-unset-class."""
        spec = body.get("spec") or {}
        return (
            not self._unset_class
            and spec.get("type") == "LoadBalancer"
            and not spec.get("loadBalancerClass")
        )

    def _hold_foreign(self, key: ServiceKey, body: Body) -> None:
        """Hold (again) what a foreign Service shows, when it lies in our pools."""
        self._unhold_foreign(key)
        ips = current_ingress_ips(body)
        if not ips:
            return
        self._foreign[key] = body
        self._try_hold(key, body)

    def _try_hold(self, key: ServiceKey, body: Body) -> None:
        ips = current_ingress_ips(body)
        try:
            request = holding_request(body, self._namespace_labels(key.namespace), ips)
            held = self.allocator.restore(request, ips)
        except AllocationError as exc:
            if exc.reason != "IPNotInAnyPool":
                log.warning("%s (not ours) shows %s: %s", key, _ip_list(ips), exc.message)
            return
        self.pool_status.mark(held.pool)

    def _unhold_foreign(self, key: ServiceKey) -> None:
        if self._foreign.pop(key, None) is None:
            return
        released = self.allocator.release(key)
        if released is not None:
            self.pool_status.mark(released.pool)
            self._schedule_retry()

    def _why_not_ours(self, body: Body) -> str:
        spec = body.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            return f"the Service changed to type {spec.get('type')}"
        if not spec.get("loadBalancerClass"):
            return "the Service has no loadBalancerClass and --ignore-unset-class is set"
        return f"the Service's loadBalancerClass is {spec.get('loadBalancerClass')!r}"

    def _remember(self, key: ServiceKey, body: Body) -> None:
        self._services[key] = body
        self._by_namespace.setdefault(key.namespace, set()).add(key)

    def _forget(self, key: ServiceKey) -> None:
        self._services.pop(key, None)
        self._failed.pop(key, None)
        self._requests.pop(key, None)
        self._aliases.pop(key, None)
        keys = self._by_namespace.get(key.namespace)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_namespace[key.namespace]

    def _namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._namespaces.get(namespace, {})

    def _remember_namespace(self, body: Body) -> bool:
        meta = body.get("metadata") or {}
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        old = self._namespaces.get(meta["name"])
        self._namespaces[meta["name"]] = labels
        return old is not None and old != labels

    def _oldest_first(self, keys: Any) -> list[ServiceKey]:
        """``keys`` ordered by the oldest claim: creationTimestamp, then namespace/name."""
        return sorted(
            (k for k in keys if k in self._services), key=lambda k: _created(self._services[k])
        )

    def _sync(self, key: ServiceKey, body: Body, context: str = "") -> None:
        """Assign ``key`` per its current spec; write and report the outcome."""
        aliases = annotation_aliases(body)
        if aliases != self._aliases.get(key, ()):
            self._aliases[key] = aliases
            for line in aliases:
                self.events.emit(body, "Normal", "AnnotationAlias", line)
        try:
            request = parse_service(body, self._namespace_labels(key.namespace))
        except ServiceRequestError as exc:
            self._refuse(key, body, "InvalidRequest", context + str(exc))
            return
        previous_request = self._requests.get(key)
        self._requests[key] = request
        if previous_request is not None and previous_request != request:
            # Its sharing key, ports, policy, selector or labels changed: a Service waiting
            # for what it holds (or for a port it used) may fit now.
            self._schedule_retry()
        previous = self.allocator.assignment(key)
        try:
            assignment = self.allocator.assign(request)
        except AllocationError as exc:
            self._refuse(key, body, exc.reason, context + exc.message)
            return
        self._failed.pop(key, None)
        if previous != assignment:
            if previous is not None:
                self.pool_status.mark(previous.pool)
            self.pool_status.mark(assignment.pool)
            if previous is None or previous.ips != assignment.ips:
                self._on_allocated(assignment.pool)
                self.events.emit(
                    body, "Normal", "IPAllocated", f"Assigned IP {_ip_list(assignment.ips)}"
                )
        self._write(key, body, assignment)

    def _write(self, key: ServiceKey, body: Body, assignment: Assignment | None) -> None:
        """Queue the writes that make ``body`` show ``assignment`` (None: nothing of ours)."""
        ips = assignment.ips if assignment else ()
        pool = assignment.pool if assignment else None
        shown = current_ingress_ips(body)
        ingress = ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        proxied = all(isinstance(e, Mapping) and e.get("ipMode") == "Proxy" for e in ingress)
        self.status.put(
            key,
            DesiredStatus(
                ips=ips,
                pool=pool,
                write_status=shown != ips or (bool(ips) and not proxied),
                write_annotation=allocated_pool(body) != pool,
            ),
        )

    def _refuse(self, key: ServiceKey, body: Body, reason: str, message: str) -> None:
        """The Service's request is refused: keep what it holds if the fault is its own."""
        held = self.allocator.assignment(key)
        if held is None or reason not in REQUEST_REASONS:
            self._fail(key, body, reason, message)
            return
        if self._failed.get(key) != (reason, message):
            self._failed[key] = (reason, message)
            self.events.emit(
                body,
                "Warning",
                "AllocationFailed",
                f"{reason}: {message}; keeping IP {_ip_list(held.ips)} until this is fixed",
            )
        self._write(key, body, held)

    def _fail(self, key: ServiceKey, body: Body, reason: str, message: str) -> None:
        released = self.allocator.release(key)
        if released is not None:
            self.pool_status.mark(released.pool)
            self._schedule_retry()
        if self._failed.get(key) != (reason, message):
            self._failed[key] = (reason, message)
            self._on_failed(reason)
            self.events.emit(body, "Warning", "AllocationFailed", f"{reason}: {message}")
        if released is not None or allocated_pool(body) is not None:
            self._write(key, body, None)
        elif current_ingress_ips(body):
            # Addresses we did not give (e.g. left over from before a restart): clear them too.
            self._write(key, body, None)

    def _drop(self, key: ServiceKey, body: Body, why: str) -> None:
        """The Service is no longer ours: release and clear what we wrote."""
        self._forget(key)
        released = self.allocator.release(key)
        if released is not None:
            self.pool_status.mark(released.pool)
            self._schedule_retry()
        if released is not None or allocated_pool(body) is not None:
            ips = released.ips if released else current_ingress_ips(body)
            self.events.emit(
                body, "Normal", "ClearAssignment", f"{why}: released IP {_ip_list(ips)}"
            )
            # Ingress we did not write (another implementation's) is left alone.
            self.status.put(
                key,
                DesiredStatus(
                    ips=(),
                    pool=None,
                    write_status=allocated_pool(body) is not None
                    and bool(current_ingress_ips(body)),
                    write_annotation=allocated_pool(body) is not None,
                ),
            )
            if released is not None:
                self.events.emit(
                    body, "Normal", "IPReleased", f"Released IP {_ip_list(released.ips)}"
                )

    def _schedule_retry(self) -> None:
        if self._failed and (self._retry_task is None or self._retry_task.done()):
            self._retry_task = asyncio.get_running_loop().create_task(self._retry_failed())

    async def _retry_failed(self) -> None:
        await asyncio.sleep(self._retry_delay)
        if not self.leading:
            return
        for key in self._oldest_first(list(self._failed)):
            body = self._services.get(key)
            if body is not None and key in self._failed:
                self._sync(key, body)

    # --- pools --------------------------------------------------------------------------------

    def _apply_pools(self) -> None:
        parsed: list[Pool] = []
        problems: dict[str, tuple[str, str]] = {}
        for obj in sorted(self._pool_objects.values(), key=_created):
            meta = obj.get("metadata") or {}
            name = meta["name"]
            if meta.get("deletionTimestamp"):
                problems[name] = ("Deleting", "the pool is being deleted")
                continue
            try:
                parsed.append(parse_pool(name, obj.get("spec") or {}))
            except PoolError as exc:
                problems[name] = ("InvalidSpec", str(exc))
        accepted, rejected = select_non_overlapping(parsed)
        for name, message in rejected.items():
            problems[name] = ("Overlap", message)
        self._pool_problems = problems
        # Cheap: the writer compares and only patches pools whose status changed.
        for name in self._pool_objects:
            self.pool_status.mark(name)
        before = {p.name: p for p in self.allocator.pools()}
        after = {p.name: p for p in accepted}
        if before == after:
            return
        held = {
            key: assignment
            for key, assignment in self.allocator.assignments().items()
            if before.get(assignment.pool) != after.get(assignment.pool)
        }
        evicted = self.allocator.set_pools(accepted)
        for key in self._oldest_first(evicted):
            body = self._services[key]
            old = held[key]
            shown = _ip_list(old.ips)
            self._sync(key, body, context=f"its IPs {shown} are no longer in a usable pool; ")
            now = self.allocator.assignment(key)
            for ip in old.ips:
                if now is None or ip not in now.ips:
                    why = withdrawal_reason(
                        ip, before[old.pool], after.get(old.pool), problems.get(old.pool)
                    )
                    self.events.emit(body, "Warning", "IPWithdrawn", why)
        for key, body in self._foreign.items():  # a new or changed pool may hold theirs now
            if self.allocator.assignment(key) is None:
                self._try_hold(key, body)
        self._schedule_retry()

    def _pool_status(self, name: str, previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
        obj = self._pool_objects.get(name)
        if obj is None:
            return None
        generation = (obj.get("metadata") or {}).get("generation")
        problem = self._pool_problems.get(name)
        usage = None
        if problem is None:
            try:
                usage = self.allocator.usage(name)
            except AllocationError:
                return None
        return pool_status(
            usage,
            problem,
            previous=previous,
            generation=generation if isinstance(generation, int) else None,
            now=datetime.now(UTC),
            addresses=_addresses(obj),
        )
