"""Server-side apply: structured merge and field ownership (``metadata.managedFields``).

Follows the Kubernetes "Server-Side Apply" documentation and the model of
structured-merge-diff (learned from, not copied):

- An object's *field set* is the set of paths to its leaves: scalars, atomic
  lists, empty maps, each element of a ``set`` list and each item of a
  ``map`` (associative) list, plus the fields inside those items. A path is a
  tuple of fieldsV1 elements: ``f:<name>`` for a map field,
  ``k:{"port":80,"protocol":"TCP"}`` for an associative-list item (keys in
  name order, compact JSON) and ``v:<json>`` for a set element.
- Each manager owns a field set per operation (``Apply`` or ``Update``),
  stored as ``managedFields`` entries with the set encoded as ``fieldsV1``
  (nested maps; ``"."`` marks a member that also has members below it).
- :func:`apply` merges an applied configuration into the live object, raises
  :class:`ConflictError` when it would change a leaf another manager owns
  (unless forced, which moves ownership), removes leaves the applier owned
  before but no longer sends and nobody else owns, and makes the applier's
  set exactly what it sent.
- :func:`record_update` gives the writer of a non-apply write (PUT, POST,
  merge/JSON/strategic patch) the leaves it added or changed, takes them from
  everyone else, and drops owned paths that no longer exist.

Which lists are associative is the caller's :data:`ListTypes` function, so
the same code serves built-in kinds (a fixed table, :func:`builtin_list_type`)
and custom resources (``x-kubernetes-list-type`` in the CRD schema,
:func:`schema_list_type`). A list whose items lack their keys is treated as
atomic rather than refused. Pure: no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]
FieldSet = frozenset[Path]
# (names of the map fields leading to a list, its items) -> key names, "set" or None (atomic)
ListTypes = Callable[[tuple[str, ...], list[Any]], "tuple[str, ...] | str | None"]

APPLY, UPDATE = "Apply", "Update"
# Paths no manager owns: identity and server-set metadata (as on kube-apiserver).
_UNOWNED_TOP = ("apiVersion", "kind")
_UNOWNED_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
# Key fields with a server default (Service and container ports): what an item without
# the field is keyed by, so `{port: 80}` and `{port: 80, protocol: TCP}` are one item.
_KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}

# Built-in associative lists by field name (Kubernetes API types' listType/listMapKeys).
_BUILTIN_MAPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "containers": (("name",),),
    "initContainers": (("name",),),
    "ephemeralContainers": (("name",),),
    "env": (("name",),),
    "volumes": (("name",),),
    "volumeMounts": (("mountPath",),),
    "imagePullSecrets": (("name",),),
    "ports": (("containerPort", "protocol"), ("port", "protocol")),
    "conditions": (("type",),),
    "ownerReferences": (("uid",),),
    "hostAliases": (("ip",),),
}
_BUILTIN_SETS = ("finalizers",)


def _keyed(item: Any, keys: tuple[str, ...]) -> bool:
    return isinstance(item, dict) and all(k in item or k in _KEY_DEFAULTS for k in keys)


def builtin_list_type(fields: tuple[str, ...], items: list[Any]) -> tuple[str, ...] | str | None:
    """The list type of a built-in kind's list at ``fields`` (``ports``: by containerPort
    or port, plus protocol; ``containers``/``env``/``volumes`` by name; ...), else atomic."""
    name = fields[-1] if fields else ""
    if name in _BUILTIN_SETS and all(not isinstance(i, (dict, list)) for i in items):
        return "set"
    for keys in _BUILTIN_MAPS.get(name, ()):
        # the first key alone decides (containerPort vs port); the rest may be defaulted
        if items and all(isinstance(i, dict) and keys[0] in i for i in items):
            return keys if all(_keyed(i, keys) for i in items) else None
    return None


def schema_list_type(schema: Mapping[str, Any] | None) -> ListTypes:
    """List types from a CRD version's ``openAPIV3Schema``: ``x-kubernetes-list-type``
    ``map`` (keys ``x-kubernetes-list-map-keys``) or ``set``; ``metadata`` lists as for
    built-in kinds; everything else atomic (the Kubernetes default for CRD lists)."""

    def list_type(fields: tuple[str, ...], items: list[Any]) -> tuple[str, ...] | str | None:
        if fields[:1] == ("metadata",):
            return builtin_list_type(fields, items)
        node: Mapping[str, Any] | None = schema
        for name in fields:
            node = _schema_child(node, name)
        if not isinstance(node, Mapping):
            return None
        kind = node.get("x-kubernetes-list-type")
        if kind == "set":
            return "set"
        if kind == "map":
            keys = tuple(node.get("x-kubernetes-list-map-keys") or ())
            if keys and all(_keyed(i, keys) for i in items):
                return keys
        return None

    return list_type


def _schema_child(node: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The schema of field ``name`` below ``node``, looking through array ``items``."""
    while node is not None:
        child = (node.get("properties") or {}).get(name)
        if isinstance(child, Mapping):
            return child
        items = node.get("items")
        node = items if isinstance(items, Mapping) else None
    return None


def _key_of(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    values = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in sorted(keys)}
    return "k:" + json.dumps(values, separators=(",", ":"), sort_keys=True)


def _value_key(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"), sort_keys=True)


def _mergeable(
    fields: tuple[str, ...], items: list[Any], list_types: ListTypes
) -> tuple[str, ...] | str | None:
    kind = list_types(fields, items)
    if isinstance(kind, tuple):
        seen = [_key_of(i, kind) for i in items]
        if len(set(seen)) != len(seen):
            return None  # duplicate keys: keep the list whole
    return kind


def field_set(obj: Mapping[str, Any], list_types: ListTypes) -> FieldSet:
    """Every owned-able path of ``obj`` (see the module docstring)."""
    found: set[Path] = set()
    top = {k: v for k, v in obj.items() if k not in _UNOWNED_TOP}
    meta = top.get("metadata")
    if isinstance(meta, dict):
        top["metadata"] = {k: v for k, v in meta.items() if k not in _UNOWNED_META}
        if not top["metadata"]:
            del top["metadata"]
    _walk(top, (), (), list_types, found, root=True)
    return frozenset(found)


def _walk(
    value: Any,
    path: Path,
    fields: tuple[str, ...],
    list_types: ListTypes,
    found: set[Path],
    root: bool = False,
) -> None:
    if isinstance(value, dict) and (value or root):
        for key, item in value.items():
            _walk(item, (*path, f"f:{key}"), (*fields, key), list_types, found)
        return
    if isinstance(value, list) and value:
        kind = _mergeable(fields, value, list_types)
        if kind == "set":
            found.update((*path, _value_key(i)) for i in value)
            return
        if isinstance(kind, tuple):
            for item in value:
                item_path = (*path, _key_of(item, kind))
                found.add(item_path)
                _walk(item, item_path, fields, list_types, found, root=True)
            return
    found.add(path)


_MISSING = object()


def value_at(obj: Any, path: Path, list_types: ListTypes) -> Any:
    """The value at ``path`` in ``obj`` (a sentinel object when absent)."""
    node: Any = obj
    fields: tuple[str, ...] = ()
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f" and isinstance(node, dict) and rest in node:
            node, fields = node[rest], (*fields, rest)
        elif kind in ("k", "v") and isinstance(node, list):
            list_kind = _mergeable(fields, node, list_types)
            if kind == "v" and list_kind == "set":
                match = [i for i in node if _value_key(i) == element]
            elif kind == "k" and isinstance(list_kind, tuple):
                match = [i for i in node if _key_of(i, list_kind) == element]
            else:
                match = []
            if not match:
                return _MISSING
            node = match[0]
        else:
            return _MISSING
    return node


def merge(live: Any, applied: Any, list_types: ListTypes, fields: tuple[str, ...] = ()) -> Any:
    """``applied`` merged into ``live``: maps field by field, associative lists item by
    item (applied order, then items only ``live`` has), sets as unions, all else replaced.
    Inputs are not changed (each is copied once)."""
    return _merge(copy.deepcopy(live), copy.deepcopy(applied), list_types, fields)


def _merge(live: Any, applied: Any, list_types: ListTypes, fields: tuple[str, ...]) -> Any:
    """:func:`merge` on values the caller gives away (they are reused, not copied)."""
    if isinstance(applied, dict) and isinstance(live, dict):
        for key, value in applied.items():
            live[key] = _merge(live.get(key), value, list_types, (*fields, key))
        return live
    if isinstance(applied, list) and isinstance(live, list):
        kind = _mergeable(fields, live + applied, list_types)
        if kind == "set":
            return live + [i for i in applied if i not in live]
        if isinstance(kind, tuple) and all(
            not side or _mergeable(fields, side, list_types) == kind for side in (live, applied)
        ):
            by_key = {_key_of(i, kind): i for i in live}
            out = [_merge(by_key.get(_key_of(i, kind)), i, list_types, fields) for i in applied]
            sent = {_key_of(i, kind) for i in applied}
            return out + [i for i in live if _key_of(i, kind) not in sent]
    return applied


def remove_fields(
    obj: dict[str, Any], paths: Iterable[Path], keep: FieldSet, list_types: ListTypes
) -> dict[str, Any]:
    """A copy of ``obj`` without ``paths``; a path with a kept path below it stays (another
    manager owns part of it). Maps emptied by a removal go too."""
    result = copy.deepcopy(obj)
    for path in sorted(paths, key=len, reverse=True):
        if any(k[: len(path)] == path and k != path for k in keep):
            continue
        if len(path) > 1 and path[-2].startswith("k:") and path[-1][2:] in json.loads(path[-2][2:]):
            continue  # an item's key goes with the item, never alone
        _remove(result, path, (), list_types)
    return result


def _remove(node: Any, path: Path, fields: tuple[str, ...], list_types: ListTypes) -> bool:
    """Remove ``path`` below ``node``; True when ``node`` itself became empty by it."""
    if not path:
        return False
    kind, _, rest = path[0].partition(":")
    if kind == "f" and isinstance(node, dict) and rest in node:
        if len(path) == 1 or _remove(node[rest], path[1:], (*fields, rest), list_types):
            del node[rest]
        return not node
    if kind in ("k", "v") and isinstance(node, list):
        list_kind = _mergeable(fields, node, list_types)
        for index, item in enumerate(node):
            ident = _value_key(item) if list_kind == "set" else None
            if isinstance(list_kind, tuple):
                ident = _key_of(item, list_kind)
            if ident == path[0]:
                if len(path) == 1 or _remove(item, path[1:], fields, list_types):
                    del node[index]
                break
        return not node
    return False


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set as ``fieldsV1``: nested maps, ``{}`` for a leaf member, ``"."`` for a
    member that has members below it (as kube-apiserver writes them)."""
    tree: dict[str, Any] = {}
    members = set(paths)
    for path in sorted(members):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in members:
        node = tree
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return tree


def decode_fields(tree: Mapping[str, Any], prefix: Path = ()) -> FieldSet:
    """The field set a ``fieldsV1`` map encodes (inverse of :func:`encode_fields`)."""
    found: set[Path] = set()
    for element, child in tree.items():
        if element == ".":
            found.add(prefix)
            continue
        path = (*prefix, element)
        if isinstance(child, Mapping) and child:
            found |= decode_fields(child, path)
        else:
            found.add(path)
    return frozenset(found)


def path_string(path: Path) -> str:
    """A path as Kubernetes prints it in conflicts: ``.spec.ports[port=80,protocol="TCP"]``."""
    out = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out.append(f".{rest}")
        elif kind == "k":
            keys = json.loads(rest)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]")
        else:
            out.append(f"[={rest}]")
    return "".join(out)


@dataclass(frozen=True)
class Owner:
    """One ``managedFields`` entry: who, how, and which fields."""

    manager: str
    operation: str  # APPLY | UPDATE
    api_version: str
    time: str
    fields: FieldSet
    subresource: str = ""

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def owners_from_json(entries: Any) -> list[Owner]:
    """``metadata.managedFields`` as :class:`Owner` values (malformed entries are skipped)."""
    owners = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("fieldsV1"), Mapping):
            continue
        owners.append(
            Owner(
                str(entry.get("manager", "")),
                str(entry.get("operation", UPDATE)),
                str(entry.get("apiVersion", "")),
                str(entry.get("time", "")),
                decode_fields(entry["fieldsV1"]),
                str(entry.get("subresource", "")),
            )
        )
    return owners


class ConflictError(Exception):
    """An apply would change fields other managers own; ``conflicts`` is
    ``[(owner, path)]`` in path order."""

    def __init__(self, conflicts: list[tuple[Owner, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(self.message)

    @staticmethod
    def _who(owner: Owner) -> str:
        if owner.operation == APPLY:
            return f'"{owner.manager}"'
        return f'"{owner.manager}" using {owner.api_version}'

    @property
    def message(self) -> str:
        """kube-apiserver's wording: ``Apply failed with 1 conflict: conflict with "m": .f``."""
        count = len(self.conflicts)
        if count == 1:
            owner, path = self.conflicts[0]
            return (
                f"Apply failed with 1 conflict: conflict with {self._who(owner)}: "
                f"{path_string(path)}"
            )
        by_owner: dict[Owner, list[Path]] = {}
        for owner, path in self.conflicts:
            by_owner.setdefault(owner, []).append(path)
        parts = [
            f"conflicts with {self._who(owner)}:\n"
            + "\n".join(f"- {path_string(p)}" for p in paths)
            for owner, paths in by_owner.items()
        ]
        return f"Apply failed with {count} conflicts: " + "\n".join(parts)

    def causes(self) -> list[dict[str, str]]:
        """``details.causes`` entries: one ``FieldManagerConflict`` per path."""
        return [
            {
                "type": "FieldManagerConflict",
                "message": f"conflict with {self._who(owner)}: {path_string(path)}",
                "field": path_string(path),
            }
            for owner, path in self.conflicts
        ]


def _with_fields(owner: Owner, fields: FieldSet, now: str, api_version: str) -> Owner:
    if fields == owner.fields:
        return owner
    return Owner(owner.manager, owner.operation, api_version, now, fields, owner.subresource)


def _finish(owners: list[Owner], existing: FieldSet) -> list[Owner]:
    """Owners restricted to paths that exist, empty ones dropped."""
    out = []
    for owner in owners:
        fields = owner.fields & existing
        if fields:
            out.append(
                owner
                if fields == owner.fields
                else Owner(
                    owner.manager,
                    owner.operation,
                    owner.api_version,
                    owner.time,
                    fields,
                    owner.subresource,
                )
            )
    return out


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    owners: list[Owner],
    manager: str,
    *,
    force: bool,
    list_types: ListTypes,
    api_version: str,
    now: str,
    subresource: str = "",
) -> tuple[dict[str, Any], list[Owner]]:
    """Apply ``applied`` as ``manager``: the merged object and the new owners
    (the caller prunes the result with :func:`prune_owners` once the server has
    defaulted it). Raises :class:`ConflictError` unless ``force``."""
    base = live if live is not None else {}
    sent = field_set(applied, list_types)
    me = (manager, APPLY, subresource)
    mine = next((o for o in owners if o.ident == me), None)
    others = [o for o in owners if o.ident != me]
    conflicts: list[tuple[Owner, Path]] = []
    for owner in others:
        for path in sorted(owner.fields & sent):
            if path[-1].startswith(("k:", "v:")):
                continue  # owning the same item or element is not a conflict
            current = value_at(base, path, list_types)
            if current is not _MISSING and current != value_at(applied, path, list_types):
                conflicts.append((owner, path))
    if conflicts and not force:
        raise ConflictError(conflicts)
    taken = frozenset(path for _owner, path in conflicts)
    others = [_with_fields(o, o.fields - taken, now, o.api_version) for o in others]
    merged = merge(base, applied, list_types)
    if not isinstance(merged, dict):  # pragma: no cover - both sides are objects
        raise TypeError("an applied configuration must be an object")
    kept = frozenset().union(*(o.fields for o in others)) if others else frozenset()
    dropped = (mine.fields if mine else frozenset()) - sent - kept
    merged = remove_fields(merged, dropped, kept | sent, list_types)
    if mine is None:
        return merged, [*others, Owner(manager, APPLY, api_version, now, sent, subresource)]
    mine = _with_fields(mine, sent, now, api_version)
    return merged, [mine if o.ident == me else others.pop(0) for o in owners]


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    owners: list[Owner],
    manager: str,
    *,
    list_types: ListTypes,
    api_version: str,
    now: str,
    subresource: str = "",
) -> list[Owner]:
    """Owners after a non-apply write of ``new`` over ``old`` by ``manager``: it gains the
    leaves it added or changed, others lose them, paths that no longer exist go."""
    after = field_set(new, list_types)
    before = field_set(old, list_types) if old is not None else frozenset()
    changed = frozenset(
        path
        for path in after
        if path not in before or value_at(old, path, list_types) != value_at(new, path, list_types)
    )
    me = (manager, UPDATE, subresource)
    result = [
        o if o.ident == me else _with_fields(o, o.fields - changed, now, o.api_version)
        for o in owners
    ]
    index = next((n for n, o in enumerate(result) if o.ident == me), None)
    if index is not None:
        result[index] = _with_fields(
            result[index], result[index].fields | changed, now, api_version
        )
    elif changed:
        result.append(Owner(manager, UPDATE, api_version, now, changed, subresource))
    return _finish(result, after)


def prune_owners(owners: list[Owner], obj: Mapping[str, Any], list_types: ListTypes) -> list[Owner]:
    """Owners restricted to the paths ``obj`` has; managers left with nothing are dropped."""
    return _finish(owners, field_set(obj, list_types))
