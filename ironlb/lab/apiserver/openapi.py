"""A minimal OpenAPI v3 index so ``kubectl create/apply -f`` can validate server-side.

kubectl (1.27+) asks ``/openapi/v3`` whether a type's PATCH operation accepts
the ``fieldValidation`` query parameter; if so, it leaves validation to the
server instead of downloading full schemas. This module publishes exactly
that: for each group-version, one path per resource whose PATCH operation
names its GroupVersionKind and the ``fieldValidation`` parameter. It carries
no schemas (``components.schemas`` is empty), so client-side schema tools
(``kubectl explain``) have nothing to show. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from ironlb.lab.apiserver.registry import Registry


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_index(registry: Registry) -> dict[str, Any]:
    """The body of ``GET /openapi/v3``: one entry per group-version."""
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv = _gv_path(group, version)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}"}
    return {"paths": paths}


def openapi_document(registry: Registry, gv_path: str) -> dict[str, Any] | None:
    """The body of ``GET /openapi/v3/<gv_path>``, or None if no such group-version."""
    parts = gv_path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    types = [t for t in registry.types() if t.group == group and t.version == version]
    if not types:
        return None
    field_validation = {
        "name": "fieldValidation",
        "in": "query",
        "schema": {"type": "string", "uniqueItems": True},
    }
    paths: dict[str, Any] = {}
    for rtype in types:
        base = f"/{_gv_path(group, version)}"
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        gvk = {"group": group, "version": version, "kind": rtype.kind}
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [field_validation],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{base}{scope}/{rtype.plural}/{{name}}"] = {
            "patch": operation,
            "put": operation,
            "get": {
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            },
        }
        paths[f"{base}{scope}/{rtype.plural}"] = {"post": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (ironlb lab)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }
