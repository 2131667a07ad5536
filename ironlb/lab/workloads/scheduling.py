"""The lab scheduler's choice, pure: which node an unbound pod goes to.

Feasible nodes (after kube-scheduler's ``NodeUnschedulable``, ``NodeName``-free
filtering and ``NodeAffinity`` for ``spec.nodeSelector`` only): ``Ready``
condition True, not cordoned (``spec.unschedulable``, unless the pod tolerates
``node.kubernetes.io/unschedulable``, as DaemonSet pods do), labels matching
``spec.nodeSelector``. Among them the one running the fewest active pods
wins, ties by name, which spreads a Deployment's pods evenly (a stand-in for
the default scoring). Taints other than the cordon one, affinity and resource
requests are not looked at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ironlb.lab.workloads import podstate

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates_unschedulable(pod: Mapping[str, Any]) -> bool:
    """A toleration of the ``node.kubernetes.io/unschedulable`` taint (key or wildcard)."""
    for toleration in (pod.get("spec") or {}).get("tolerations") or []:
        if not isinstance(toleration, Mapping):
            continue
        key = toleration.get("key")
        if key == UNSCHEDULABLE_TAINT or (not key and toleration.get("operator") == "Exists"):
            return True
    return False


def node_selected(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Every ``spec.nodeSelector`` label of the pod is on the node with the same value."""
    wanted = (pod.get("spec") or {}).get("nodeSelector") or {}
    have = podstate.labels(node)
    return all(have.get(str(k)) == str(v) for k, v in wanted.items())


def feasible(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The node can take the pod (see the module docstring)."""
    if podstate.condition(node, "Ready") != "True":
        return False
    if (node.get("spec") or {}).get("unschedulable") and not tolerates_unschedulable(pod):
        return False
    return node_selected(pod, node)


def pick_node(
    pod: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> str | None:
    """The node name for ``pod``, or None when no node is feasible.

    ``pods`` are all pods of the cluster; their ``spec.nodeName`` counts load.
    """
    load: dict[str, int] = {}
    for other in pods:
        name = (other.get("spec") or {}).get("nodeName")
        if name and podstate.is_active(other):
            load[str(name)] = load.get(str(name), 0) + 1
    candidates = [str(podstate.meta(n).get("name")) for n in nodes if feasible(pod, n)]
    if not candidates:
        return None
    return min(candidates, key=lambda name: (load.get(name, 0), name))
