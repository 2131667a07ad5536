"""Object storage with one global resourceVersion, event history and watch fan-out.

Every write (create, update, delete) takes the next value of a single global
counter as the object's ``metadata.resourceVersion`` and appends an event to a
bounded history. Watches subscribe synchronously (no ``await`` between reading
the history and registering), and every write pushes to the subscribers'
unbounded queues before returning, so a watch never misses an event as long
as all calls happen on one event loop. Knows nothing of HTTP or of
Kubernetes semantics beyond resourceVersion.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

StorageKey = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


class TooOldError(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # "ADDED" | "MODIFIED" | "DELETED"
    key: StorageKey
    namespace: str  # "" for cluster-scoped objects
    obj: Obj  # snapshot after the change (for DELETED: the last state, with the new rv)
    old: Obj | None = None  # snapshot before the change (MODIFIED only)


@dataclass(eq=False)
class Watch:
    """One subscriber; ``queue`` yields events, then ``None`` when closed."""

    key: StorageKey
    namespace: str | None  # None = all namespaces
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def wants(self, event: Event) -> bool:
        return event.key == self.key and (
            self.namespace is None or self.namespace == event.namespace
        )


class ObjectStore:
    """All objects of all types, keyed by storage key, namespace and name."""

    def __init__(self, history_size: int = 10_000) -> None:
        self._objects: dict[StorageKey, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[Event] = deque()
        self._history_size = history_size
        self._evicted_rv = 0  # newest rv that dropped out of the history
        self._watches: set[Watch] = set()
        self._uids: set[str] = set()
        # owner uid -> objects whose ownerReferences name it (garbage collection
        # looks dependents up here instead of scanning every object)
        self._owned_by: dict[str, set[tuple[StorageKey, str, str]]] = {}

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, key: StorageKey, namespace: str, name: str) -> Obj | None:
        """A deep copy of the stored object, or None."""
        obj = self._objects.get(key, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, key: StorageKey, namespace: str | None = None) -> list[Obj]:
        """Deep copies, ordered by namespace then name; namespace None = all."""
        bucket = self._objects.get(key, {})
        return [
            copy.deepcopy(obj)
            for (ns, _name), obj in sorted(bucket.items())
            if namespace is None or ns == namespace
        ]

    def select(self, key: StorageKey, predicate: Callable[[Obj], bool]) -> list[Obj]:
        """Deep copies of the objects ``predicate`` accepts (it sees the stored dicts:
        it must not change them)."""
        return [copy.deepcopy(o) for o in self._objects.get(key, {}).values() if predicate(o)]

    def has_uid(self, uid: str) -> bool:
        return uid in self._uids

    def dependents(self, owner_uid: str) -> list[tuple[StorageKey, Obj]]:
        """Deep copies of the objects whose ownerReferences name ``owner_uid``."""
        found = []
        for key, namespace, name in sorted(self._owned_by.get(owner_uid, ())):
            obj = self._objects.get(key, {}).get((namespace, name))
            if obj is not None:
                found.append((key, copy.deepcopy(obj)))
        return found

    def _index_owners(self, where: tuple[StorageKey, str, str], obj: Obj | None, add: bool) -> None:
        if obj is None:
            return
        for ref in obj.get("metadata", {}).get("ownerReferences") or []:
            uid = str(ref.get("uid", ""))
            if add:
                self._owned_by.setdefault(uid, set()).add(where)
            elif uid in self._owned_by:
                self._owned_by[uid].discard(where)
                if not self._owned_by[uid]:
                    del self._owned_by[uid]

    def names(self, key: StorageKey) -> Iterator[tuple[str, str]]:
        return iter(list(self._objects.get(key, {})))

    def put(self, key: StorageKey, namespace: str, name: str, obj: Obj) -> Obj:
        """Create or replace; stamps the next resourceVersion and returns a copy."""
        bucket = self._objects.setdefault(key, {})
        old = bucket.get((namespace, name))
        self._rv += 1
        stored = copy.deepcopy(obj)
        stored.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        bucket[(namespace, name)] = stored
        self._index_owners((key, namespace, name), old, add=False)
        self._index_owners((key, namespace, name), stored, add=True)
        if old is not None:
            self._uids.discard(old["metadata"].get("uid", ""))
        self._uids.add(stored["metadata"].get("uid", ""))
        event_type = "ADDED" if old is None else "MODIFIED"
        self._record(Event(self._rv, event_type, key, namespace, stored, old))
        return copy.deepcopy(stored)

    def remove(self, key: StorageKey, namespace: str, name: str) -> Obj | None:
        """Delete; the DELETED event carries the last state under a new resourceVersion."""
        bucket = self._objects.get(key, {})
        old = bucket.pop((namespace, name), None)
        if old is None:
            return None
        self._index_owners((key, namespace, name), old, add=False)
        self._uids.discard(old["metadata"].get("uid", ""))
        self._rv += 1
        final = copy.deepcopy(old)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._record(Event(self._rv, "DELETED", key, namespace, final))
        return copy.deepcopy(final)

    def snapshot(self) -> ObjectStore:
        """A deep copy of the objects and counters, with no history and no watches."""
        twin = ObjectStore(history_size=1)
        twin._objects = copy.deepcopy(self._objects)
        twin._rv = self._rv
        twin._evicted_rv = self._rv
        twin._uids = set(self._uids)
        twin._owned_by = copy.deepcopy(self._owned_by)
        return twin

    def _record(self, event: Event) -> None:
        self._history.append(event)
        while len(self._history) > self._history_size:
            self._evicted_rv = self._history.popleft().rv
        for watch in self._watches:
            if watch.wants(event):
                watch.queue.put_nowait(event)

    def watch(
        self, key: StorageKey, namespace: str | None, since: int | None
    ) -> tuple[list[Event], Watch]:
        """Subscribe. ``since`` None: the backlog is an ADDED event per existing object;
        otherwise it is every retained event newer than ``since`` (TooOldError if some
        of those were already evicted)."""
        watch = Watch(key, namespace)
        if since is None:
            backlog = [
                Event(int(obj["metadata"]["resourceVersion"]), "ADDED", key, ns, obj)
                for (ns, _name), obj in sorted(self._objects.get(key, {}).items())
                if namespace is None or ns == namespace
            ]
        else:
            if since < self._evicted_rv:
                raise TooOldError(since, self._evicted_rv + 1)
            backlog = [e for e in self._history if e.rv > since and watch.wants(e)]
        self._watches.add(watch)
        return backlog, watch

    def unwatch(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def close_all_watches(self) -> None:
        for watch in list(self._watches):
            watch.queue.put_nowait(None)
        self._watches.clear()
