"""The chart's RBAC against recorded API requests, through the lab's own RBAC check.

:class:`RecordingServer` is the local API with an audit log
(:mod:`ironlb.lab.apiserver.audit`), and :meth:`RecordingServer.requests` the
requests not sent by the test itself (told apart by :data:`TEST_AGENT`, the
test client's User-Agent). :func:`grants` turns a rendered ClusterRole's and
Role's rules into :class:`~ironlb.lab.rbac.Grant`\\s; :func:`refused` and
:func:`unused` are the two sides of :func:`ironlb.lab.rbac.compare`, as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ironlb.lab.apiserver import LocalApiServer
from ironlb.lab.apiserver.audit import AuditLog, RequestInfo, event_request
from ironlb.lab.rbac import Grant, compare, parse_rule

TEST_AGENT = "ironlb-chart-rbac-test"

Rule = dict[str, Any]


class RecordingServer(LocalApiServer):
    """The local API, keeping an audit event per request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port, audit=AuditLog())

    def requests(self) -> list[RequestInfo]:
        """Every request so far that the test itself did not send."""
        assert self.audit is not None
        return [event_request(e) for e in list(self.audit.events) if e["userAgent"] != TEST_AGENT]

    def count(self, verb: str, resource: str) -> int:
        """How many such requests had this verb and resource."""
        return sum(1 for r in self.requests() if (r.verb, r.resource) == (verb, resource))


def grants(cluster_rules: list[Rule], role_rules: list[Rule], namespace: str) -> list[Grant]:
    """A ClusterRole's rules (bound cluster-wide) and a Role's (in ``namespace``)."""
    return [Grant(parse_rule(r), None, "ClusterRole") for r in cluster_rules] + [
        Grant(parse_rule(r), namespace, f"Role {namespace}") for r in role_rules
    ]


def _lines(
    requests: Iterable[RequestInfo],
    cluster_rules: list[Rule],
    role_rules: list[Rule],
    ns: str,
    prefix: str,
) -> list[str]:
    report = compare(requests, grants(cluster_rules, role_rules, ns)).report()
    return sorted(line for line in report.splitlines() if line.startswith(prefix))


def refused(
    requests: Iterable[RequestInfo], cluster_rules: list[Rule], role_rules: list[Rule], ns: str
) -> list[str]:
    """The requests these rules would refuse (403), as text."""
    return _lines(requests, cluster_rules, role_rules, ns, "used, not granted")


def unused(
    requests: Iterable[RequestInfo], cluster_rules: list[Rule], role_rules: list[Rule], ns: str
) -> list[str]:
    """Every verb x group x resource granted that no request needed, as text."""
    return _lines(requests, cluster_rules, role_rules, ns, "granted, not used")
