"""Label and field selectors: parse the query-string forms and match objects.

Label selectors follow the Kubernetes grammar: ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist),
and ``k>N`` / ``k<N``, comma-separated (all must hold). Field selectors are
``path=v``, ``path==v`` or ``path!=v`` where ``path`` is a dotted path into
the object (``metadata.name``, ``spec.type``, ``status.phase``); a missing
field compares as the empty string. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """The selector text does not parse."""


_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)
_VALUE = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$")
_SET_OP = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP_OP = re.compile(r"^(?P<key>[^!=<>\s]+)\s*(?P<op>==|!=|=|<|>)\s*(?P<value>.*)$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists", "<", ">"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        # "<" / ">": both sides must be integers.
        try:
            have, want = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return have < want if self.op == "<" else have > want


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parenthesis in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unbalanced parenthesis in {text!r}")
    parts.append("".join(current).strip())
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


def _parse_label_requirement(part: str, text: str) -> Requirement:
    if part.startswith("!"):
        return Requirement(_check_key(part[1:].strip(), text), "!exists")
    set_match = _SET_OP.match(part)
    if set_match:
        values = tuple(
            _check_value(v.strip(), text) for v in set_match["values"].split(",") if v.strip()
        )
        if not values:
            raise SelectorError(f"empty value set in selector {text!r}")
        return Requirement(_check_key(set_match["key"], text), set_match["op"], values)
    cmp_match = _CMP_OP.match(part)
    if cmp_match:
        op = "=" if cmp_match["op"] == "==" else cmp_match["op"]
        value = cmp_match["value"].strip()
        if op in ("<", ">"):
            try:
                int(value)
            except ValueError as exc:
                raise SelectorError(f"{op} needs an integer value in {text!r}") from exc
        else:
            _check_value(value, text)
        return Requirement(_check_key(cmp_match["key"], text), op, (value,))
    return Requirement(_check_key(part, text), "exists")


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a ``labelSelector`` query value; empty or None selects everything."""
    if not text or not text.strip():
        return ()
    parts = _split_top_level(text)
    if any(not p for p in parts):
        raise SelectorError(f"empty requirement in selector {text!r}")
    return tuple(_parse_label_requirement(part, text) for part in parts)


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    have = labels or {}
    return all(r.matches(have) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) == self.equal


def field_value(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    """The string form of the field at ``path`` ("" if absent), as field selectors see it."""
    current: Any = obj
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, (str, int, float)):
        return str(current)
    return ""


def parse_field_selector(text: str | None) -> tuple[FieldRequirement, ...]:
    """Parse a ``fieldSelector`` query value; empty or None selects everything."""
    if not text or not text.strip():
        return ()
    result: list[FieldRequirement] = []
    for part in text.split(","):
        part = part.strip()
        for op in ("!=", "==", "="):
            if op in part:
                path, value = part.split(op, 1)
                path = path.strip()
                if not path or not all(path.split(".")):
                    raise SelectorError(f"invalid field path in selector {text!r}")
                result.append(FieldRequirement(tuple(path.split(".")), op != "!=", value.strip()))
                break
        else:
            raise SelectorError(f"invalid field selector {text!r}: expected path=value")
    return tuple(result)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)


def make_filter(
    label_selector: str | None, field_selector: str | None
) -> Callable[[Mapping[str, Any]], bool]:
    """One predicate over whole objects for both selectors (raises SelectorError)."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)

    def accept(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return labels_match(labels, meta.get("labels")) and fields_match(fields, obj)

    return accept


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` object (matchLabels + matchExpressions); None/{} matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expression in selector.get("matchExpressions") or []:
        op = operators.get(str(expression.get("operator")))
        if op is None:
            raise SelectorError(f"unknown selector operator {expression.get('operator')!r}")
        values = tuple(str(v) for v in expression.get("values") or ())
        if not Requirement(str(expression.get("key")), op, values).matches(labels):
            return False
    return True
