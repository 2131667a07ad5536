"""Kubernetes ``Status`` failure bodies and the exception that carries them.

Every error the local API server returns is a ``kind: Status`` object shaped
like the real kube-apiserver's (apiVersion v1, status Failure, reason,
message, code, details), so clients that branch on ``reason`` or ``code``
(kopf, the kubernetes client, kubectl) behave as they would on a cluster.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request failed; ``status`` is the Status body to send with ``code``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        details: dict[str, Any] = {}
        if name is not None:
            details["name"] = name
        if group is not None:
            details["group"] = group
        if kind is not None:
            details["kind"] = kind
        if causes:
            details["causes"] = causes
        if retry_after is not None:
            details["retryAfterSeconds"] = retry_after
        self.details = details

    @property
    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        name=name,
        group=group,
        kind=plural,
    )


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        name=name,
        group=group,
        kind=plural,
    )


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        name=name,
        group=group,
        kind=plural,
    )


def invalid(kind: str, group: str, name: str, field: str, problem: str) -> ApiError:
    """422 Invalid for one bad field, worded like the apiserver's validation errors."""
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group or "core"} "{name}" is invalid: {field}: {problem}'
        if name
        else f"{kind}.{group or 'core'} is invalid: {field}: {problem}",
        name=name or None,
        group=group,
        kind=kind,
        causes=[{"reason": "FieldValueInvalid", "message": problem, "field": field}],
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable(message: str) -> ApiError:
    """422 for a request that parsed but cannot be applied (e.g. a failed JSON-patch test)."""
    return ApiError(422, "Invalid", message)


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method ({method}) on the requested resource ({path})",
    )


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f'application/strategic-merge-patch+json (got "{content_type}")',
    )


def gone(resource_version: str, oldest: str) -> ApiError:
    return ApiError(
        410,
        "Expired",
        f"too old resource version: {resource_version} ({oldest})",
    )


def namespace_not_found(namespace: str) -> ApiError:
    return not_found("namespaces", "", namespace)
