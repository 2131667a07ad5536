"""The lab controllers' watch/write loop: caches fed by watches, one reconcile pass for all.

Every kind the controllers read (Nodes, Pods, Services, Deployments,
DaemonSets, EndpointSlices) is listed and then watched from the list's
resourceVersion into an in-memory cache (:class:`Informer`; relisted after a
410 or a broken stream). Any event wakes the loop, which (after a 10 ms
debounce) runs every controller over one snapshot of the caches: the
Deployment and DaemonSet controllers, the scheduler, the EndpointSlice
controller (the pure decisions live in ``deployments``, ``daemonsets``,
``scheduling`` and ``endpointslices``). At lab scale (tens of objects) a full
pass costs far less than a watch round trip, so there are no work queues.

A pass only runs once the caches have seen the controllers' own earlier
writes (:class:`Expectations`: the watch reached each created or patched
object's resourceVersion, deleted ones are gone; 5 s at most, like the real
controllers' expectations), so a stale cache never makes a pod twice or
binds one twice. Failed writes are logged and retried on the next pass (at
least every :data:`RESYNC` seconds).

Garbage collection is the API's: deleting a Deployment, DaemonSet or Service
deletes its pods or slices through their ``ownerReferences`` (background
propagation in ``ironlb.lab.apiserver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

from ironlb.lab.workloads import daemonsets, deployments, endpointslices, podstate, scheduling
from ironlb.lab.workloads.api import ApiError, ClientConfig, WorkloadApi
from ironlb.lab.workloads.deployments import Plan, SpecError
from ironlb.lab.workloads.nodes import register_nodes
from ironlb.lab.workloads.podstate import Obj

log = logging.getLogger(__name__)

RESOURCES = {
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
    "services": "/api/v1/services",
    "deployments": "/apis/apps/v1/deployments",
    "daemonsets": "/apis/apps/v1/daemonsets",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
}
DEBOUNCE = 0.01  # seconds between a wake-up and the pass: batches an event burst
RESYNC = 5.0  # seconds: a pass at least this often, retrying failed writes
EXPECTATION_TTL = 5.0  # seconds a write may take to show up in the caches
RELIST_DELAY = 0.5  # seconds before relisting after a failed list or watch
RETRY = 0.1  # seconds before another pass after a write found the caches stale (404/409)

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = podstate.meta(obj)
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _int(text: Any) -> int:
    try:
        return int(text or 0)
    except (TypeError, ValueError):
        return 0


def _rv(obj: Mapping[str, Any]) -> int:
    return _int(podstate.meta(obj).get("resourceVersion"))


class Informer:
    """A cache of one kind, kept by list + watch; sets ``wake`` on every change.

    ``seen_rv`` is the highest resourceVersion the cache has caught up with
    (the list's, then every event's and bookmark's): the lab API's
    resourceVersions are one global counter, so a write answered with
    resourceVersion N is reflected (or superseded) once ``seen_rv >= N``.
    """

    def __init__(self, api: WorkloadApi, path: str, wake: asyncio.Event) -> None:
        self.api = api
        self.path = path
        self.wake = wake
        self.objects: dict[Key, Obj] = {}
        self.seen_rv = 0
        self.synced = asyncio.Event()

    async def run(self) -> None:
        """List and watch until cancelled; failures are logged and relisted."""
        while True:
            try:
                await self._list_and_watch()
                log.debug("watch of %s ended; relisting", self.path)
            except ApiError as exc:
                if exc.status != 410:
                    log.warning("list/watch %s failed: %s", self.path, exc)
                    await asyncio.sleep(RELIST_DELAY)
            except Exception:  # a malformed answer: start over rather than go deaf
                log.exception("list/watch %s: unexpected failure; relisting", self.path)
                await asyncio.sleep(RELIST_DELAY)

    async def _list_and_watch(self) -> None:
        items, rv = await self.api.list(self.path)
        self.objects = {key_of(o): o for o in items}
        self.seen_rv = max(self.seen_rv, _int(rv))
        self.synced.set()
        self.wake.set()
        async for event in self.api.watch(self.path, rv):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind in ("ADDED", "MODIFIED"):
                self.objects[key_of(obj)] = obj
            elif kind == "DELETED":
                self.objects.pop(key_of(obj), None)
            self.seen_rv = max(self.seen_rv, _rv(obj))
            if kind != "BOOKMARK":
                self.wake.set()


class Expectations:
    """Writes the caches must show before the next pass (see the module docstring)."""

    def __init__(self) -> None:
        # (kind, key) -> (what, resourceVersion or uid, deadline)
        self._pending: dict[tuple[str, Key], tuple[str, Any, float]] = {}

    def written(self, kind: str, obj: Mapping[str, Any]) -> None:
        """``obj`` (as the API answered a create or patch) must be in the cache."""
        self._pending[(kind, key_of(obj))] = ("seen", _rv(obj), time.monotonic() + EXPECTATION_TTL)

    def deleted(self, kind: str, obj: Mapping[str, Any]) -> None:
        """``obj`` (the deleted object) must be gone from the cache."""
        uid = podstate.meta(obj).get("uid")
        self._pending[(kind, key_of(obj))] = ("gone", uid, time.monotonic() + EXPECTATION_TTL)

    def satisfied(self, caches: Mapping[str, Informer]) -> bool:
        """Drop what the caches show (or what expired); True when nothing is left."""
        now = time.monotonic()
        for (kind, key), (what, value, deadline) in list(self._pending.items()):
            cached = caches[kind].objects.get(key)
            if what == "seen":  # this version or a later event (even its deletion) arrived
                done = caches[kind].seen_rv >= value or (
                    cached is not None and _rv(cached) >= value
                )
            else:
                done = cached is None or podstate.meta(cached).get("uid") != value
            if done or now > deadline:
                if not done:
                    log.warning("%s %s/%s: write not seen after %gs", kind, *key, EXPECTATION_TTL)
                del self._pending[(kind, key)]
        return not self._pending


def _ns_path(kind: str, namespace: str, name: str | None = None) -> str:
    base = RESOURCES[kind]
    head, _, plural = base.rpartition("/")
    path = f"{head}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Controllers:
    """The Deployment, DaemonSet, scheduler and EndpointSlice controllers over one API."""

    def __init__(self, api: WorkloadApi) -> None:
        self.api = api
        self.wake = asyncio.Event()
        self.caches = {kind: Informer(api, path, self.wake) for kind, path in RESOURCES.items()}
        self.expect = Expectations()
        self._warned: set[tuple[str, int, str]] = set()
        self._failed: set[tuple[str, str]] = set()
        self._refused: set[str] = set()
        self.passes = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and reconcile until ``stop`` is set."""
        tasks = [asyncio.create_task(inf.run()) for inf in self.caches.values()]
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                woken = asyncio.create_task(self.wake.wait())
                await asyncio.wait({woken, stopper}, timeout=RESYNC, return_when="FIRST_COMPLETED")
                woken.cancel()
                if stop.is_set():
                    break
                await asyncio.sleep(DEBOUNCE)
                self.wake.clear()
                if not all(inf.synced.is_set() for inf in self.caches.values()):
                    continue
                if not self.expect.satisfied(self.caches):
                    await asyncio.sleep(DEBOUNCE)
                    self.wake.set()
                    continue
                await self.reconcile_once()
        finally:
            stopper.cancel()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _objects(self, kind: str) -> list[Obj]:
        return list(self.caches[kind].objects.values())

    async def reconcile_once(self) -> None:
        """One pass of every controller over the current caches."""
        self.passes += 1
        nodes, pods = self._objects("nodes"), self._objects("pods")
        by_ns: dict[str, list[Obj]] = {}
        for pod in pods:
            by_ns.setdefault(str(podstate.meta(pod).get("namespace") or ""), []).append(pod)
        for deploy in self._objects("deployments"):
            if podstate.is_terminating(deploy):
                continue
            ns = key_of(deploy)[0]
            await self._guarded(
                f"deployment {ns}/{key_of(deploy)[1]}",
                self._carry_out("deployments", deploy, deployments.reconcile, by_ns.get(ns, [])),
            )
        for ds in self._objects("daemonsets"):
            if podstate.is_terminating(ds):
                continue
            ns = key_of(ds)[0]
            await self._guarded(
                f"daemonset {ns}/{key_of(ds)[1]}",
                self._carry_out(
                    "daemonsets",
                    ds,
                    lambda d, p: daemonsets.reconcile(d, nodes, p),
                    by_ns.get(ns, []),
                ),
            )
        await self._schedule(nodes, pods)
        await self._endpoint_slices(pods)

    async def _guarded(self, what: str, step: Coroutine[Any, Any, None]) -> None:
        """Run one controller's part of a pass; a bug (an object shape nobody foresaw)
        is logged with its traceback (once per distinct failure) and the other
        controllers still run."""
        try:
            await step
        except Exception as exc:
            mark = (what, repr(exc))
            if mark in self._failed:
                log.debug("%s: still failing: %r", what, exc)
            else:
                self._failed.add(mark)
                log.exception("%s: unexpected failure (retried on the next pass)", what)

    async def _carry_out(self, kind: str, owner: Obj, decide: Any, pods: list[Obj]) -> None:
        ns, name = key_of(owner)
        try:
            plan: Plan = decide(owner, pods)
        except SpecError as exc:
            mark = (
                str(podstate.meta(owner).get("uid")),
                int(podstate.meta(owner).get("generation") or 0),
                str(exc),
            )
            if mark not in self._warned:
                self._warned.add(mark)
                log.warning("%s %s/%s: %s", kind, ns, name, exc)
            return
        for body in plan.create:
            await self._write("pods", "create", _ns_path("pods", ns), body)
        for pod_name in plan.delete:
            await self._write("pods", "delete", _ns_path("pods", ns, pod_name))
        if plan.status is not None and _status_differs(owner.get("status") or {}, plan.status):
            await self._write(
                kind, "patch", _ns_path(kind, ns, name) + "/status", {"status": plan.status}
            )

    async def _schedule(self, nodes: list[Obj], pods: list[Obj]) -> None:
        bound = list(pods)
        for pod in sorted(pods, key=lambda p: str(podstate.meta(p).get("creationTimestamp") or "")):
            if (pod.get("spec") or {}).get("nodeName") or not podstate.is_active(pod):
                continue
            ns, name = key_of(pod)
            await self._guarded(f"scheduling pod {ns}/{name}", self._bind(pod, nodes, bound))

    async def _bind(self, pod: Obj, nodes: list[Obj], bound: list[Obj]) -> None:
        node = scheduling.pick_node(pod, nodes, bound)
        if node is None:
            return
        ns, name = key_of(pod)
        patch = {"spec": {"nodeName": node}}
        if await self._write("pods", "patch", _ns_path("pods", ns, name), patch):
            bound.append({"metadata": podstate.meta(pod), "spec": {"nodeName": node}})

    async def _endpoint_slices(self, pods: list[Obj]) -> None:
        slices = self._objects("endpointslices")
        for service in self._objects("services"):
            if podstate.is_terminating(service):
                continue
            ns, name = key_of(service)
            await self._guarded(
                f"endpointslices of {ns}/{name}", self._service_slices(service, pods, slices)
            )

    async def _service_slices(self, service: Obj, pods: list[Obj], slices: list[Obj]) -> None:
        ns = key_of(service)[0]
        change = endpointslices.diff(service, pods, slices)
        for body in change.create:
            await self._write("endpointslices", "create", _ns_path("endpointslices", ns), body)
        for name, patch in change.update:
            await self._write(
                "endpointslices", "patch", _ns_path("endpointslices", ns, name), patch
            )
        for name in change.delete:
            await self._write("endpointslices", "delete", _ns_path("endpointslices", ns, name))

    async def _write(
        self, kind: str, verb: str, path: str, body: Mapping[str, Any] | None = None
    ) -> bool:
        """One write; remembered as an expectation; failures logged (the next pass retries)."""
        try:
            if verb == "create":
                assert body is not None
                result = await self.api.create(path, body)
                self.expect.written(kind, result)
            elif verb == "patch":
                assert body is not None
                result = await self.api.patch(path, body)
                self.expect.written(kind, result)
            else:
                gone = await self.api.delete(path)
                if (
                    gone
                    and podstate.meta(gone).get("deletionTimestamp")
                    and podstate.meta(gone).get("finalizers")
                ):
                    self.expect.written(kind, gone)  # marked for deletion, still there
                elif gone:
                    self.expect.deleted(kind, gone)
        except ApiError as exc:
            stale = exc.status in (404, 409)  # our view was behind: look again soon
            if stale or str(exc) in self._refused:
                log.debug("%s", exc)
            else:
                self._refused.add(str(exc))  # each distinct refusal logged once
                log.warning("%s", exc)
            if stale:
                asyncio.get_running_loop().call_later(RETRY, self.wake.set)
            return False
        return True


def _status_differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when ``new`` would change ``old`` (keys of ``old`` that ``new`` lacks count)."""
    return dict(old) != dict(new)


def resolve_config(target: ClientConfig | str | Path) -> ClientConfig:
    """A :class:`ClientConfig` from itself, an ``http(s)://`` URL or a kubeconfig path."""
    if isinstance(target, ClientConfig):
        return target
    text = str(target)
    if text.startswith(("http://", "https://")):
        return ClientConfig(text.rstrip("/"))
    return ClientConfig.from_kubeconfig(text)


async def run(
    client_config: ClientConfig | str | Path,
    *,
    stop: asyncio.Event,
    nodes: Iterable[int] = (),
) -> None:
    """Run the lab controllers against an API until ``stop`` is set.

    ``client_config``: a :class:`ClientConfig`, the API URL, or a
    kubeconfig path. ``nodes``: lab node indexes to register first
    (:func:`~ironlb.lab.workloads.nodes.register_nodes`; ``2`` is ``node2``).
    Raises :class:`ApiError` when the kubeconfig is unusable or node
    registration fails; later API failures are logged and retried.
    """
    config = resolve_config(client_config)
    async with WorkloadApi(config) as api:
        indexes = list(nodes)
        if indexes:
            await register_nodes(api, indexes)
        await Controllers(api).run(stop)
