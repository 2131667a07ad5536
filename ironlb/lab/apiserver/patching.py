"""Apply PATCH bodies by content type: JSON merge patch, JSON patch, "strategic" merge.

- ``application/merge-patch+json``: RFC 7386 (``null`` deletes a key; lists
  are replaced whole).
- ``application/json-patch+json``: RFC 6902 through the ``jsonpatch`` library,
  including ``test`` ops; a failed test or an op that cannot apply is 422, as
  on the real apiserver (kopf treats 422 as "retry on the next cycle").
- ``application/strategic-merge-patch+json``: a schema-less approximation of
  strategic merge. Real strategic merge takes merge keys from the Go types;
  here a fixed table of well-known list fields (``containers``/``env``/
  ``volumes`` by name, ``ports`` by containerPort or port, ``conditions`` by
  type, ``ownerReferences`` by uid, ``finalizers`` as a set) is merged by key,
  the directives kubectl sends (``$patch: delete|replace``,
  ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``,
  ``$retainKeys``) are honoured, and every other list is replaced (as in a
  merge patch). No Python library implements strategic merge, hence this.
- ``application/apply-patch+yaml`` (server-side apply) is not a patch of this
  kind: :mod:`~ironlb.lab.apiserver.apply` merges it. Anything else: 415.
Pure: no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from ironlb.lab.apiserver import errors

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"  # server-side apply: ironlb.lab.apiserver.apply
SUPPORTED = (MERGE, JSON_PATCH, STRATEGIC)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value, inputs untouched."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# list field -> candidate merge keys (the first one the items carry is used)
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "addresses": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
}
SET_LISTS = ("finalizers",)
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def _merge_key(field: str, items: list[Any]) -> str | None:
    dicts = [i for i in items if isinstance(i, dict)]
    if not dicts or len(dicts) != len(items):
        return None
    for key in MERGE_KEYS.get(field, ()):
        if all(key in i for i in dicts):
            return key
    return None


def _merge_list(field: str, old: Any, new: list[Any], order: list[Any] | None) -> list[Any]:
    old_list = old if isinstance(old, list) else []
    key = _merge_key(field, new + old_list) if new or old_list else None
    if field in SET_LISTS and all(not isinstance(i, (dict, list)) for i in new + old_list):
        result = list(old_list) + [i for i in new if i not in old_list]
    elif key is None:
        return [strategic_merge_patch(None, i) if isinstance(i, dict) else i for i in new]
    else:
        result = [copy.deepcopy(i) for i in old_list]
        for item in new:
            index = next((n for n, o in enumerate(result) if o.get(key) == item.get(key)), None)
            if item.get("$patch") == "delete":
                if index is not None:
                    result.pop(index)
            elif index is None:
                result.append(strategic_merge_patch(None, item))
            else:
                result[index] = strategic_merge_patch(result[index], item)
    if order is not None and key is not None:
        wanted = [o.get(key) for o in order if isinstance(o, dict)]
        result.sort(key=lambda i: wanted.index(i.get(key)) if i.get(key) in wanted else len(wanted))
    elif order is not None:
        result.sort(key=lambda i: order.index(i) if i in order else len(order))
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """The schema-less strategic merge described in the module docstring."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value, patch.get(_ORDER + key))
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE) and isinstance(value, list):
            field = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(result.get(field), list):
                result[field] = [i for i in result[field] if i not in value]
        elif key.startswith(_ORDER) and key[len(_ORDER) :] not in patch:
            field = key[len(_ORDER) :]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = _merge_list(field, result[field], [], value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def apply_patch(obj: dict[str, Any], content_type: str, patch: Any) -> dict[str, Any]:
    """The patched copy of ``obj`` (raises ApiError 415/422)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in SUPPORTED:
        raise errors.unsupported_media_type(media)
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise errors.unprocessable(
                "the server rejected our request due to an error in our request: "
                "a JSON patch must be a list of operations"
            )
        try:
            result = jsonpatch.JsonPatch(patch).apply(obj, in_place=False)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise errors.unprocessable(
                f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise errors.unprocessable(
                f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
        except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
            raise errors.unprocessable(f"invalid JSON patch: {exc!r}") from exc
    else:
        if not isinstance(patch, dict):
            raise errors.unprocessable("a merge patch must be a JSON object")
        result = (
            strategic_merge_patch(obj, patch) if media == STRATEGIC else merge_patch(obj, patch)
        )
    if not isinstance(result, dict):
        raise errors.unprocessable("the patch did not produce an object")
    return result
