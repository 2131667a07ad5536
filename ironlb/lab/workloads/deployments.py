"""The Deployment controller's decisions, pure: which pods to create and delete, and the status.

ReplicaSet-free: a Deployment owns its pods directly (``ownerReferences`` with
``controller: true``); a pod belongs to the current revision when its
``pod-template-hash`` label equals the hash of ``spec.template``
(:func:`~ironlb.lab.workloads.names.template_hash`). Names are
``<deployment>-<hash>-<5 chars>`` (``generateName`` ``<deployment>-<hash>-``,
as the ReplicaSet the real controller makes is ``<deployment>-<hash>`` and its
pods take that as ``generateName``).

Rules after the Kubernetes Deployment docs and ``pkg/controller/deployment``:

- ``RollingUpdate`` (default): ``maxSurge``/``maxUnavailable`` default 25%;
  percentages of ``spec.replicas``, surge rounded up, unavailable down, and
  both 0 means ``maxUnavailable`` 1. New pods are created while the total stays
  within ``replicas + maxSurge``; old pods are deleted while at least
  ``replicas - maxUnavailable`` pods stay available (not-ready old pods go
  first, they count for nothing).
- ``Recreate``: every old pod is deleted before any new one is created.
- Scale down deletes in ``ActivePods`` order (see
  :func:`~ironlb.lab.workloads.podstate.deletion_rank`).
- Status: ``replicas`` (active pods), ``updatedReplicas`` (active current
  ones), ``readyReplicas``, ``availableReplicas`` (ready; ``minReadySeconds``
  is 0), ``unavailableReplicas``, ``observedGeneration``, and the ``Available``
  and ``Progressing`` conditions: what ``kubectl rollout status`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ironlb.lab.workloads import podstate
from ironlb.lab.workloads.names import template_hash
from ironlb.lab.workloads.podstate import Obj

HASH_LABEL = "pod-template-hash"
DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"


class SpecError(ValueError):
    """A Deployment/DaemonSet spec the controller cannot act on; ``str()`` says why."""


@dataclass
class Plan:
    """What one reconcile of one owner asks for: pod bodies to create, names to delete,
    and the status to write (None: unchanged)."""

    create: list[Obj] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: Obj | None = None


def scaled_value(value: Any, total: int, *, round_up: bool, name: str) -> int:
    """An ``IntOrString`` (``3`` or ``"25%"``) resolved against ``total``
    (``intstr.GetScaledValueFromIntOrPercent``). Raises :class:`SpecError`."""
    if isinstance(value, bool):
        raise SpecError(f"{name}: must be an integer or a percentage, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SpecError(f"{name}: must be >= 0, got {value}")
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    raise SpecError(f"{name}: must be an integer or a percentage, got {value!r}")


def surge_and_unavailable(spec: Mapping[str, Any], replicas: int) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` of a RollingUpdate strategy (defaults 25%/25%)."""
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(
        rolling.get("maxSurge", DEFAULT_SURGE), replicas, round_up=True, name="maxSurge"
    )
    unavailable = scaled_value(
        rolling.get("maxUnavailable", DEFAULT_UNAVAILABLE),
        replicas,
        round_up=False,
        name="maxUnavailable",
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def replicas_of(spec: Mapping[str, Any]) -> int:
    """``spec.replicas`` (default 1). Raises :class:`SpecError` if not a count."""
    value = spec.get("replicas", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"spec.replicas: must be a non-negative integer, got {value!r}")
    return int(value)


def pod_for(deployment: Mapping[str, Any], pod_hash: str) -> Obj:
    """The body of a new pod of ``deployment``'s current template."""
    dmeta = podstate.meta(deployment)
    template = (deployment.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    metadata: Obj = {
        "generateName": f"{dmeta.get('name')}-{pod_hash}-",
        "namespace": dmeta.get("namespace", "default"),
        "labels": {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash},
        "ownerReferences": [podstate.owner_ref(deployment, "apps/v1", "Deployment")],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": dict(template.get("spec") or {}),
    }


def reconcile(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Plan:
    """The plan for ``deployment`` given every pod of its namespace (others are ignored).

    Raises :class:`SpecError` for a spec it cannot act on (bad replicas/strategy).
    """
    spec = deployment.get("spec") or {}
    uid = str(podstate.meta(deployment).get("uid"))
    mine = [p for p in pods if podstate.owned_by(p, uid)]
    active = [p for p in mine if podstate.is_active(p)]
    current = template_hash(spec.get("template") or {})
    new = [p for p in active if podstate.labels(p).get(HASH_LABEL) == current]
    old = [p for p in active if podstate.labels(p).get(HASH_LABEL) != current]
    replicas = replicas_of(spec)
    strategy = str((spec.get("strategy") or {}).get("type") or "RollingUpdate")
    if strategy not in ("RollingUpdate", "Recreate"):
        raise SpecError(f'spec.strategy.type: Unsupported value: "{strategy}"')
    plan = Plan()
    paused = bool(spec.get("paused"))
    if not paused:
        if strategy == "Recreate":
            _recreate(plan, deployment, current, new, old, replicas)
        else:
            _rolling(plan, deployment, current, new, old, replicas, spec)
    plan.status = status_for(deployment, new, active, replicas, spec, strategy)
    return plan


def _by_deletion(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    ordered = sorted(pods, key=podstate.deletion_rank)
    return [str(podstate.meta(p).get("name")) for p in ordered]


def _recreate(
    plan: Plan,
    deployment: Mapping[str, Any],
    current: str,
    new: Sequence[Mapping[str, Any]],
    old: Sequence[Mapping[str, Any]],
    replicas: int,
) -> None:
    if old:
        plan.delete = _by_deletion(old)
        return
    _scale(plan, deployment, current, new, replicas)


def _scale(
    plan: Plan,
    deployment: Mapping[str, Any],
    current: str,
    new: Sequence[Mapping[str, Any]],
    replicas: int,
) -> None:
    if len(new) < replicas:
        plan.create = [pod_for(deployment, current) for _ in range(replicas - len(new))]
    elif len(new) > replicas:
        plan.delete = _by_deletion(new)[: len(new) - replicas]


def _rolling(
    plan: Plan,
    deployment: Mapping[str, Any],
    current: str,
    new: Sequence[Mapping[str, Any]],
    old: Sequence[Mapping[str, Any]],
    replicas: int,
    spec: Mapping[str, Any],
) -> None:
    if not old:
        _scale(plan, deployment, current, new, replicas)
        return
    surge, unavailable = surge_and_unavailable(spec, replicas)
    if len(new) > replicas:
        plan.delete = _by_deletion(new)[: len(new) - replicas]
        new = [p for p in new if podstate.meta(p).get("name") not in plan.delete]
    room = replicas + surge - len(new) - len(old)
    wanted = max(0, min(replicas - len(new), room))
    plan.create = [pod_for(deployment, current) for _ in range(wanted)]
    available = sum(1 for p in [*new, *old] if podstate.is_available(p))
    budget = available - (replicas - unavailable)
    doomed = [str(podstate.meta(p).get("name")) for p in old if not podstate.is_available(p)]
    ready_old = [p for p in old if podstate.is_available(p)]
    if budget > 0:
        doomed += _by_deletion(ready_old)[:budget]
    plan.delete += doomed


def status_for(
    deployment: Mapping[str, Any],
    new: Sequence[Mapping[str, Any]],
    active: Sequence[Mapping[str, Any]],
    replicas: int,
    spec: Mapping[str, Any],
    strategy: str,
) -> Obj:
    """The Deployment status for these pods (see the module docstring for the fields)."""
    ready = sum(1 for p in active if podstate.is_ready(p))
    available = sum(1 for p in active if podstate.is_available(p))
    _surge, unavailable = (
        surge_and_unavailable(spec, replicas) if strategy == "RollingUpdate" else (0, 0)
    )
    done = len(new) == replicas and len(active) == replicas and available >= replicas
    status: Obj = {
        "observedGeneration": int(podstate.meta(deployment).get("generation") or 1),
        "replicas": len(active),
        "updatedReplicas": len(new),
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(0, replicas - available),
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available >= replicas - unavailable else "False",
                "reason": "MinimumReplicasAvailable"
                if available >= replicas - unavailable
                else "MinimumReplicasUnavailable",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
            },
        ],
    }
    for key in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas"):
        if status[key] == 0:
            del status[key]  # omitted when zero, as the Go JSON encoding of the real status
    return status
