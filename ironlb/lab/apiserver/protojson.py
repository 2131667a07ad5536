"""Kubernetes objects between protobuf messages and the JSON dicts the lab API stores.

:func:`google.protobuf.json_format.MessageToDict` is not the Kubernetes JSON
form, so the conversion is written out here, following how Kubernetes' Go
types marshal (``k8s.io/apimachinery`` and ``k8s.io/api``):

- ``meta.v1.Time`` is an RFC 3339 string in whole seconds, ``MicroTime`` with
  microseconds; an empty ``Time`` message (Go's zero time) is ``null``.
- ``IntOrString`` is a JSON number or string; ``Quantity`` a string.
- ``bytes`` (``Secret.data``, ``ConfigMap.binaryData``) are standard base64.
- ``int64`` fields are JSON numbers, not strings.
- Go's protobuf marshalling writes every value (non-pointer) field, zero or
  not, while its JSON (``omitempty``) leaves zero values out; so a zero
  scalar read from protobuf is dropped, except for the fields Kubernetes
  declares as pointers (:data:`POINTER_FIELDS`), where zero is a value
  (``replicas: 0``, ``automountServiceAccountToken: false``).
- Embedded Go structs are fields of their own in protobuf but inline in JSON
  (``Volume.volumeSource``, ``...KeySelector.localObjectReference``,
  ``Probe.handler``): :data:`INLINE_FIELDS`.

Pure functions; every refusal is a :class:`ConversionError` with a message
naming the field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ironlb.common.kubetime import format_micro_time, format_time, parse_time

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
TIME = f"{_META}.Time"
MICRO_TIME = f"{_META}.MicroTime"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"

_CORE = "k8s.io.api.core.v1"
_APPS = "k8s.io.api.apps.v1"

# Scalar fields that are Go pointers in k8s.io/api (zero is kept), by message.
POINTER_FIELDS: Mapping[str, frozenset[str]] = {
    f"{_META}.ObjectMeta": frozenset({"deletionGracePeriodSeconds"}),
    f"{_META}.OwnerReference": frozenset({"controller", "blockOwnerDeletion"}),
    f"{_APPS}.DeploymentSpec": frozenset(
        {"replicas", "revisionHistoryLimit", "progressDeadlineSeconds"}
    ),
    f"{_APPS}.DeploymentStatus": frozenset({"collisionCount"}),
    f"{_CORE}.PodSpec": frozenset(
        {
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "automountServiceAccountToken",
            "shareProcessNamespace",
            "priority",
            "enableServiceLinks",
            "runtimeClassName",
            "preemptionPolicy",
        }
    ),
    f"{_CORE}.PodSecurityContext": frozenset(
        {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"}
    ),
    f"{_CORE}.SecurityContext": frozenset(
        {
            "privileged",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "procMount",
        }
    ),
    f"{_CORE}.ServiceAccount": frozenset({"automountServiceAccountToken"}),
    f"{_CORE}.ClientIPConfig": frozenset({"timeoutSeconds"}),
    f"{_CORE}.Toleration": frozenset({"tolerationSeconds"}),
    f"{_CORE}.HostPathVolumeSource": frozenset({"type"}),
    f"{_CORE}.KeyToPath": frozenset({"mode"}),
    f"{_CORE}.DownwardAPIVolumeFile": frozenset({"mode"}),
    f"{_CORE}.DownwardAPIVolumeSource": frozenset({"defaultMode"}),
    f"{_CORE}.ProjectedVolumeSource": frozenset({"defaultMode"}),
    f"{_CORE}.ServiceAccountTokenProjection": frozenset({"expirationSeconds"}),
    f"{_CORE}.ConfigMapVolumeSource": frozenset({"defaultMode", "optional"}),
    f"{_CORE}.SecretVolumeSource": frozenset({"defaultMode", "optional"}),
    **{
        f"{_CORE}.{name}": frozenset({"optional"})
        for name in (
            "ConfigMapEnvSource",
            "SecretEnvSource",
            "ConfigMapKeySelector",
            "SecretKeySelector",
            "ConfigMapProjection",
            "SecretProjection",
        )
    },
}

# Message fields that are embedded (``json:",inline"``) Go structs, by message.
INLINE_FIELDS: Mapping[str, str] = {
    f"{_CORE}.Volume": "volumeSource",
    f"{_CORE}.PersistentVolumeSpec": "persistentVolumeSource",
    f"{_CORE}.Probe": "handler",
    **{
        f"{_CORE}.{name}": "localObjectReference"
        for name in (
            "ConfigMapEnvSource",
            "SecretEnvSource",
            "ConfigMapKeySelector",
            "SecretKeySelector",
            "ConfigMapProjection",
            "SecretProjection",
            "ConfigMapVolumeSource",
        )
    },
}

# Kubernetes messages use int32 and int64 only (no unsigned, zigzag or fixed types).
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


_TYPE_META = ("apiVersion", "kind")


class ConversionError(ValueError):
    """A value has no form on the other side; the message names the field path."""


# --- protobuf -> JSON ---------------------------------------------------------------


def to_json(message: Message) -> dict[str, Any]:
    """A decoded object message as its Kubernetes JSON dict (without apiVersion/kind).

    Raises :class:`ConversionError` for what JSON cannot hold: a string that is not UTF-8
    (proto2 does not check), a time out of range."""
    return _message_to_json(message, message.DESCRIPTOR.name)


def _message_to_json(message: Message, path: str) -> dict[str, Any]:
    descriptor = message.DESCRIPTOR
    pointers = POINTER_FIELDS.get(descriptor.full_name, frozenset())
    inline = INLINE_FIELDS.get(descriptor.full_name)
    result: dict[str, Any] = {}
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.name == inline:
            result.update(_message_to_json(value, path))
            continue
        if _is_map(field):
            value_field = _message_type(field).fields_by_name["value"]
            result[field.name] = {
                _text(key, where): _value_to_json(value_field, item, f"{where}[{key!r}]")
                for key, item in value.items()
            }
        elif field.is_repeated:
            result[field.name] = [
                _value_to_json(field, item, f"{where}[{index}]") for index, item in enumerate(value)
            ]
        # a message is there because Go wrote it; a zero value field is Go's omitempty
        elif field.type == FieldDescriptor.TYPE_MESSAGE or value or field.name in pointers:
            result[field.name] = _value_to_json(field, value, where)
    return result


def _value_to_json(field: FieldDescriptor, value: Any, where: str) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = _message_type(field).full_name
        if name in (TIME, MICRO_TIME):
            if not value.seconds and not value.nanos:
                return None  # Go's zero time.Time marshals to null
            try:
                moment = datetime.fromtimestamp(value.seconds, UTC).replace(
                    microsecond=value.nanos // 1000
                )
            except (ValueError, OverflowError, OSError) as exc:
                raise ConversionError(f"{where}: not a time: {exc}") from exc
            return format_time(moment) if name == TIME else format_micro_time(moment)
        if name == INT_OR_STRING:
            return _text(value.strVal, where) if value.type == 1 else value.intVal
        if name == QUANTITY:
            return _text(value.string, where)
        return _message_to_json(value, where)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type == FieldDescriptor.TYPE_STRING:
        return _text(value, where)
    return value


def _text(value: Any, where: str) -> str:
    """A proto2 string as read: upb hands back ``bytes`` when it is not valid UTF-8."""
    if not isinstance(value, str):
        raise ConversionError(f"{where}: a string that is not UTF-8")
    return value


def _message_type(field: FieldDescriptor) -> Descriptor:
    descriptor = field.message_type
    if descriptor is None:
        raise ConversionError(f"{field.full_name} is not a message field")
    return descriptor


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.is_repeated
        and field.type == FieldDescriptor.TYPE_MESSAGE
        and _message_type(field).GetOptions().map_entry
    )


# --- JSON -> protobuf ---------------------------------------------------------------


def from_json(obj: Mapping[str, Any], message: Message) -> None:
    """Fill ``message`` from a Kubernetes JSON object; ``apiVersion``/``kind`` are skipped.

    Raises :class:`ConversionError` for a field the message does not define (a field newer
    than the definitions, or a typo) or a value of the wrong shape."""
    _fill(obj, message, "")


def _fill(obj: Any, message: Message, path: str) -> None:
    descriptor = message.DESCRIPTOR
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path or 'the object'}: expected an object")
    inline = INLINE_FIELDS.get(descriptor.full_name)
    inline_part: dict[str, Any] = {}
    for key, value in obj.items():
        where = f"{path}.{key}" if path else str(key)
        field = cast(FieldDescriptor | None, descriptor.fields_by_name.get(key))
        if field is None and key in _TYPE_META:
            continue  # Go's TypeMeta is not part of a protobuf message (list items carry it)
        if field is None or key == inline:
            if inline is None:
                raise ConversionError(f"{where}: not a field of {descriptor.name}")
            inline_part[key] = value
            continue
        if value is None:
            continue
        if _is_map(field):
            if not isinstance(value, Mapping):
                raise ConversionError(f"{where}: expected an object")
            value_field = _message_type(field).fields_by_name["value"]
            target = getattr(message, field.name)
            for map_key, item in value.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill_value(value_field, item, target[map_key], f"{where}.{map_key}")
                else:
                    target[map_key] = _scalar(value_field, item, f"{where}.{map_key}")
        elif field.is_repeated:
            if not isinstance(value, list):
                raise ConversionError(f"{where}: expected a list")
            target = getattr(message, field.name)
            for index, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill_value(field, item, target.add(), f"{where}[{index}]")
                else:
                    target.append(_scalar(field, item, f"{where}[{index}]"))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            part = getattr(message, field.name)
            part.SetInParent()
            _fill_value(field, value, part, where)
        else:
            setattr(message, field.name, _scalar(field, value, where))
    if inline_part:
        assert inline is not None
        part = getattr(message, inline)
        part.SetInParent()
        _fill(inline_part, part, path)


def _fill_value(field: FieldDescriptor, value: Any, target: Message, where: str) -> None:
    name = _message_type(field).full_name
    if name in (TIME, MICRO_TIME):
        moment = parse_time(value)
        if moment is None:
            raise ConversionError(f"{where}: not an RFC 3339 time: {value!r}")
        target.seconds = int(moment.replace(microsecond=0).timestamp())  # type: ignore[attr-defined]
        target.nanos = moment.microsecond * 1000  # type: ignore[attr-defined]
    elif name == INT_OR_STRING:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConversionError(f"{where}: expected an integer or a string")
        if isinstance(value, str):
            target.type, target.strVal = 1, value  # type: ignore[attr-defined]
        else:
            target.type, target.intVal = 0, value  # type: ignore[attr-defined]
    elif name == QUANTITY:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConversionError(f"{where}: expected a quantity string")
        target.string = str(value)  # type: ignore[attr-defined]
    else:
        _fill(value, target, where)


def _scalar(field: FieldDescriptor, value: Any, where: str) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING and isinstance(value, str):
        return value
    if kind == FieldDescriptor.TYPE_BOOL and isinstance(value, bool):
        return value
    if kind in _INT_RANGES and isinstance(value, int) and not isinstance(value, bool):
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise ConversionError(f"{where}: {value} is out of range")
        return value
    if kind == FieldDescriptor.TYPE_BYTES and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ConversionError(f"{where}: not base64") from exc
    raise ConversionError(f"{where}: {type(value).__name__} does not fit a {_kind_name(kind)}")


def _kind_name(kind: int) -> str:
    if kind in _INT_RANGES:
        return "integer"
    return {
        FieldDescriptor.TYPE_STRING: "string",
        FieldDescriptor.TYPE_BOOL: "boolean",
        FieldDescriptor.TYPE_BYTES: "base64 string",
    }.get(kind, "value")
