"""Request-body and metadata checks every write passes (pure).

The body must be a JSON object whose apiVersion/kind (if given) match the URL;
labels and annotations must be maps of strings (400, as the Go decoder
refuses them), label keys/values and object names must be syntactically
valid (422 Invalid), finalizers a list of strings, ownerReferences a list of
references naming apiVersion, kind, name and uid. Patched objects pass the
same checks as submitted ones. Fields a body sets twice are found here for
field validation (:func:`duplicate_fields`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import yaml

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.registry import NAMESPACES, SERVICES, ResourceType
from ironlb.lab.apiserver.store import Obj

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def check_name(rtype: ResourceType, name: str) -> None:
    """Object names: DNS-1123 subdomains; Namespaces DNS-1123 labels, Services DNS-1035."""
    if rtype.storage_key == NAMESPACES:
        pattern, limit, what = _DNS_LABEL, 63, "a lowercase RFC 1123 label"
    elif rtype.storage_key == SERVICES:
        pattern, limit, what = _DNS_1035, 63, "a DNS-1035 label"
    else:
        pattern, limit, what = _DNS_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"
    if len(name) > limit or not pattern.match(name):
        raise errors.invalid(
            rtype.kind,
            rtype.group,
            name,
            "metadata.name",
            f"Invalid value: {name!r}: must be {what} (at most {limit} characters)",
        )


def check_body(rtype: ResourceType, body: Any) -> Obj:
    """A copy of a request body for ``rtype`` without apiVersion/kind (400 if malformed)."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    api_version = body.get("apiVersion")
    if api_version is not None and api_version != rtype.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected "
            f"API version ({rtype.api_version})"
        )
    kind = body.get("kind")
    if kind is not None and kind != rtype.kind:
        raise errors.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
        )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise errors.bad_request("metadata must be an object")
    obj: Obj = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("apiVersion", "kind")}
    obj["metadata"] = metadata = copy.deepcopy(metadata)
    metadata.pop("managedFields", None)
    for field in ("labels", "annotations"):
        _check_string_map(rtype, metadata, field)
    finalizers = metadata.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise errors.bad_request("metadata.finalizers must be a list of strings")
    _check_owner_references(rtype, metadata)
    return obj


_OWNER_FIELDS = ("apiVersion", "kind", "name", "uid")


def _check_owner_references(rtype: ResourceType, metadata: Obj) -> None:
    """``ownerReferences``: a list of objects (400 otherwise, as the Go decoder says),
    each with non-empty string ``apiVersion``, ``kind``, ``name`` and ``uid`` (422)."""
    refs = metadata.get("ownerReferences")
    if refs is None:
        return
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise errors.bad_request(
            "json: cannot unmarshal metadata.ownerReferences: must be a list of objects"
        )
    for i, ref in enumerate(refs):
        for key in _OWNER_FIELDS:
            value = ref.get(key)
            if not isinstance(value, str) or not value:
                raise errors.invalid(
                    rtype.kind,
                    rtype.group,
                    str(metadata.get("name", "")),
                    f"metadata.ownerReferences[{i}].{key}",
                    f"Invalid value: {value!r}: must be a non-empty string",
                )
        for key in ("controller", "blockOwnerDeletion"):
            if key in ref and not isinstance(ref[key], bool):
                raise errors.bad_request(
                    f"json: cannot unmarshal metadata.ownerReferences[{i}].{key}: must be a bool"
                )


def _check_string_map(rtype: ResourceType, metadata: Obj, field: str) -> None:
    """Labels/annotations: a map of strings (400 otherwise, as the Go decoder says);
    label keys and values must also be syntactically valid (422)."""
    mapping = metadata.get(field)
    if mapping is None:
        return
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise errors.bad_request(
            f"json: cannot unmarshal metadata.{field}: must be a map of strings to strings"
        )
    if field == "labels":
        for key, value in mapping.items():
            if not _LABEL_KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
                raise errors.invalid(
                    rtype.kind,
                    rtype.group,
                    str(metadata.get("name", "")),
                    "metadata.labels",
                    f"Invalid value: {key!r}: invalid label key",
                )
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise errors.invalid(
                    rtype.kind,
                    rtype.group,
                    str(metadata.get("name", "")),
                    "metadata.labels",
                    f"Invalid value: {value!r}: invalid label value",
                )


class _Pairs:
    """A JSON object as its (key, value) pairs, duplicates kept."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _json_duplicates(value: Any, path: str, found: list[str]) -> None:
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for key, item in value.pairs:
            child = f"{path}.{key}" if path else key
            if key in seen and child not in found:
                found.append(child)
            seen.add(key)
            _json_duplicates(item, child, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_duplicates(item, f"{path}[{index}]", found)


def _yaml_duplicates(node: Any, path: str, found: list[str]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, item in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            if key in seen and child not in found:
                found.append(child)
            seen.add(key)
            _yaml_duplicates(item, child, found)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _yaml_duplicates(item, f"{path}[{index}]", found)


def duplicate_fields(raw: bytes, as_yaml: bool) -> list[str]:
    """Paths (``spec.x``, ``spec.ports[0].port``) of fields a JSON or YAML body sets more
    than once, for field validation (kube-apiserver: ``duplicate field "spec.x"``; its
    decoders keep the last value, as ours do). A body that does not parse has none here:
    the parser's own error reports it."""
    found: list[str] = []
    try:
        if as_yaml:
            _yaml_duplicates(yaml.compose(raw, Loader=yaml.SafeLoader), "", found)
        else:
            _json_duplicates(json.loads(raw, object_pairs_hook=_Pairs), "", found)
    except Exception:  # the real parse reports the problem
        return []
    return found
