"""Check recorded API requests against rendered RBAC rules, as the Kubernetes authorizer would.

:class:`RecordingServer` is the local API noting every request not sent by the
test itself (told apart by :data:`TEST_AGENT`, the test client's User-Agent).
:func:`attributes` turns a request into what RBAC checks (verb, API group,
resource/subresource, namespace, name; the verb rule is Kubernetes'
"Determine the request verb": GET of a name is ``get``, of a collection
``list``, or ``watch`` with ``?watch=true``; POST ``create``, PUT ``update``,
PATCH ``patch``, DELETE ``delete``). Discovery paths (``/api``, ``/apis``,
``/apis/GROUP/VERSION``, ``/version``) are non-resource requests every
authenticated user may make (Kubernetes' ``system:discovery`` role); they map
to ``None``. :func:`refused` and :func:`unused` compare both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ironlb.lab.apiserver import LocalApiServer

TEST_AGENT = "ironlb-chart-rbac-test"

Rule = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    """A resource request as the authorizer sees it."""

    verb: str
    group: str
    resource: str  # "services" or "services/status"
    namespace: str | None
    name: str | None


class RecordingServer(LocalApiServer):
    """The local API, noting (method, path, watch?) of every request not sent by the test."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.seen: list[tuple[str, str, bool]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("User-Agent") != TEST_AGENT:
            watch = request.query.get("watch") in ("true", "1")
            self.seen.append((request.method, request.path, watch))
        return await super()._handle(request)

    def requests(self) -> set[Attributes]:
        """The distinct resource requests seen so far."""
        return {a for m, p, w in list(self.seen) if (a := attributes(m, p, w)) is not None}


def attributes(method: str, path: str, watch: bool) -> Attributes | None:
    """The authorizer's view of one request; ``None`` for discovery (non-resource) paths."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "get" if name else ("watch" if watch else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return Attributes(verb, group, resource, namespace, name)


def allowed_by(rule: Rule, request: Attributes) -> bool:
    """Whether one RBAC rule grants the request (``resourceNames`` empty: any name)."""
    names = rule.get("resourceNames")
    return (
        request.group in rule["apiGroups"]
        and request.resource in rule["resources"]
        and request.verb in rule["verbs"]
        and (not names or request.name in names)
    )


def allowed(
    request: Attributes, cluster_rules: list[Rule], role_rules: list[Rule], namespace: str
) -> bool:
    """Granted by the ClusterRole anywhere, or by the Role inside its namespace."""
    return any(allowed_by(r, request) for r in cluster_rules) or (
        request.namespace == namespace and any(allowed_by(r, request) for r in role_rules)
    )


def refused(
    requests: Iterable[Attributes], cluster_rules: list[Rule], role_rules: list[Rule], ns: str
) -> list[str]:
    """The requests these rules would refuse (403), sorted, as text."""
    return sorted(str(r) for r in requests if not allowed(r, cluster_rules, role_rules, ns))


def unused(
    requests: Iterable[Attributes], cluster_rules: list[Rule], role_rules: list[Rule], ns: str
) -> list[str]:
    """Every (rule, verb) that no request needed, sorted, as text."""
    seen = list(requests)
    out = []
    for rule in [*cluster_rules, *role_rules]:
        namespaced = rule not in cluster_rules
        for verb in rule["verbs"]:
            one_verb = {**rule, "verbs": [verb]}
            if not any(
                allowed_by(one_verb, r) and (not namespaced or r.namespace == ns) for r in seen
            ):
                out.append(f"{rule['resources']} {rule.get('resourceNames', '')} {verb}")
    return sorted(out)
