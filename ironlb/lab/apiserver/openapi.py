"""The OpenAPI v3 documents kubectl reads: validation mode and ``kubectl explain``.

kubectl (1.27+) asks ``/openapi/v3`` whether a type's PATCH operation accepts
the ``fieldValidation`` query parameter; if so, it leaves validation to the
server instead of downloading full schemas. ``kubectl explain`` looks up the
schema whose ``x-kubernetes-group-version-kind`` names the resource in the
group-version's ``components.schemas``. This module publishes, per
group-version, one path per resource (PATCH/PUT/POST naming the kind and the
``fieldValidation`` parameter, GET answering the kind's schema) and, for
custom resources, the CRD version's ``openAPIV3Schema`` with the
``apiVersion``/``kind``/``metadata`` fields kube-apiserver adds, named as
kube-apiserver names them (the group reversed: ``io.ironlb.v1alpha1.IPAddressPool``).
Built-in kinds carry no schema here. Pure: no I/O; the schemas come from a
callback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ironlb.lab.apiserver.registry import Registry, ResourceType

#: The schema of a resource type (a CRD version's ``openAPIV3Schema``), or None.
SchemaLookup = Callable[[ResourceType], Mapping[str, Any] | None]


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


def schema_name(rtype: ResourceType) -> str:
    """kube-apiserver's component name for a type: reversed group, version, kind."""
    group = ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    return f"{group}.{rtype.version}.{rtype.kind}"


def _with_object_fields(schema: Mapping[str, Any], gvk: dict[str, str]) -> dict[str, Any]:
    """The CRD schema as kube-apiserver publishes it: apiVersion, kind and
    metadata described, the GroupVersionKind attached."""
    published = dict(schema)
    properties = dict(published.get("properties") or {})
    properties.setdefault(
        "apiVersion",
        {
            "type": "string",
            "description": "APIVersion defines the versioned schema of this object.",
        },
    )
    properties.setdefault(
        "kind",
        {"type": "string", "description": "Kind is a string value naming the REST resource."},
    )
    properties["metadata"] = {
        "type": "object",
        "description": "Standard object's metadata (name, namespace, labels, annotations, ...).",
    }
    published["properties"] = properties
    published["x-kubernetes-group-version-kind"] = [gvk]
    return published


def openapi_document(
    registry: Registry, gv_path: str, schemas: SchemaLookup | None = None
) -> dict[str, Any] | None:
    """The body of ``GET /openapi/v3/<gv_path>``, or None if no such group-version.

    ``schemas`` gives a type's schema (custom resources); types without one
    are published without a schema."""
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
    components: dict[str, Any] = {}
    for rtype in types:
        base = f"/{_gv_path(group, version)}"
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        gvk = {"group": group, "version": version, "kind": rtype.kind}
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [field_validation],
            "responses": {"200": {"description": "OK"}},
        }
        schema = schemas(rtype) if schemas is not None else None
        ok: dict[str, Any] = {"description": "OK"}
        if schema is not None:
            name = schema_name(rtype)
            components[name] = _with_object_fields(schema, gvk)
            ref = {"schema": {"$ref": f"#/components/schemas/{name}"}}
            ok = {"description": "OK", "content": {"application/json": ref}}
        paths[f"{base}{scope}/{rtype.plural}/{{name}}"] = {
            "patch": operation,
            "put": operation,
            "get": {"x-kubernetes-group-version-kind": gvk, "responses": {"200": ok}},
        }
        paths[f"{base}{scope}/{rtype.plural}"] = {"post": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (ironlb lab)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": components},
    }
