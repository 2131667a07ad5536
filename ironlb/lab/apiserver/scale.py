"""The ``scale`` subresource (``autoscaling/v1`` ``Scale``) of Deployments.

``kubectl scale deployment web --replicas=5`` does not write the Deployment: it
finds ``deployments/scale`` in discovery (group ``autoscaling``, version
``v1``, kind ``Scale``) and merge-patches ``{"spec": {"replicas": 5}}`` into
``.../deployments/web/scale``. A Scale is a view: ``spec.replicas`` is the
object's ``spec.replicas``, ``status.replicas`` its ``status.replicas`` and
``status.selector`` its label selector as a string (Kubernetes API reference,
"Scale v1 autoscaling"). Pure: the HTTP layer turns a Scale write into a merge
patch of the object's ``spec.replicas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ironlb.lab.apiserver import errors

SCALE_GROUP = "autoscaling"
SCALE_VERSION = "v1"
SCALE_KIND = "Scale"
#: storage keys (group, plural) that have a scale subresource
SCALABLE = (("apps", "deployments"),)


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A ``metav1.LabelSelector`` as the string form (``app=web,tier in (a,b)``)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The Scale view of a stored object (its metadata name/namespace/uid/resourceVersion)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    return {
        "kind": SCALE_KIND,
        "apiVersion": f"{SCALE_GROUP}/{SCALE_VERSION}",
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int(status.get("replicas", 0)),
            "selector": selector_string(spec.get("selector")),
        },
    }


def replicas_of(scale: Any) -> int:
    """``spec.replicas`` of a Scale body: a non-negative integer, else 422 Invalid."""
    spec = scale.get("spec") if isinstance(scale, Mapping) else None
    replicas = spec.get("replicas", 0) if isinstance(spec, Mapping) else 0
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise errors.unprocessable(
            f"spec.replicas: Invalid value: {replicas!r}: must be a non-negative integer"
        )
    return replicas
