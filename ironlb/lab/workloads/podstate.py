"""What the controllers read off a Pod: readiness, termination, addresses, age order.

Pure helpers over Pod dicts as the API serves them. Rules from the Kubernetes
API reference (``PodStatus``, ``PodCondition``) and ``pkg/api/v1/pod``
(``IsPodReady``: the ``Ready`` condition is ``"True"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any

Obj = dict[str, Any]


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj.metadata`` or an empty mapping."""
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """``metadata.labels`` (string values) or ``{}``."""
    return {str(k): str(v) for k, v in (meta(obj).get("labels") or {}).items()}


def condition(obj: Mapping[str, Any], kind: str) -> str | None:
    """The ``status`` (``"True"``/``"False"``/``"Unknown"``) of condition ``kind``, or None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's ``Ready`` condition is True (``IsPodReady``)."""
    return condition(pod, "Ready") == "True"


def is_terminating(obj: Mapping[str, Any]) -> bool:
    """``metadata.deletionTimestamp`` is set."""
    return bool(meta(obj).get("deletionTimestamp"))


def is_finished(pod: Mapping[str, Any]) -> bool:
    """Phase ``Succeeded`` or ``Failed``: the pod will not run again."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: Mapping[str, Any]) -> bool:
    """Neither terminating nor finished (the ReplicaSet controller's "active" pods)."""
    return not is_terminating(pod) and not is_finished(pod)


def is_available(pod: Mapping[str, Any]) -> bool:
    """Active and ready (``minReadySeconds`` is not honoured: 0)."""
    return is_active(pod) and is_ready(pod)


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    """``status.podIPs[*].ip``, else ``[status.podIP]``, else ``[]``; invalid ones skipped."""
    status = pod.get("status") or {}
    found = [str(e.get("ip")) for e in status.get("podIPs") or [] if isinstance(e, Mapping)]
    if not found and status.get("podIP"):
        found = [str(status["podIP"])]
    valid = []
    for text in found:
        try:
            ip_address(text)
        except ValueError:
            continue
        valid.append(text)
    return valid


def owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """An ``ownerReferences`` entry with ``controller: true`` names ``owner_uid``."""
    return any(
        isinstance(ref, Mapping) and ref.get("uid") == owner_uid and ref.get("controller")
        for ref in meta(obj).get("ownerReferences") or []
    )


def owner_ref(owner: Mapping[str, Any], api_version: str, kind: str) -> Obj:
    """The controller ``ownerReference`` a controller writes into what it creates."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta(owner).get("name"),
        "uid": meta(owner).get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deletion_rank(pod: Mapping[str, Any]) -> tuple[int, int, int, str, str]:
    """Sort key: pods to delete first sort first, as the ReplicaSet controller picks
    (``pkg/controller/controller_utils.go`` ``ActivePods``): unscheduled before
    scheduled, Pending before Unknown before Running, not ready before ready,
    then newer before older (creationTimestamp, then name, descending)."""
    scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(
        str((pod.get("status") or {}).get("phase")), 0
    )
    ready = 1 if is_ready(pod) else 0
    created = str(meta(pod).get("creationTimestamp") or "")
    name = str(meta(pod).get("name") or "")
    return (scheduled, phase, ready, _desc(created), _desc(name))


def _desc(text: str) -> str:
    """A key that sorts ``text`` descending (newest first) inside an ascending sort."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text) + chr(0x10FFFF)
