"""The DaemonSet controller's decisions, pure: one pod per matching node, and the status.

A node should run the DaemonSet's pod when it matches the template's
``spec.nodeSelector``; cordoned (``spec.unschedulable``) and not-ready nodes
still do, since the real controller adds tolerations for
``node.kubernetes.io/unschedulable`` and the not-ready/unreachable taints to
every DaemonSet pod (Kubernetes docs, "DaemonSet": "Taints and
tolerations"). Pods are bound directly (``spec.nodeName``), not through the
scheduler. Pods carry ``controller-revision-hash`` (here the template hash of
:mod:`~ironlb.lab.workloads.names`, where the real one names a
ControllerRevision) and are named ``<daemonset>-<5 chars>``.

Updates: ``RollingUpdate`` (default, ``maxUnavailable`` 1, may be a
percentage of the nodes) deletes outdated pods while at most
``maxUnavailable`` nodes lack an available pod, then creates the new one;
``OnDelete`` leaves outdated pods until someone deletes them. Status fields
are those ``kubectl rollout status daemonset`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ironlb.lab.workloads import podstate
from ironlb.lab.workloads.deployments import Plan, SpecError, scaled_value
from ironlb.lab.workloads.names import template_hash
from ironlb.lab.workloads.podstate import Obj
from ironlb.lab.workloads.scheduling import UNSCHEDULABLE_TAINT, node_selected

HASH_LABEL = "controller-revision-hash"
#: the tolerations the DaemonSet controller adds (``pkg/controller/daemon/util``)
TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"},
)


def pod_for(daemonset: Mapping[str, Any], node: str, pod_hash: str) -> Obj:
    """The body of the DaemonSet's pod for ``node``."""
    dmeta = podstate.meta(daemonset)
    template = (daemonset.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    spec = dict(template.get("spec") or {})
    spec["nodeName"] = node
    tolerations = list(spec.get("tolerations") or [])
    tolerations += [t for t in TOLERATIONS if t not in tolerations]
    spec["tolerations"] = tolerations
    metadata: Obj = {
        "generateName": f"{dmeta.get('name')}-",
        "namespace": dmeta.get("namespace", "default"),
        "labels": {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash},
        "ownerReferences": [podstate.owner_ref(daemonset, "apps/v1", "DaemonSet")],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def reconcile(
    daemonset: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
) -> Plan:
    """The plan for ``daemonset`` given all nodes and the pods of its namespace.

    Raises :class:`~ironlb.lab.workloads.deployments.SpecError` for an unknown
    update strategy or a bad ``maxUnavailable``.
    """
    spec = daemonset.get("spec") or {}
    template = spec.get("template") or {}
    current = template_hash(template)
    uid = str(podstate.meta(daemonset).get("uid"))
    mine = [p for p in pods if podstate.owned_by(p, uid) and podstate.is_active(p)]
    probe = {"spec": template.get("spec") or {}}
    wanted = sorted(str(podstate.meta(n).get("name")) for n in nodes if node_selected(probe, n))
    strategy = spec.get("updateStrategy") or {}
    kind = str(strategy.get("type") or "RollingUpdate")
    if kind not in ("RollingUpdate", "OnDelete"):
        raise SpecError(f'spec.updateStrategy.type: Unsupported value: "{kind}"')
    max_unavailable = scaled_value(
        (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1),
        len(wanted),
        round_up=True,
        name="maxUnavailable",
    )
    max_unavailable = max(1, max_unavailable)
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for pod in mine:
        by_node.setdefault(str((pod.get("spec") or {}).get("nodeName") or ""), []).append(pod)
    plan = Plan()
    unavailable = sum(
        1 for n in wanted if not any(podstate.is_available(p) for p in by_node.get(n, []))
    )
    for node_name, on_node in sorted(by_node.items()):
        if node_name not in wanted:
            plan.delete += [str(podstate.meta(p).get("name")) for p in on_node]
        elif len(on_node) > 1:  # keep one (current and ready if any), drop the rest
            ordered = sorted(
                on_node,
                key=lambda p: (
                    podstate.labels(p).get(HASH_LABEL) == current,
                    podstate.is_ready(p),
                ),
            )
            plan.delete += [str(podstate.meta(p).get("name")) for p in ordered[:-1]]
    for node_name in wanted:
        on_node = list(by_node.get(node_name, []))
        if not on_node:
            plan.create.append(pod_for(daemonset, node_name, current))
            continue
        if len(on_node) > 1 or kind == "OnDelete":
            continue
        pod = on_node[0]
        if podstate.labels(pod).get(HASH_LABEL) == current:
            continue
        if not podstate.is_available(pod):
            plan.delete.append(str(podstate.meta(pod).get("name")))
        elif unavailable < max_unavailable:
            plan.delete.append(str(podstate.meta(pod).get("name")))
            unavailable += 1
    plan.status = status_for(daemonset, wanted, by_node, current)
    return plan


def status_for(
    daemonset: Mapping[str, Any],
    wanted: Sequence[str],
    by_node: Mapping[str, Sequence[Mapping[str, Any]]],
    current: str,
) -> Obj:
    """``desiredNumberScheduled``, ``currentNumberScheduled``, ``numberMisscheduled``,
    ``numberReady``, ``updatedNumberScheduled``, ``numberAvailable``,
    ``numberUnavailable`` and ``observedGeneration``."""
    scheduled = [n for n in wanted if by_node.get(n)]
    ready = [n for n in wanted if any(podstate.is_ready(p) for p in by_node.get(n, []))]
    available = [n for n in wanted if any(podstate.is_available(p) for p in by_node.get(n, []))]
    updated = [
        n
        for n in wanted
        if any(podstate.labels(p).get(HASH_LABEL) == current for p in by_node.get(n, []))
    ]
    status: Obj = {
        "observedGeneration": int(podstate.meta(daemonset).get("generation") or 1),
        "desiredNumberScheduled": len(wanted),
        "currentNumberScheduled": len(scheduled),
        "numberMisscheduled": sum(1 for n in by_node if n not in wanted),
        "numberReady": len(ready),
        "updatedNumberScheduled": len(updated),
        "numberAvailable": len(available),
        "numberUnavailable": len(wanted) - len(available),
    }
    for key in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
        if status[key] == 0:
            del status[key]
    return status
