"""Which node announces a VIP: eligibility rules and rendezvous hashing.

Every speaker computes the same answer from the same inputs (the live
speakers, the Nodes, the pool's ``l2`` scope and, for
``externalTrafficPolicy: Local``, the nodes with a ready local endpoint), so
no coordination is needed beyond agreeing on who is alive. The owner is picked
by highest-random-weight (rendezvous) hashing: VIPs spread evenly over the
eligible nodes, and a node joining or leaving moves only the VIPs it gains or
loses, never VIPs between two other nodes.

Pure: no Kubernetes client, no sockets, no asyncio.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ironlb.common.addresses import IPAddress
from ironlb.operator.pools import L2Scope

__all__ = [
    "EXCLUDE_LABEL",
    "NodeInfo",
    "eligible_nodes",
    "ineligible_reason",
    "node_info",
    "rendezvous_owner",
    "rendezvous_score",
]

#: Kubernetes well-known label: a node carrying it (any value) never announces a VIP.
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class NodeInfo:
    """What the election needs of one core/v1 Node.

    ``internal_ips``: ``status.addresses`` entries of ``type: InternalIP``;
    ``network_unavailable``: condition ``NetworkUnavailable`` has status
    ``"True"``; ``unschedulable``: ``spec.unschedulable``.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    internal_ips: tuple[IPAddress, ...] = ()
    network_unavailable: bool = False
    unschedulable: bool = False


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    """A :class:`NodeInfo` from a Node object as the API returns it; missing fields are defaults."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    raw_labels = meta.get("labels") or {}
    labels = (
        {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
    )
    ips: list[IPAddress] = []
    for entry in status.get("addresses") or []:
        if isinstance(entry, Mapping) and entry.get("type") == "InternalIP":
            try:
                ips.append(ipaddress.ip_address(str(entry.get("address"))))
            except ValueError:
                continue
    unavailable = any(
        isinstance(c, Mapping)
        and c.get("type") == "NetworkUnavailable"
        and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return NodeInfo(
        name=str(meta.get("name") or ""),
        labels=MappingProxyType(labels),
        internal_ips=tuple(ips),
        network_unavailable=unavailable,
        unschedulable=spec.get("unschedulable") is True,
    )


def _filters(
    alive: frozenset[str],
    nodes: Mapping[str, NodeInfo],
    scope: L2Scope | None,
    local_ready: frozenset[str] | None,
) -> list[tuple[str, list[str]]]:
    """The candidates left after each rule, in order, with the rule's name."""
    steps: list[tuple[str, list[str]]] = []
    left = sorted(name for name in alive if name in nodes)
    steps.append(("node", left))
    if scope is not None:
        left = [n for n in left if scope.node_allowed(nodes[n].labels)]
    steps.append(("selector", left))
    left = [n for n in left if EXCLUDE_LABEL not in nodes[n].labels]
    steps.append(("exclude", left))
    left = [n for n in left if not nodes[n].network_unavailable]
    steps.append(("network", left))
    if local_ready is not None:
        left = [n for n in left if n in local_ready]
    steps.append(("local", left))
    return steps


def eligible_nodes(
    vip: IPAddress,
    *,
    alive: frozenset[str],
    nodes: Mapping[str, NodeInfo],
    scope: L2Scope | None,
    local_ready: frozenset[str] | None,
) -> tuple[str, ...]:
    """The nodes that may announce ``vip``, sorted by name.

    A node qualifies when its speaker is live (in ``alive``) and its Node
    exists in ``nodes``, it matches one of the pool's ``l2.nodeSelectors``
    (no selectors or ``scope`` None: every node), it lacks
    :data:`EXCLUDE_LABEL`, and its ``NetworkUnavailable`` condition is not
    ``"True"``. With ``local_ready`` (``externalTrafficPolicy: Local``) it
    must also be in that set.

    ``spec.unschedulable`` (cordoned) is only a hint: a cordon says "no new
    pods", not "no traffic", and draining a node must not drop a VIP when no
    other node could take it. So unschedulable nodes are returned only when
    no schedulable node qualifies; otherwise they are left out, which moves
    VIPs off a node before it is drained. ``vip`` is not used by the rules;
    it is taken so every election call names what it is electing for.
    """
    del vip
    left = _filters(alive, nodes, scope, local_ready)[-1][1]
    schedulable = tuple(n for n in left if not nodes[n].unschedulable)
    return schedulable or tuple(left)


def ineligible_reason(
    *,
    alive: frozenset[str],
    nodes: Mapping[str, NodeInfo],
    scope: L2Scope | None,
    local_ready: frozenset[str] | None,
    pool: str | None,
) -> str:
    """A brief reason why :func:`eligible_nodes` is empty: the first rule that left nobody.

    E.g. ``"no live speaker matches pool web's l2.nodeSelectors"``. Returns
    ``""`` when some node is eligible.
    """
    messages = {
        "node": "no live speaker runs on a known Node",
        "selector": f"no live speaker matches pool {pool}'s l2.nodeSelectors",
        "exclude": f"every candidate node has the label {EXCLUDE_LABEL}",
        "network": "every candidate node has condition NetworkUnavailable",
        "local": "externalTrafficPolicy Local: no live speaker has a ready local endpoint",
    }
    for step, left in _filters(alive, nodes, scope, local_ready):
        if not left:
            return messages[step]
    return ""


def rendezvous_score(node: str, vip: IPAddress) -> int:
    """The node's weight for ``vip``: the first 8 bytes of SHA-256 of ``node NUL vip``."""
    digest = hashlib.sha256(f"{node}\x00{vip.compressed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rendezvous_owner(vip: IPAddress, candidates: Iterable[str]) -> str | None:
    """The candidate with the highest :func:`rendezvous_score` (ties: the smaller name).

    ``None`` when there are no candidates. The result depends only on the
    set of candidates, not on their order.
    """
    best: tuple[int, str] | None = None
    for name in candidates:
        score = rendezvous_score(name, vip)
        if best is None or score > best[0] or (score == best[0] and name < best[1]):
            best = (score, name)
    return None if best is None else best[1]
