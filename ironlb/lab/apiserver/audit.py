"""Who asked the lab API for what: request attributes, identities and the audit log.

The chart's RBAC is checked against what the controller and the speakers
really do (issue 10: "nothing used that is not granted, nothing granted that
is not used"). That needs, per request, the identity and the RBAC attributes
of the request, which is what a kube-apiserver's audit log holds. So this
module

* resolves a request into RBAC attributes the way kube-apiserver's
  ``RequestInfoFactory`` does (k8s.io/apiserver/pkg/endpoints/request/
  requestinfo.go): ``verb`` is ``get``/``list``/``watch``/``create``/
  ``update``/``patch``/``delete``/``deletecollection`` for resource
  requests, the lower-case HTTP method for the others (discovery,
  ``/version``, ``/openapi``);
* takes the caller from :mod:`~ironlb.lab.apiserver.identity`;
* writes one ``audit.k8s.io/v1`` ``Event`` per answered request (level
  ``Metadata``, stage ``ResponseComplete``) as a JSON line to a file and/or
  keeps it in memory (:class:`AuditLog`).

Pure apart from :class:`AuditLog`'s file writes; the server hooks it in.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ironlb.lab.apiserver.identity import UserInfo

__all__ = ["AuditLog", "RequestInfo", "audit_event", "event_request", "request_info"]

#: kube-apiserver's API prefixes: core (``/api``) and named groups (``/apis``).
_PREFIXES = ("api", "apis")
_TRUE = ("true", "1")
#: ``namespaces/NS/status`` and ``/finalize`` are the Namespace's own subresources.
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    """The RBAC attributes of one request.

    ``resource`` is empty for a non-resource request, whose ``path`` is then
    what an RBAC ``nonResourceURLs`` rule matches. ``group`` is "" for the
    core group.
    """

    verb: str
    path: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Resolve ``method path?query`` into RBAC attributes, as kube-apiserver does.

    Rules (requestinfo.go): ``/api/v1/...`` is the core group, ``/apis/G/V/...``
    group G; ``namespaces/NS/<resource>`` scopes a resource to NS, while
    ``namespaces/NS`` itself is the ``namespaces`` resource named NS; GET with
    no name is ``list`` (``watch`` with ``?watch=true``), DELETE with no name
    ``deletecollection``; a name-specific list (``fieldSelector`` of
    ``metadata.name=X``) keeps verb ``list`` and gets the name, as RBAC's
    ``resourceNames`` then applies. Paths outside the resource tree (``/api``,
    ``/apis/G``, ``/version``, ``/openapi/v3``) are non-resource requests with
    the lower-case method as verb. Never raises.
    """
    lower = method.lower()
    segments = [s for s in path.split("/") if s]
    if not segments or segments[0] not in _PREFIXES:
        return RequestInfo(lower, path)
    if segments[0] == "api":
        group, rest = "", segments[1:]
    else:
        group, rest = (segments[1] if len(segments) > 1 else ""), segments[2:]
    if len(rest) < 2:  # /api, /api/v1, /apis/G, /apis/G/V: discovery
        return RequestInfo(lower, path)
    version, rest = rest[0], rest[1:]
    if rest[0] == "watch":  # the old /watch/ path form
        rest, watching = rest[1:], True
    else:
        watching = query.get("watch", "").lower() in _TRUE
    namespace = ""
    if rest and rest[0] == "namespaces":
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            namespace, rest = rest[1], rest[2:]
        else:  # the namespace object itself (or its status/finalize)
            namespace = rest[1] if len(rest) > 1 else ""
    if not rest:
        return RequestInfo(lower, path)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = "/".join(rest[2:])
    verb = {
        "GET": "get",
        "HEAD": "get",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method.upper(), lower)
    if not name and verb == "get":
        verb = "list"
        selected = _field_selected_name(query.get("fieldSelector", ""))
        if selected:
            name = selected
    if verb in ("get", "list") and watching:
        verb = "watch"
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(verb, path, group, version, resource, subresource, namespace, name)


def _field_selected_name(selector: str) -> str:
    """``metadata.name=X`` (or ``==``) when it is the whole field selector, else ""."""
    for op in ("==", "="):
        key, sep, value = selector.partition(op)
        if sep and key.strip() == "metadata.name" and "," not in value:
            return value.strip()
    return ""


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_event(
    info: RequestInfo,
    user: UserInfo,
    *,
    request_uri: str,
    code: int,
    user_agent: str,
    source_ip: str,
    received: datetime,
    completed: datetime,
) -> dict[str, Any]:
    """One ``audit.k8s.io/v1`` ``Event`` at level ``Metadata``, stage
    ``ResponseComplete`` (the shape kube-apiserver writes with ``--audit-log-path``)."""
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "requestURI": request_uri,
        "verb": info.verb,
        "user": {"username": user.username, "groups": list(user.groups)},
        "sourceIPs": [source_ip] if source_ip else [],
        "userAgent": user_agent,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": _timestamp(received),
        "stageTimestamp": _timestamp(completed),
    }
    if info.is_resource_request:
        ref = {
            "resource": info.resource,
            "namespace": info.namespace,
            "name": info.name,
            "apiGroup": info.group,
            "apiVersion": info.version,
            "subresource": info.subresource,
        }
        event["objectRef"] = {k: v for k, v in ref.items() if v}
    return event


def event_request(event: Mapping[str, Any]) -> RequestInfo:
    """The :class:`RequestInfo` an :func:`audit_event` was made from (the path only
    for non-resource requests, whose ``requestURI`` it is, without the query).
    Raises KeyError for an event without ``verb`` or ``requestURI``."""
    ref = event.get("objectRef")
    if not ref:
        return RequestInfo(str(event["verb"]), str(event["requestURI"]).split("?", 1)[0])
    return RequestInfo(
        str(event["verb"]),
        "",
        str(ref.get("apiGroup", "")),
        str(ref.get("apiVersion", "")),
        str(ref.get("resource", "")),
        str(ref.get("subresource", "")),
        str(ref.get("namespace", "")),
        str(ref.get("name", "")),
    )


class AuditLog:
    """Audit events, kept in memory (``events``) and appended to ``path`` as JSON
    lines when given (the file is created, its directory too; one line per
    event, flushed at once so a reader tailing it never sees half a line)."""

    def __init__(self, path: str | Path | None = None, *, keep: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self._keep = keep
        self._file: TextIO | None = None
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._file = target.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            if self._keep:
                self.events.append(event)
            if self._file is not None:
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
