"""Render the Helm chart ``charts/ironlb`` with the Helm v4 engine (helm-python-sdk).

Shared by the chart tests: :func:`render` returns the rendered objects (one dict
per YAML document, NOTES.txt left out) for a set of values, as ``helm template``
would for release ``ironlb`` in ``ironlb-system``; :func:`by_kind` indexes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/ironlb"
ALL_VALUES = Path(__file__).with_name("values-all.yaml")
CRD = CHART / "crds/ipaddresspools.ironlb.io.yaml"
NAMESPACE = "ironlb-system"
RELEASE = "ironlb"

Obj = dict[str, Any]


def all_values() -> dict[str, Any]:
    """The test values file that sets every value of values.yaml to a non-default."""
    loaded: dict[str, Any] = yaml.safe_load(ALL_VALUES.read_text())
    return loaded


def documents(manifests: dict[str, str]) -> list[Obj]:
    """Every object of a rendered template mapping (template path -> YAML text)."""
    out: list[Obj] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(doc)
    return out


def render(
    values: dict[str, Any] | None = None,
    *,
    config: helm.Config | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Obj]:
    """The chart's objects for ``values``; through ``config`` (a cluster) ``lookup`` works.

    Raises ``helm.HelmValuesError`` for values the schema refuses.
    """
    with helm.Chart.load(CHART) as chart:
        if config is None:
            manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
        else:
            manifests = config.render(
                chart, values, name=release, namespace=namespace, is_upgrade=True
            )
    return documents(manifests)


def notes(values: dict[str, Any] | None = None) -> str:
    """The rendered NOTES.txt."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def by_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    """The objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    """The object of that kind and name; AssertionError naming what is there otherwise."""
    found = by_kind(objs, kind)
    assert name in found, f"no {kind} {name}; there are {sorted(found)}"
    return found[name]
