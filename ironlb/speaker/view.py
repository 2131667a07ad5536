"""What one speaker knows of the cluster: the latest copy of each watched object.

The Kubernetes adapter (kopf events and the start-up lists) writes here;
the reconcile loop reads a consistent snapshot of it and hands that to the
pure planner (:mod:`ironlb.speaker.plan`). Every write bumps ``version``,
so the loop can tell whether anything changed since it last planned.
Pools are parsed on arrival; an invalid pool is kept out (the controller
marks it Invalid and allocates nothing from it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ironlb.operator.pools import Pool, PoolError, parse_pool
from ironlb.speaker.election import NodeInfo, node_info

log = logging.getLogger("ironlb.speaker")

ObjectKey = tuple[str, str]  # (namespace, name)


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class ClusterView:
    """Services, EndpointSlices, Nodes and pools as last seen."""

    def __init__(self) -> None:
        self.services: dict[ObjectKey, Mapping[str, Any]] = {}
        self.slices: dict[ObjectKey, Mapping[str, Any]] = {}
        self.nodes: dict[str, NodeInfo] = {}
        self.pools: dict[str, Pool] = {}
        self.version = 0

    def on_service(self, event: str, obj: Mapping[str, Any]) -> None:
        self._put(self.services, event, obj)

    def on_slice(self, event: str, obj: Mapping[str, Any]) -> None:
        self._put(self.slices, event, obj)

    def on_node(self, event: str, obj: Mapping[str, Any]) -> None:
        name = _key(obj)[1]
        if event == "DELETED":
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = node_info(obj)
        self.version += 1

    def on_pool(self, event: str, obj: Mapping[str, Any]) -> None:
        name = _key(obj)[1]
        if event == "DELETED":
            self.pools.pop(name, None)
        else:
            try:
                self.pools[name] = parse_pool(name, obj.get("spec") or {})
            except PoolError as exc:
                log.warning("pool %s is invalid, ignored: %s", name, exc)
                self.pools.pop(name, None)
        self.version += 1

    def _put(
        self, table: dict[ObjectKey, Mapping[str, Any]], event: str, obj: Mapping[str, Any]
    ) -> None:
        key = _key(obj)
        if event == "DELETED":
            table.pop(key, None)
        else:
            table[key] = obj
        self.version += 1
