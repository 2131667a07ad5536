"""Defaulting of ``apps/v1`` Deployments and DaemonSets, as kube-apiserver does it.

From ``pkg/apis/apps/v1/defaults.go``: a Deployment gets ``replicas`` 1,
``strategy.type`` RollingUpdate with ``maxSurge``/``maxUnavailable`` "25%",
``revisionHistoryLimit`` 10 and ``progressDeadlineSeconds`` 600; a DaemonSet
gets ``updateStrategy.type`` RollingUpdate with ``maxUnavailable`` 1 and
``maxSurge`` 0, and ``revisionHistoryLimit`` 10. ``kubectl rollout status
daemonset`` refuses a DaemonSet whose strategy type is not RollingUpdate, so
without this a DaemonSet made by ``kubectl apply`` could never be watched.
Pod template defaults are not applied. Pure: edits the object in place.
"""

from __future__ import annotations

from typing import Any

APPS = "apps"


def apply_defaults(kind: str, obj: dict[str, Any]) -> None:
    """Fill the defaults of a ``Deployment`` or ``DaemonSet`` body; other kinds untouched."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                if isinstance(rolling, dict):
                    rolling.setdefault("maxUnavailable", "25%")
                    rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    elif kind == "DaemonSet":
        strategy = spec.setdefault("updateStrategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                if isinstance(rolling, dict):
                    rolling.setdefault("maxUnavailable", 1)
                    rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
