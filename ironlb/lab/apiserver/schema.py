"""Structural-schema handling for custom resources: prune, default, validate.

What kube-apiserver does with a CRD version's ``openAPIV3Schema`` on every
write of a custom object, in its order:

1. drop ``null`` values of fields that are not ``nullable``;
2. fill in ``default`` values of absent properties (in objects that exist);
3. prune fields the schema does not declare (their paths are reported, for
   field validation's warnings and strict errors), unless the object has
   ``x-kubernetes-preserve-unknown-fields: true`` or ``additionalProperties``;
   ``apiVersion``, ``kind`` and ``metadata`` at the root (and in
   ``x-kubernetes-embedded-resource`` objects) are always kept;
4. validate: ``type`` (``x-kubernetes-int-or-string`` allows both),
   ``required``, ``enum``, ``minimum``/``maximum`` (and exclusive forms),
   ``minLength``/``maxLength``, ``minItems``/``maxItems``, ``pattern``.

Not implemented (documented): ``format``, ``oneOf``/``anyOf``/``allOf``/``not``,
CEL ``x-kubernetes-validations``, list-type uniqueness. Pure: no I/O.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]
_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    checks: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "boolean": bool,
        "object": dict,
        "array": list,
    }
    wanted = checks.get(str(expected))
    return wanted is None or isinstance(value, wanted)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "null"


class _Walker:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.unknown: list[str] = []  # paths of pruned fields the schema does not declare

    def fail(self, path: str, message: str) -> None:
        self.errors.append((path or "<root>", message))

    def walk(self, value: Any, schema: Schema, path: str, root: bool = False) -> Any:
        if not _type_ok(value, schema):
            self.fail(
                path,
                f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                f'{schema.get("type")}: "{_type_name(value)}"',
            )
            return value
        if isinstance(value, dict):
            value = self._object(value, schema, path, root)
        elif isinstance(value, list):
            value = self._array(value, schema, path)
        self._scalar_rules(value, schema, path)
        return value

    def _object(self, value: dict[str, Any], schema: Schema, path: str, root: bool) -> Any:
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        keep = _ROOT_KEEP if root or schema.get("x-kubernetes-embedded-resource") else ()
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = properties.get(key)
            if item is None and not (sub or {}).get("nullable"):
                continue  # null of a non-nullable field is pruned
            child = f"{path}.{key}" if path else key
            if key in keep:
                result[key] = item
            elif sub is not None:
                result[key] = self.walk(item, sub, child)
            elif isinstance(additional, Mapping):
                result[key] = self.walk(item, additional, child)
            elif additional is True or preserve:
                result[key] = item
            else:
                self.unknown.append(child)  # unknown field, pruned
        for key, sub in properties.items():
            if key not in result and "default" in sub:
                child = f"{path}.{key}" if path else key
                result[key] = self.walk(copy.deepcopy(sub["default"]), sub, child)
        for key in schema.get("required") or ():
            if key not in result:
                self.fail(f"{path}.{key}" if path else key, "Required value")
        return result

    def _array(self, value: list[Any], schema: Schema, path: str) -> Any:
        items = schema.get("items")
        if not isinstance(items, Mapping):
            return value
        return [self.walk(item, items, f"{path}[{index}]") for index, item in enumerate(value)]

    def _scalar_rules(self, value: Any, schema: Schema, path: str) -> None:
        enum = schema.get("enum")
        if enum is not None and value not in enum:
            allowed = ", ".join(f'"{e}"' for e in enum)
            self.fail(path, f'Unsupported value: "{value}": supported values: {allowed}')
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is not None and (
                value < low or (schema.get("exclusiveMinimum") and value == low)
            ):
                self.fail(path, f"Invalid value: {value}: {path} in body should be >= {low}")
            if high is not None and (
                value > high or (schema.get("exclusiveMaximum") and value == high)
            ):
                self.fail(path, f"Invalid value: {value}: {path} in body should be <= {high}")
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.fail(
                    path,
                    f"Invalid value: {value!r}: should be at least {schema['minLength']} long",
                )
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.fail(path, f"Too long: may not be longer than {schema['maxLength']}")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                self.fail(path, f"Invalid value: {value!r}: should match '{schema['pattern']}'")
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                self.fail(path, f"Invalid value: should have at least {schema['minItems']} items")
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                self.fail(
                    path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
                )


def apply_schema(
    obj: dict[str, Any], schema: Schema, unknown: list[str] | None = None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The pruned and defaulted object, and the validation errors as (field, message).

    The paths of pruned unknown fields (``spec.serviceSelectr``, ``spec.items[0].x``: what
    field validation reports) are appended to ``unknown`` when given."""
    walker = _Walker()
    result = walker.walk(obj, schema, "", root=True)
    if unknown is not None:
        unknown.extend(walker.unknown)
    return result, walker.errors


def version_schema(crd: Mapping[str, Any], version: str) -> Schema | None:
    """The ``openAPIV3Schema`` of one version of a CRD body, if it has one."""
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(entry, Mapping) and entry.get("name") == version:
            schema = (entry.get("schema") or {}).get("openAPIV3Schema")
            return schema if isinstance(schema, Mapping) else None
    return None
