"""aiohttp request handling: URL parsing, discovery and the verbs.

Translates Kubernetes REST paths (``/api/v1/...``, ``/apis/<group>/<version>/...``)
into :class:`~ironlb.lab.apiserver.cluster.Cluster` calls and renders the
results (objects, ``<Kind>List`` bodies, Tables for kubectl, ``Status``
errors). Writes pass the matching validating webhooks first
(:mod:`~ironlb.lab.apiserver.admission`); watches are served by
:mod:`~ironlb.lab.apiserver.watches`. Protobuf bodies are read and, for a
client that prefers them, written by :mod:`~ironlb.lab.apiserver.protobody`;
everything else (errors, Tables, watches, discovery) is JSON.
Server-side apply, the field manager of every write, ``fieldValidation`` and
``dryRun=All`` are read from the request here and carried out by the cluster
(:class:`~ironlb.lab.apiserver.cluster.WriteOptions`); field-validation
warnings go out as ``Warning`` headers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from ironlb.lab.apiserver import errors, scale
from ironlb.lab.apiserver.admission import CONFIGS, AdmissionCaller, Attributes, matching_webhooks
from ironlb.lab.apiserver.cluster import (
    FIELD_VALIDATION,
    Cluster,
    StaleError,
    WriteOptions,
    render,
)
from ironlb.lab.apiserver.openapi import openapi_document, openapi_index
from ironlb.lab.apiserver.patching import APPLY as APPLY_PATCH
from ironlb.lab.apiserver.patching import SUPPORTED as PATCH_TYPES
from ironlb.lab.apiserver.patching import apply_patch
from ironlb.lab.apiserver.protobody import MEDIA_TYPE as PROTOBUF
from ironlb.lab.apiserver.protobody import decode as decode_protobuf
from ironlb.lab.apiserver.protobody import encode as encode_protobuf
from ironlb.lab.apiserver.protobody import prefers_protobuf
from ironlb.lab.apiserver.registry import CRDS, ResourceType
from ironlb.lab.apiserver.selectors import SelectorError, make_filter
from ironlb.lab.apiserver.tables import crd_columns, table, wants_table
from ironlb.lab.apiserver.validation import duplicate_fields
from ironlb.lab.apiserver.watches import TRUE, WatchStream

log = logging.getLogger(__name__)

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-ironlb-lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Target:
    """A resolved resource URL."""

    rtype: ResourceType
    namespace: str | None  # None: cluster-scoped type, or all namespaces
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def _without_managed_fields(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (an object or a list) without ``metadata.managedFields``, which the 1.14
    protobuf definitions cannot carry (they predate ``fieldsV1``)."""
    out = dict(body)
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    if isinstance(out.get("items"), list):
        out["items"] = [
            _without_managed_fields(i) if isinstance(i, dict) else i for i in out["items"]
        ]
    return out


def _object(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    """An object or list: protobuf when the client prefers it and the kind fits, else JSON."""
    if prefers_protobuf(request.headers.get("Accept")):
        encoded = encode_protobuf(_without_managed_fields(body))
        if encoded is not None:
            return web.Response(body=encoded, status=status, content_type=PROTOBUF)
    return _json(body, status)


def _warned(response: web.Response, options: WriteOptions) -> web.Response:
    """``response`` with one ``Warning: 299 - "..."`` header per field-validation warning
    (RFC 7234 warn-code 299, the form kube-apiserver uses and kubectl prints)."""
    for text in options.warnings:
        response.headers.add("Warning", "299 - " + json.dumps(text))
    return response


class ApiHandler:
    """The one catch-all aiohttp handler of the local API server."""

    def __init__(
        self,
        cluster: Cluster,
        bookmark_interval: float = 30.0,
        version_info: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.bookmark_interval = bookmark_interval
        self.version_info = VERSION_INFO if version_info is None else version_info
        self.admission = AdmissionCaller()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._dispatch(request)
        except errors.ApiError as exc:
            response = _json(exc.status, exc.code)
        except SelectorError as exc:
            response = _json(errors.bad_request(str(exc)).status, 400)
        except Exception as exc:  # a bug here must still answer like an apiserver
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            response = _json(errors.ApiError(500, "InternalError", repr(exc)).status, 500)
        log.debug("%s %s -> %d", request.method, request.path_qs, response.status)
        return response

    # --- routing ----------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        segments = [s for s in path.split("/") if s]
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(self.version_info)
        if segments[:2] == ["openapi", "v3"]:
            registry = self.cluster.registry
            if len(segments) == 2:
                return _json(openapi_index(registry))
            document = openapi_document(registry, "/".join(segments[2:]), self.cluster.type_schema)
            if document is None:
                raise errors.path_not_found(path)
            return _json(document)
        if segments[:1] == ["api"]:
            prefix, group, rest = segments[1:2], "", segments[2:]
        elif segments[:1] == ["apis"]:
            prefix, group, rest = (
                segments[2:3],
                (segments[1] if len(segments) > 1 else ""),
                (segments[3:]),
            )
        else:
            raise errors.path_not_found(path)
        registry = self.cluster.registry
        if request.method != "GET" and not rest:
            raise errors.method_not_allowed(request.method, path)
        if segments == ["api"]:
            return _json(registry.api_versions())
        if segments == ["apis"]:
            return _json(registry.api_group_list())
        if not prefix:
            found = registry.api_group(group)
            if found is None:
                raise errors.path_not_found(path)
            return _json(found)
        version = prefix[0]
        if not rest:
            resource_list = registry.resource_list(group, version)
            if resource_list is None:
                raise errors.path_not_found(path)
            return _json(resource_list)
        target = self._resolve(group, version, rest, path)
        return await self._verb(request, target, path)

    def _resolve(self, group: str, version: str, rest: list[str], path: str) -> Target:
        registry = self.cluster.registry
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = registry.lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rtype = registry.lookup(group, version, rest[0])
        if rtype is None or len(rest) > 3:
            raise errors.path_not_found(path)
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if rtype.namespaced and namespace is None and name is not None:
            raise errors.path_not_found(path)
        if subresource is not None and not (
            (subresource == "status" and rtype.has_status)
            or (subresource == "scale" and rtype.storage_key in scale.SCALABLE)
        ):
            raise errors.path_not_found(path)
        return Target(rtype, namespace, name, subresource)

    @staticmethod
    def _write_options(request: web.Request, *, apply: bool) -> WriteOptions:
        """``fieldManager`` (default: the User-Agent up to its first ``/``, as kube-apiserver
        does; required for apply) and ``fieldValidation`` (default Warn), or 400."""
        manager = request.query.get("fieldManager")
        if manager is not None and len(manager) > 128:
            raise errors.bad_request("fieldManager: Too long: may not be longer than 128")
        if apply and not manager:
            raise errors.bad_request("fieldManager is required for apply requests")
        if not manager:
            manager = request.headers.get("User-Agent", "").split("/", 1)[0][:128]
        validation = request.query.get("fieldValidation", "Warn")
        if validation not in FIELD_VALIDATION:
            raise errors.bad_request(
                f"fieldValidation: Unsupported value: {validation!r}: supported values: "
                + ", ".join(f'"{v}"' for v in FIELD_VALIDATION)
            )
        return WriteOptions(manager=manager or None, field_validation=validation)

    def _cluster_for(self, request: web.Request, in_body: Any = None) -> Cluster:
        """The cluster a write acts on: a throwaway copy under ``dryRun=All`` (the query
        parameter, or ``DeleteOptions.dryRun``, where kubectl puts it for deletes)."""
        values = list(request.query.getall("dryRun", []))
        if in_body is not None:
            if not isinstance(in_body, list) or not all(isinstance(v, str) for v in in_body):
                raise errors.bad_request("DeleteOptions.dryRun must be a list of strings")
            values += in_body
        for value in values:
            if value != "All":
                raise errors.bad_request(
                    f'dryRun: Unsupported value: "{value}": supported values: "All"'
                )
        return self.cluster.dry_copy() if values and request.method != "GET" else self.cluster

    def _answer(self, cluster: Cluster, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A written object as served; after a dry run with the resourceVersion the stored
        object has (none for a dry create), as kube-apiserver answers: nothing was written."""
        if cluster is not self.cluster:
            meta = obj["metadata"]
            ns = meta.get("namespace", "") if rtype.namespaced else ""
            stored = self.cluster.store.get(rtype.storage_key, ns, meta.get("name", ""))
            if stored is None:
                meta.pop("resourceVersion", None)
            else:
                meta["resourceVersion"] = stored["metadata"]["resourceVersion"]
        return render(rtype, obj)

    @staticmethod
    async def _duplicates(
        request: web.Request, options: WriteOptions, *, json_only: bool = False
    ) -> None:
        """Field validation of fields the body sets twice: 400 (Strict), a warning (Warn)."""
        if request.content_type == PROTOBUF or options.field_validation == "Ignore":
            return
        as_yaml = "yaml" in request.content_type and not json_only
        found = duplicate_fields(await request.read(), as_yaml)
        if found and options.field_validation == "Strict":
            fields = ", ".join(f'duplicate field "{path}"' for path in found)
            raise errors.bad_request(f"strict decoding error: {fields}")
        options.warnings.extend(f'duplicate field "{path}"' for path in found)

    async def _verb(self, request: web.Request, target: Target, path: str) -> web.StreamResponse:
        cluster, method = self._cluster_for(request), request.method
        rtype, ns, name = target.rtype, target.namespace, target.name
        media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        is_apply = method == "PATCH" and media == APPLY_PATCH
        force = request.query.get("force", "").lower() in TRUE
        if "force" in request.query and not is_apply:
            raise errors.bad_request("force: Forbidden: may not be specified for non-apply patch")
        options = self._write_options(request, apply=is_apply)
        if target.subresource == "scale":
            return await self._scale(request, cluster, target, options)
        if name is None:
            if method == "GET":
                accept = make_filter(
                    request.query.get("labelSelector"), request.query.get("fieldSelector")
                )
                if request.query.get("watch", "").lower() in TRUE:
                    namespace = ns if rtype.namespaced else None
                    stream = WatchStream(
                        self.cluster.store, rtype, accept, self._presenter(request, rtype)
                    )
                    return await stream.serve(request, namespace, self.bookmark_interval)
                items, rv = cluster.list(rtype, ns, accept)
                if wants_table(request.headers.get("Accept")):
                    rendered = [render(rtype, item) for item in items]
                    return _json(self._table(request, rtype, rendered, rv))
                return _object(request, self._list_body(rtype, items, rv))
            if method == "POST" and (ns is not None or not rtype.namespaced):
                body = await self._body(request)
                await self._duplicates(request, options)
                created = await self._admitted(cluster, target, "CREATE", body, None, options)
                return _warned(
                    _object(request, self._answer(cluster, rtype, created), 201), options
                )
            if method == "DELETE" and (ns is not None or not rtype.namespaced):
                return await self._delete_collection(request, cluster, target)
            raise errors.method_not_allowed(method, path)
        if method == "GET":
            obj = render(rtype, cluster.get(rtype, ns, name))
            if wants_table(request.headers.get("Accept")):
                return _json(self._presenter(request, rtype)(obj))
            return _object(request, obj)
        if method == "PUT":
            body = await self._body(request)
            await self._duplicates(request, options)
            replaced = await self._admitted(cluster, target, "UPDATE", body, None, options)
            return _warned(_object(request, self._answer(cluster, rtype, replaced)), options)
        if method == "PATCH":
            if is_apply:
                body = await self._body(request)
                await self._duplicates(request, options)
                live_before = cluster.store.get(
                    rtype.storage_key, (ns or "") if rtype.namespaced else "", name
                )
                applied = await self._admitted(
                    cluster, target, "APPLY", body, None, options, force=force
                )
                status = 201 if live_before is None else 200
                return _warned(
                    _object(request, self._answer(cluster, rtype, applied), status), options
                )
            if media not in PATCH_TYPES:
                raise errors.unsupported_media_type(media)
            content_type = request.headers.get("Content-Type", "")
            body = await self._body(request, content_type="application/json")
            await self._duplicates(request, options, json_only=True)
            patched = await self._admitted(cluster, target, "UPDATE", body, content_type, options)
            return _warned(_object(request, self._answer(cluster, rtype, patched)), options)
        if method == "DELETE" and target.subresource is None:
            delete_options = await self._body(request, allow_empty=True) or {}
            if not isinstance(delete_options, Mapping):
                raise errors.bad_request("DeleteOptions must be an object")
            if delete_options.get("dryRun"):
                cluster = self._cluster_for(request, delete_options["dryRun"])
            deleted = cluster.delete(rtype, ns, name, delete_options)
            return _object(request, self._answer(cluster, rtype, deleted))
        raise errors.method_not_allowed(method, path)

    async def _scale(
        self, request: web.Request, cluster: Cluster, target: Target, options: WriteOptions
    ) -> web.StreamResponse:
        """GET/PUT/PATCH of ``<object>/scale``: a write becomes a merge patch of the object's
        ``spec.replicas`` (through the webhooks, as any update), answered as the new Scale."""
        rtype, ns, name = target.rtype, target.namespace, target.name
        assert name is not None
        current = scale.scale_of(cluster.get(rtype, ns, name))
        if request.method == "GET":
            return _json(current)
        if request.method == "PUT":
            body = await self._body(request)
        elif request.method == "PATCH":
            media = request.headers.get("Content-Type", "")
            if media.split(";", 1)[0].strip().lower() == APPLY_PATCH:
                raise errors.unsupported_media_type(APPLY_PATCH)
            patch_body = await self._body(request, content_type="application/json")
            body = apply_patch(current, media, patch_body)
        else:
            raise errors.method_not_allowed(request.method, request.path)
        wanted_rv = ((body.get("metadata") if isinstance(body, Mapping) else None) or {}).get(
            "resourceVersion"
        )
        if wanted_rv and wanted_rv != current["metadata"].get("resourceVersion"):
            raise errors.conflict(rtype.plural, rtype.group, name)
        patch = {"spec": {"replicas": scale.replicas_of(body)}}
        whole = Target(rtype, ns, name, None)
        updated = await self._admitted(
            cluster, whole, "UPDATE", patch, "application/merge-patch+json", options
        )
        return _json(scale.scale_of(updated))

    async def _admitted(
        self,
        cluster: Cluster,
        target: Target,
        operation: str,
        body: Any,
        content_type: str | None,
        options: WriteOptions,
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        """Create/replace/patch/apply after the validating webhooks that match have allowed it.

        ``operation`` is CREATE, UPDATE or APPLY (reviewed as CREATE or UPDATE, as the
        apply creates or not). The write is refused as stale (and retried, re-reviewed) if
        the object changed while the webhooks were deciding, so what is stored is always
        what was reviewed."""
        rtype = target.rtype
        ns = target.namespace if rtype.namespaced else None
        manager = options.manager or ""
        body_warnings = len(options.warnings)
        for _attempt in range(10):
            del options.warnings[body_warnings:]
            options.owners = None
            options.supplied = None
            expect_rv: str | None = None
            configs = cluster.store.objects(CONFIGS)
            if configs:
                old: dict[str, Any] | None = None
                review = operation
                if operation == "APPLY":
                    assert target.name is not None
                    live, obj = cluster.preview_apply(
                        rtype,
                        ns,
                        target.name,
                        body,
                        manager=manager,
                        force=force,
                        subresource=target.subresource,
                    )
                    review, name = (
                        ("CREATE", target.name) if live is None else ("UPDATE", target.name)
                    )
                    if live is not None:
                        expect_rv = live["metadata"]["resourceVersion"]
                        old = render(rtype, live)
                elif operation == "CREATE":
                    obj = cluster.preview_create(rtype, ns, body)
                    name = str(obj["metadata"].get("name") or "")
                else:
                    assert target.name is not None
                    old = cluster.get(rtype, ns, target.name)
                    expect_rv = old["metadata"]["resourceVersion"]
                    obj = cluster.preview_update(
                        rtype,
                        old,
                        body=body,
                        content_type=content_type,
                        subresource=target.subresource,
                    )
                    old, name = render(rtype, old), target.name
                attrs = Attributes(
                    review,
                    rtype,
                    ns or "",
                    name,
                    target.subresource,
                    obj,
                    old,
                    cluster.namespace_labels(ns or ""),
                    dry_run=cluster is not self.cluster,
                )
                webhooks = matching_webhooks(configs, attrs)
                if webhooks:
                    await self.admission.admit(webhooks, attrs)
                else:
                    expect_rv = None
            try:
                if operation == "CREATE":
                    return cluster.create(rtype, ns, body, options)
                assert target.name is not None
                if operation == "APPLY":
                    return cluster.apply(
                        rtype,
                        ns,
                        target.name,
                        body,
                        manager=manager,
                        force=force,
                        subresource=target.subresource,
                        expect_rv=expect_rv,
                        options=options,
                    )
                if content_type is None:
                    return cluster.replace(
                        rtype, ns, target.name, body, target.subresource, expect_rv, options
                    )
                return cluster.patch(
                    rtype,
                    ns,
                    target.name,
                    content_type,
                    body,
                    target.subresource,
                    expect_rv,
                    options,
                )
            except StaleError:
                continue
        raise errors.conflict(rtype.plural, rtype.group, target.name or "")

    def _table(
        self, request: web.Request, rtype: ResourceType, objects: list[dict[str, Any]], rv: str
    ) -> dict[str, Any]:
        crd = self.cluster.store.get(CRDS, "", rtype.crd_name) if rtype.crd_name else None
        include = request.query.get("includeObject", "Metadata")
        return table(rtype, objects, rv, crd_columns(crd, rtype.version), include)

    def _presenter(
        self, request: web.Request, rtype: ResourceType
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Objects as asked for: themselves, or a one-row Table for ``kubectl get``."""
        if not wants_table(request.headers.get("Accept")):
            return lambda obj: obj
        return lambda obj: self._table(
            request, rtype, [obj], str(obj["metadata"].get("resourceVersion", ""))
        )

    @staticmethod
    async def _body(
        request: web.Request, *, content_type: str | None = None, allow_empty: bool = False
    ) -> Any:
        if "cbor" in request.content_type or (
            "protobuf" in request.content_type
            and (content_type is not None or request.content_type != PROTOBUF)
        ):
            raise errors.unsupported_media_type(request.content_type)
        raw = await request.read()
        if request.content_type == PROTOBUF:
            if not raw and allow_empty:
                return None
            return decode_protobuf(raw)
        if not raw.strip():
            if allow_empty:
                return None
            raise errors.bad_request("the request body is empty")
        media = (content_type or request.content_type or "application/json").lower()
        try:
            if "yaml" in media and content_type is None:
                value = yaml.safe_load(raw)
            else:
                value = json.loads(raw)
            # Only plain JSON may be stored: no NaN/Infinity, and none of the dates, bytes,
            # sets or cycles YAML can make (they would fail every later read of the object).
            return json.loads(json.dumps(value, allow_nan=False))
        except Exception as exc:  # PyYAML constructors raise anything (AttributeError, ...)
            problem = " ".join(str(exc).split())
            raise errors.bad_request(f"the request body is not valid JSON/YAML: {problem}") from exc

    @staticmethod
    def _list_body(rtype: ResourceType, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
        return {
            "kind": rtype.list_kind_name,
            "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": rv},
            "items": [render(rtype, item) for item in items],
        }

    async def _delete_collection(
        self, request: web.Request, cluster: Cluster, target: Target
    ) -> web.Response:
        accept = make_filter(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        items, _rv = cluster.list(target.rtype, target.namespace, accept)
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                deleted.append(cluster.delete(target.rtype, meta.get("namespace"), meta["name"]))
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
        return _object(
            request,
            self._list_body(target.rtype, deleted, str(cluster.store.resource_version)),
        )
