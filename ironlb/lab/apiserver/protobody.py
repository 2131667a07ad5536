"""Kubernetes protobuf request and response bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed commands (``kubectl create namespace|secret|configmap|
deployment|serviceaccount``) and Helm's release storage send protobuf. The
wire form (``k8s.io/apimachinery/pkg/runtime/serializer/protobuf``) is the
4-byte magic ``k8s\\x00`` then a ``runtime.Unknown`` message whose
``typeMeta`` names apiVersion and kind and whose ``raw`` is the object's own
message. :func:`decode` turns such a body into the JSON dict the JSON path
would have stored; :func:`encode` is the way back for responses, used only
when the client prefers protobuf (:func:`prefers_protobuf`) and the object
fits the definitions; anything else is answered as JSON, which kubectl and
client-go accept too.

A body is refused whole, with one :class:`~ironlb.lab.apiserver.errors.ApiError`
(400 for a malformed body, 415 for a kind or field these definitions do not
have), before anything is stored: the definitions are Kubernetes 1.14 (see
:mod:`~ironlb.lab.apiserver.protoschema`), and a field they do not know would
otherwise be dropped silently.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.protojson import ConversionError, from_json, to_json
from ironlb.lab.apiserver.protoschema import message_class, unknown_class

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_JSON = "application/json"


def decode(raw: bytes) -> dict[str, Any]:
    """A protobuf request body as a Kubernetes JSON object (with apiVersion and kind).

    Raises :class:`~ironlb.lab.apiserver.errors.ApiError`: 400 for a body that is not the
    Kubernetes protobuf envelope, not a valid message or without a JSON form (a string that
    is not UTF-8, a time out of range); 415 for a compressed body, a kind
    without a definition here, or fields newer than the definitions."""
    if not raw.startswith(MAGIC):
        raise errors.bad_request('the protobuf body does not start with the "k8s\\x00" magic')
    envelope = unknown_class()()
    try:
        envelope.ParseFromString(raw[len(MAGIC) :])
    except DecodeError as exc:
        raise errors.bad_request(f"the protobuf body is not a runtime.Unknown: {exc}") from exc
    type_meta = envelope.typeMeta  # type: ignore[attr-defined]
    api_version, kind = type_meta.apiVersion, type_meta.kind
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise errors.bad_request("the protobuf body's apiVersion or kind is not UTF-8")
    if envelope.contentEncoding:  # type: ignore[attr-defined]
        raise _unsupported(f"protobuf content encoding {envelope.contentEncoding!r}")  # type: ignore[attr-defined]
    cls = message_class(api_version, kind)
    if cls is None:
        raise _unsupported(f"protobuf {api_version or '(no apiVersion)'} {kind or '(no kind)'}")
    message = cls()
    try:
        message.ParseFromString(envelope.raw)  # type: ignore[attr-defined]
    except DecodeError as exc:
        raise errors.bad_request(f"the protobuf body is not a valid {kind}: {exc}") from exc
    newer = _unknown_field(message, kind)
    if newer is not None:
        raise _unsupported(f"{newer}, newer than its protobuf definitions (Kubernetes 1.14)")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    try:
        obj.update(to_json(message))
    except ConversionError as exc:
        raise errors.bad_request(f"the protobuf body has no JSON form: {exc}") from exc
    return obj


def encode(obj: dict[str, Any]) -> bytes | None:
    """A JSON object (or list) as a protobuf body; ``None`` when it does not fit the definitions.

    ``obj`` must carry apiVersion and kind; a field the definitions lack (a newer field, a
    custom resource) makes it ``None``, and the caller answers JSON instead."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    cls = message_class(api_version, kind)
    if cls is None:
        return None
    message = cls()
    try:
        from_json(obj, message)
    except ConversionError:
        return None
    envelope = unknown_class()()
    envelope.typeMeta.apiVersion = api_version  # type: ignore[attr-defined]
    envelope.typeMeta.kind = kind  # type: ignore[attr-defined]
    envelope.raw = message.SerializeToString()  # type: ignore[attr-defined]
    return MAGIC + envelope.SerializeToString()


def prefers_protobuf(accept: str | None) -> bool:
    """True when an ``Accept`` header ranks plain Kubernetes protobuf above JSON.

    RFC 9110 section 12.5.1: the highest ``q`` wins, ties in header order; wildcards and
    JSON mean JSON; a protobuf entry with parameters (``as=Table``) is not a plain object.
    kubectl sends ``application/vnd.kubernetes.protobuf,application/json``."""
    if not accept:
        return False
    ranked: list[tuple[float, int, str, bool]] = []
    for index, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        quality, other = 1.0, False
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif key.strip():
                other = True
        if quality > 0:
            ranked.append((-quality, index, media.lower(), other))
    for _quality, _index, media, other in sorted(ranked):
        if media == MEDIA_TYPE and not other:
            return True
        if media in (_JSON, "application/*", "*/*"):
            return False
    return False


def _unknown_field(message: Message, path: str) -> str | None:
    """Where the first field number the definitions do not know is, or ``None``."""
    unknown = UnknownFieldSet(message)
    if len(unknown):
        return f"field number {unknown[0].field_number} of {path} ({message.DESCRIPTOR.name})"
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        where = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            items: list[tuple[str, Any]] = [
                (f"{where}[{key}]", item)
                for key, item in value.items()
                if isinstance(item, Message)
            ]
        elif field.is_repeated:
            items = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
        else:
            items = [(where, value)]
        for item_path, item in items:
            found = _unknown_field(item, item_path)
            if found is not None:
                return found
    return None


def _unsupported(what: str) -> errors.ApiError:
    return errors.ApiError(
        415,
        "UnsupportedMediaType",
        f"the lab API cannot read {what}: send the object as {_JSON}",
    )
