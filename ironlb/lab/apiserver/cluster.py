"""Kubernetes object semantics over the store: what create/update/patch/delete mean.

This is where the local API server is faithful to kube-apiserver: uid,
creationTimestamp, generation (bumped only when something other than
metadata, and status for types with a status subresource, changes),
generateName, namespace scoping, the status subresource kept apart,
optimistic concurrency on resourceVersion, finalizers and deletionTimestamp,
background garbage collection through ownerReferences (unless the delete
asks to orphan), Service defaulting, custom objects pruned/defaulted/
validated against their CRD version's structural schema, Secrets'
``stringData`` folded into ``data`` (:mod:`~ironlb.lab.apiserver.secrets`), CRDs that
register their types on create and take them (and their objects) away on
delete, server-side apply and ``managedFields`` (the merge and ownership
rules are :mod:`~ironlb.lab.apiserver.apply`'s), field validation of custom
objects, and independent copies for dry runs. Updates that change nothing are not written (no new
resourceVersion, no watch event), as on a real cluster.

Simplified (documented): deleting a Namespace deletes its objects at once
(no Terminating phase); every object gets ``metadata.generation``; Events of
core/v1 and events.k8s.io/v1 are stored apart. No HTTP, no I/O.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ironlb.common.kubetime import format_time, now_utc
from ironlb.lab.apiserver import apply as ssa
from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.apps_defaults import APPS, apply_defaults
from ironlb.lab.apiserver.defaults import DefaultingError, ServiceAllocator
from ironlb.lab.apiserver.patching import apply_patch
from ironlb.lab.apiserver.registry import (
    CRDS,
    NAMESPACES,
    SECRETS,
    SERVICES,
    Registry,
    RegistryError,
    ResourceType,
    crd_status,
)
from ironlb.lab.apiserver.schema import Schema, apply_schema, version_schema
from ironlb.lab.apiserver.secrets import SecretError, fold_string_data
from ironlb.lab.apiserver.store import Obj, ObjectStore, StorageKey
from ironlb.lab.apiserver.validation import check_body, check_name

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Metadata the server owns: a client cannot set or change these through create/update.
_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


FIELD_VALIDATION = ("Strict", "Warn", "Ignore")


@dataclass
class WriteOptions:
    """How one write is recorded and checked.

    ``manager`` is the field manager of the write (None: ``managedFields`` are kept as
    they were, for the lab's own writes); ``field_validation`` is the request's
    ``fieldValidation`` (Kubernetes: Strict fails on unknown fields, Warn reports them
    in ``warnings``, Ignore prunes them silently); ``owners`` is set by an apply."""

    manager: str | None = None
    field_validation: str = "Ignore"
    warnings: list[str] = field(default_factory=list)
    owners: list[ssa.Owner] | None = None
    supplied: list[Any] | None = None  # managedFields the written object carries


def _supplied_managed_fields(body: Any) -> list[Any] | None:
    """``metadata.managedFields`` a PUT body or patched object sets (None: not set).

    As on kube-apiserver, a client may replace the entries (kubectl does, moving
    ``kubectl-client-side-apply`` fields to ``kubectl`` after its first server-side
    apply) or clear them with an empty list; entries that are not well-formed
    managedFields entries are dropped."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    entries = meta.get("managedFields") if isinstance(meta, dict) else None
    return entries if isinstance(entries, list) else None


class StaleError(Exception):
    """The object changed between an admission review and the write it reviewed."""


def now_timestamp() -> str:
    return format_time(now_utc())


def render(rtype: ResourceType, obj: Mapping[str, Any]) -> Obj:
    """The object as served for ``rtype``'s version: apiVersion and kind first."""
    out: Obj = {"apiVersion": rtype.api_version, "kind": rtype.kind}
    out.update((k, v) for k, v in obj.items() if k not in ("apiVersion", "kind"))
    return out


def _spec_part(rtype: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
    """What generation tracks: everything but metadata (and status when it is a subresource)."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.has_status else set())
    return {k: v for k, v in obj.items() if k not in skip}


#: Field owners of one object (server-side apply).
_Owners = list[ssa.Owner]


class Cluster:
    """All API objects and their lifecycle; raises :class:`errors.ApiError`."""

    def __init__(self, store: ObjectStore | None = None, registry: Registry | None = None) -> None:
        self.store = store or ObjectStore()
        self.registry = registry or Registry()
        self.services = ServiceAllocator()
        self._random = random.Random()
        ns_type = self.registry.lookup("", "v1", "namespaces")
        assert ns_type is not None
        for name in INITIAL_NAMESPACES:
            self.create(ns_type, None, {"metadata": {"name": name}})

    # --- helpers -----------------------------------------------------------------

    def _namespace_of(self, rtype: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rtype.namespaced else ""

    def _existing(
        self, rtype: ResourceType, namespace: str | None, name: str, expect_rv: str | None = None
    ) -> Obj:
        obj = self.store.get(rtype.storage_key, self._namespace_of(rtype, namespace), name)
        if obj is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        if expect_rv is not None and obj["metadata"]["resourceVersion"] != expect_rv:
            raise StaleError(name)
        return obj

    def _generate_name(self, rtype: ResourceType, namespace: str, prefix: str) -> str:
        for _ in range(100):
            suffix = "".join(self._random.choice(_GENERATE_ALPHABET) for _ in range(5))
            name = prefix[:58] + suffix
            if self.store.get(rtype.storage_key, namespace, name) is None:
                return name
        raise errors.ApiError(  # pragma: no cover - 27**5 names per prefix
            409, "AlreadyExists", f"could not generate a unique name from {prefix!r}"
        )

    def _apply_kind_rules(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Per-kind defaulting and side effects that must succeed before the write."""
        name = obj["metadata"].get("name", "")
        if rtype.storage_key == SERVICES:
            try:
                self.services.apply(obj, old)
            except DefaultingError as exc:
                raise errors.invalid(rtype.kind, rtype.group, name, exc.field, exc.problem) from exc
        elif rtype.storage_key == CRDS:
            try:
                self.registry.register_crd(obj)
            except RegistryError as exc:
                raise errors.invalid(rtype.kind, rtype.group, name, exc.field, exc.problem) from exc
            obj["status"] = crd_status(obj, now_timestamp())
        elif rtype.group == APPS:
            apply_defaults(rtype.kind, obj)

    @staticmethod
    def _convert(rtype: ResourceType, obj: Obj) -> None:
        """What kube-apiserver's conversion to the internal form does to a written object
        (after managedFields are computed on the object as sent, as there): Secrets'
        ``stringData`` folded into ``data``."""
        if rtype.storage_key == SECRETS:
            try:
                fold_string_data(obj)
            except SecretError as exc:
                name = obj["metadata"].get("name", "")
                raise errors.invalid(rtype.kind, rtype.group, name, exc.field, exc.problem) from exc

    def type_schema(self, rtype: ResourceType) -> Schema | None:
        """The ``openAPIV3Schema`` of a custom resource type's CRD version (None
        for built-in kinds and CRDs without one)."""
        if rtype.crd_name is None:
            return None
        crd = self.store.get(CRDS, "", rtype.crd_name)
        return version_schema(crd, rtype.version) if crd else None

    def list_types(self, rtype: ResourceType) -> ssa.ListTypes:
        """Which lists of ``rtype`` objects are associative (server-side apply)."""
        if rtype.crd_name is None:
            return ssa.builtin_list_type
        return ssa.schema_list_type(self.type_schema(rtype))

    def _apply_schema(self, rtype: ResourceType, obj: Obj, options: WriteOptions) -> Obj:
        """Prune, default and validate a custom object against its CRD version's schema;
        unknown fields are refused (400) or reported as ``options`` asks."""
        schema = self.type_schema(rtype)
        if schema is None:
            return obj
        unknown: list[str] = []
        result, problems = apply_schema(obj, schema, unknown)
        if unknown and options.field_validation == "Strict":
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise errors.bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                f"{rtype.kind}: strict decoding error: {fields}"
            )
        if options.field_validation == "Warn":
            options.warnings.extend(f'unknown field "{path}"' for path in unknown)
        if problems:
            name = obj["metadata"].get("name", "")
            text = "; ".join(f"{path}: {message}" for path, message in problems)
            raise errors.ApiError(
                422,
                "Invalid",
                f'{rtype.kind}.{rtype.group} "{name}" is invalid: {text}',
                name=name,
                group=rtype.group,
                kind=rtype.kind,
                causes=[
                    {"reason": "FieldValueInvalid", "message": message, "field": path}
                    for path, message in problems
                ],
            )
        return result

    def _initial_status(self, rtype: ResourceType, obj: Obj) -> None:
        """Status on create: kept for Nodes, reset for other status-subresource types."""
        if not rtype.has_status or rtype.kind == "Node":
            return
        if rtype.storage_key == NAMESPACES:
            obj["status"] = {"phase": "Active"}
        elif rtype.storage_key == SERVICES:
            obj["status"] = {"loadBalancer": {}}
        elif rtype.group == "" and rtype.plural == "pods":
            obj["status"] = {"phase": "Pending"}
        else:
            obj.pop("status", None)

    # --- verbs --------------------------------------------------------------------

    def _owners(
        self,
        rtype: ResourceType,
        old: Obj | None,
        new: Obj,
        subresource: str | None,
        options: WriteOptions,
    ) -> None:
        """Set ``new``'s ``managedFields``: an apply's owners, or ``old``'s plus this write's
        manager (Update operation) owning what it added or changed."""
        old_entries = ((old or {}).get("metadata") or {}).get("managedFields")
        if options.supplied is not None:
            old_entries = options.supplied
        if not old_entries and options.owners is None and not options.manager:
            new["metadata"].pop("managedFields", None)
            return  # nobody owns anything and this write names no manager
        list_types = self.list_types(rtype)
        if options.owners is not None:
            owners = ssa.prune_owners(options.owners, new, list_types)
        elif options.manager:
            owners = ssa.record_update(
                old,
                new,
                ssa.owners_from_json(old_entries),
                options.manager,
                list_types=list_types,
                api_version=rtype.api_version,
                now=now_timestamp(),
                subresource=subresource or "",
            )
        else:
            owners = ssa.prune_owners(ssa.owners_from_json(old_entries), new, list_types)
        if owners:
            new["metadata"]["managedFields"] = [o.to_json() for o in owners]
        else:
            new["metadata"].pop("managedFields", None)

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        options: WriteOptions | None = None,
    ) -> Obj:
        options = options or WriteOptions()
        obj = check_body(rtype, body)
        meta = obj["metadata"]
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if namespace is None:
                namespace = body_ns
            if not namespace:
                raise errors.bad_request("the namespace of the object must be set")
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            if self.store.get(NAMESPACES, "", namespace) is None:
                raise errors.namespace_not_found(namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        ns = self._namespace_of(rtype, namespace)
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix or not isinstance(prefix, str):
                raise errors.invalid(
                    rtype.kind,
                    rtype.group,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )
            name = self._generate_name(rtype, ns, prefix)
            meta["name"] = name
        if not isinstance(name, str):
            raise errors.invalid(rtype.kind, rtype.group, "", "metadata.name", "must be a string")
        check_name(rtype, name)
        if self.store.get(rtype.storage_key, ns, name) is not None:
            raise errors.already_exists(rtype.plural, rtype.group, name)
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        for key in (*_SERVER_METADATA, "resourceVersion", "generation"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_timestamp()
        meta["generation"] = 1
        self._initial_status(rtype, obj)
        obj = self._apply_schema(rtype, obj, options)
        self._apply_kind_rules(rtype, obj, None)
        self._owners(rtype, None, obj, None, options)
        self._convert(rtype, obj)
        return self.store.put(rtype.storage_key, ns, name, obj)

    # --- what admission webhooks see (no side effects) -------------------------------

    def preview_create(self, rtype: ResourceType, namespace: str | None, body: Any) -> Obj:
        obj = check_body(rtype, body)
        if rtype.namespaced and namespace:
            obj["metadata"]["namespace"] = namespace
        return render(rtype, obj)

    def preview_update(
        self,
        rtype: ResourceType,
        old: Obj,
        *,
        body: Any = None,
        content_type: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        """The object an update would submit (before server-side rules), rendered."""
        if content_type is not None:
            new = apply_patch(old, content_type, body)
        else:
            new = check_body(rtype, body)
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status")
            new = merged
        return render(rtype, new)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.store.get(NAMESPACES, "", namespace) if namespace else None
        return dict(((ns or {}).get("metadata") or {}).get("labels") or {})

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        return self._existing(rtype, namespace, name)

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None,
        accept: Callable[[Mapping[str, Any]], bool] = lambda _obj: True,
    ) -> tuple[list[Obj], str]:
        """Matching objects (namespace None = all) and the list's resourceVersion."""
        ns = namespace if rtype.namespaced else None
        items = [o for o in self.store.objects(rtype.storage_key, ns) if accept(o)]
        return items, str(self.store.resource_version)

    def replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        expect_rv: str | None = None,
        options: WriteOptions | None = None,
    ) -> Obj:
        old = self._existing(rtype, namespace, name, expect_rv)
        options = options or WriteOptions()
        options.supplied = _supplied_managed_fields(body)
        new = check_body(rtype, body)
        body_name = new["metadata"].get("name")
        if body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        return self._update(rtype, old, new, subresource, options)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None = None,
        expect_rv: str | None = None,
        options: WriteOptions | None = None,
    ) -> Obj:
        old = self._existing(rtype, namespace, name, expect_rv)
        new = apply_patch(old, content_type, patch)
        if not isinstance(new.get("metadata"), dict):
            raise errors.unprocessable("the patch removed metadata")
        options = options or WriteOptions()
        supplied = _supplied_managed_fields(new)
        if supplied != old["metadata"].get("managedFields"):
            options.supplied = supplied if supplied is not None else []
        new = check_body(rtype, new)  # a patch must not store what a PUT may not
        if new["metadata"].get("name") != name:
            raise errors.bad_request("the patch cannot change metadata.name")
        return self._update(rtype, old, new, subresource, options)

    def _applied(self, rtype: ResourceType, name: str, body: Any, subresource: str | None) -> Obj:
        """An apply body checked and cut to what the target takes (400 if malformed)."""
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request(
                "an apply configuration must set apiVersion and kind "
                f"({rtype.api_version}, {rtype.kind})"
            )
        applied = check_body(rtype, body)
        meta = applied["metadata"]
        if meta.setdefault("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if subresource == "status":
            return {"metadata": meta, "status": applied.get("status") or {}}
        if rtype.has_status:
            applied.pop("status", None)  # status is the status subresource's
        return applied

    def preview_apply(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        manager: str,
        force: bool,
        subresource: str | None = None,
    ) -> tuple[Obj | None, Obj]:
        """What an apply would submit (before server-side rules), rendered, with the live
        object it merges into (None: the apply creates)."""
        applied = self._applied(rtype, name, body, subresource)
        live = self.store.get(rtype.storage_key, self._namespace_of(rtype, namespace), name)
        merged, _owners = self._merge(rtype, live, applied, manager, force, subresource)
        if rtype.namespaced and namespace:
            merged.setdefault("metadata", {})["namespace"] = namespace
        return live, render(rtype, merged)

    def _merge(
        self,
        rtype: ResourceType,
        live: Obj | None,
        applied: Obj,
        manager: str,
        force: bool,
        subresource: str | None,
    ) -> tuple[Obj, _Owners]:
        """:func:`~ironlb.lab.apiserver.apply.apply` of ``applied`` onto ``live`` with the
        owners recorded in its managedFields and this type's list semantics."""
        owners = ssa.owners_from_json(((live or {}).get("metadata") or {}).get("managedFields"))
        return ssa.apply(
            live,
            applied,
            owners,
            manager,
            force=force,
            list_types=self.list_types(rtype),
            api_version=rtype.api_version,
            now=now_timestamp(),
            subresource=subresource or "",
        )

    def apply(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        manager: str,
        force: bool,
        subresource: str | None = None,
        expect_rv: str | None = None,
        options: WriteOptions | None = None,
    ) -> Obj:
        """Server-side apply of ``body`` by ``manager`` (create if absent): see
        :mod:`~ironlb.lab.apiserver.apply`. 409 Conflict naming the fields other managers
        own (``details.causes`` of type FieldManagerConflict) unless ``force``."""
        options = options or WriteOptions()
        applied = self._applied(rtype, name, body, subresource)
        ns = self._namespace_of(rtype, namespace)
        live = self.store.get(rtype.storage_key, ns, name)
        if live is not None and expect_rv is not None:
            live = self._existing(rtype, namespace, name, expect_rv)
        if live is None and (subresource is not None or expect_rv is not None):
            if expect_rv is not None:
                raise StaleError(name)
            raise errors.not_found(rtype.plural, rtype.group, name)
        try:
            merged, options.owners = self._merge(rtype, live, applied, manager, force, subresource)
        except ssa.ConflictError as exc:
            raise errors.ApiError(
                409,
                "Conflict",
                exc.message,
                name=name,
                group=rtype.group,
                kind=rtype.plural,
                causes=exc.causes(),
            ) from exc
        if live is None:
            return self.create(rtype, namespace, merged, options)
        merged.setdefault("metadata", {})["name"] = name
        return self._update(rtype, live, check_body(rtype, merged), subresource, options)

    def dry_copy(self) -> Cluster:
        """An independent copy to run a ``dryRun=All`` request against: same objects, types
        and allocations; no history, no watches; nothing done to it reaches this cluster."""
        twin = Cluster.__new__(Cluster)
        twin.store = self.store.snapshot()
        twin.registry = copy.deepcopy(self.registry)
        twin.services = copy.deepcopy(self.services)
        twin._random = random.Random()
        return twin

    def _update(
        self,
        rtype: ResourceType,
        old: Obj,
        new: Obj,
        subresource: str | None,
        options: WriteOptions | None = None,
    ) -> Obj:
        options = options or WriteOptions()
        meta, old_meta = new["metadata"], old["metadata"]
        name = old_meta["name"]
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != old_meta["resourceVersion"]:
            raise errors.conflict(rtype.plural, rtype.group, name)
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            for key in ("apiVersion", "kind"):
                result.pop(key, None)
            for key in (*_SERVER_METADATA, "namespace", "generation"):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if rtype.has_status:
                if "status" in old:
                    result["status"] = old["status"]
                else:
                    result.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
                if added:
                    raise errors.invalid(
                        rtype.kind,
                        rtype.group,
                        name,
                        "metadata.finalizers",
                        "Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}",
                    )
            self._apply_kind_rules(rtype, result, old)
            if rtype.storage_key == CRDS and "status" in old:
                result["status"] = old["status"]
        result = self._apply_schema(rtype, result, options)
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        self._owners(rtype, old, result, subresource, options)
        self._convert(rtype, result)
        if _spec_part(rtype, result) != _spec_part(rtype, old):
            result["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if result == {k: v for k, v in old.items() if k not in ("apiVersion", "kind")}:
            return old  # nothing changed: no write, no event, same resourceVersion
        ns = old_meta.get("namespace", "")
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            # As kube-apiserver does: the emptying update is not written; the object is deleted
            # (one DELETED event, no MODIFIED before it).
            return self._remove(rtype, ns, name)
        return self.store.put(rtype.storage_key, ns, name, result)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
    ) -> Obj:
        """Delete now, or mark for deletion while finalizers remain; returns the object."""
        old = self._existing(rtype, namespace, name)
        meta = old["metadata"]
        preconditions = (options or {}).get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise errors.conflict(rtype.plural, rtype.group, name)
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise errors.conflict(rtype.plural, rtype.group, name)
        ns = meta.get("namespace", "")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            meta["deletionTimestamp"] = now_timestamp()
            meta["deletionGracePeriodSeconds"] = 0
            return self.store.put(rtype.storage_key, ns, name, old)
        orphan = (options or {}).get("propagationPolicy") == "Orphan" or (options or {}).get(
            "orphanDependents"
        ) is True
        return self._remove(rtype, ns, name, collect=not orphan)

    def _remove(
        self, rtype: ResourceType, namespace: str, name: str, *, collect: bool = True
    ) -> Obj:
        final = self.store.remove(rtype.storage_key, namespace, name)
        assert final is not None
        self._after_removal(rtype.storage_key, name, final, collect)
        return final

    def _drop(self, key: StorageKey, namespace: str, name: str) -> None:
        final = self.store.remove(key, namespace, name)
        if final is not None:
            self._after_removal(key, name, final, collect=True)

    def _after_removal(self, key: StorageKey, name: str, final: Obj, collect: bool) -> None:
        """Release what the object held and delete what depended on it."""
        if key == SERVICES:
            self.services.release(final)
        elif key == NAMESPACES:
            for other in {t.storage_key for t in self.registry.types() if t.namespaced}:
                for ns, obj_name in self.store.names(other):
                    if ns == name:
                        self._drop(other, ns, obj_name)
        elif key == CRDS:
            for other in {t.storage_key for t in self.registry.unregister_crd(name)}:
                for ns, obj_name in self.store.names(other):
                    self._drop(other, ns, obj_name)
        if collect:
            self._collect_dependents(str(final["metadata"].get("uid", "")))

    def _collect_dependents(self, owner_uid: str) -> None:
        """Background garbage collection: delete objects whose ownerReferences name only
        owners that no longer exist (dependents with finalizers get a deletionTimestamp)."""
        for key, obj in self.store.dependents(owner_uid):
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if any(self.store.has_uid(str(r.get("uid"))) for r in refs):
                continue  # another owner is still there
            ns = meta.get("namespace", "")
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now_timestamp()
                    meta["deletionGracePeriodSeconds"] = 0
                    self.store.put(key, ns, meta["name"], obj)
            else:
                self._drop(key, ns, meta["name"])
