"""Request attributes as kube-apiserver's RequestInfoFactory resolves them, TokenRequest
bodies, and the audit log file (pure, no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ironlb.lab.apiserver.audit import AuditLog, RequestInfo, audit_event, request_info
from ironlb.lab.apiserver.identity import (
    ADMIN,
    TokenRequestError,
    Tokens,
    service_account_user,
    token_request,
)

CASES = [
    # method, path, query -> verb, group, resource, subresource, namespace, name
    ("GET", "/api/v1/pods", {}, ("list", "", "pods", "", "", "")),
    ("GET", "/api/v1/namespaces/a/pods", {}, ("list", "", "pods", "", "a", "")),
    ("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}, ("watch", "", "pods", "", "a", "")),
    ("GET", "/api/v1/watch/namespaces/a/pods", {}, ("watch", "", "pods", "", "a", "")),
    ("GET", "/api/v1/namespaces/a/pods/p", {}, ("get", "", "pods", "", "a", "p")),
    ("GET", "/api/v1/namespaces/a", {}, ("get", "", "namespaces", "", "a", "a")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
    (
        "PUT",
        "/api/v1/namespaces/a/finalize",
        {},
        ("update", "", "namespaces", "finalize", "a", "a"),
    ),
    ("POST", "/api/v1/namespaces/a/configmaps", {}, ("create", "", "configmaps", "", "a", "")),
    (
        "PATCH",
        "/apis/ironlb.io/v1alpha1/ipaddresspools/p/status",
        {},
        ("patch", "ironlb.io", "ipaddresspools", "status", "", "p"),
    ),
    (
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
        {},
        ("update", "coordination.k8s.io", "leases", "", "ns", "l"),
    ),
    ("DELETE", "/api/v1/namespaces/a/pods", {}, ("deletecollection", "", "pods", "", "a", "")),
    ("DELETE", "/api/v1/namespaces/a/pods/p", {}, ("delete", "", "pods", "", "a", "p")),
    (
        "GET",
        "/api/v1/namespaces/a/secrets",
        {"fieldSelector": "metadata.name=hb"},
        ("list", "", "secrets", "", "a", "hb"),
    ),
    (
        "GET",
        "/api/v1/namespaces/a/secrets",
        {"fieldSelector": "metadata.name=hb", "watch": "1"},
        ("watch", "", "secrets", "", "a", "hb"),
    ),
    (
        "POST",
        "/api/v1/namespaces/a/serviceaccounts/sa/token",
        {},
        ("create", "", "serviceaccounts", "token", "a", "sa"),
    ),
]


@pytest.mark.parametrize(("method", "path", "query", "want"), CASES)
def test_resource_requests_resolve_as_kube_apiserver_does(
    method: str, path: str, query: dict[str, str], want: tuple[str, ...]
) -> None:
    info = request_info(method, path, query)
    got = (info.verb, info.group, info.resource, info.subresource, info.namespace, info.name)
    assert got == want
    assert info.is_resource_request


@pytest.mark.parametrize(
    "path", ["/api", "/api/v1", "/apis", "/apis/ironlb.io", "/apis/apps/v1", "/version", "/"]
)
def test_discovery_and_other_paths_are_non_resource_requests(path: str) -> None:
    info = request_info("GET", path, {})
    assert info == RequestInfo("get", path)
    assert not info.is_resource_request


def test_a_field_selector_that_is_not_one_name_names_nothing() -> None:
    for selector in ("metadata.name=a,metadata.namespace=b", "spec.nodeName=n", "metadata.name!=a"):
        assert request_info("GET", "/api/v1/pods", {"fieldSelector": selector}).name == ""


def test_audit_event_has_the_audit_k8s_io_shape() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    info = request_info("GET", "/api/v1/namespaces/a/pods/p", {})
    event = audit_event(
        info,
        service_account_user("ironlb-system", "speaker"),
        request_uri="/api/v1/namespaces/a/pods/p",
        code=404,
        user_agent="kubectl/v1.32.0",
        source_ip="127.0.0.1",
        received=at,
        completed=at,
    )
    assert event["apiVersion"] == "audit.k8s.io/v1" and event["kind"] == "Event"
    assert event["user"]["username"] == "system:serviceaccount:ironlb-system:speaker"
    assert "system:serviceaccounts:ironlb-system" in event["user"]["groups"]
    assert event["objectRef"] == {
        "resource": "pods",
        "namespace": "a",
        "name": "p",
        "apiVersion": "v1",
    }
    assert event["responseStatus"]["code"] == 404
    assert event["requestReceivedTimestamp"] == "2026-01-02T03:04:05.678000Z"
    discovery = audit_event(
        request_info("GET", "/apis", {}),
        ADMIN,
        request_uri="/apis",
        code=200,
        user_agent="",
        source_ip="",
        received=at,
        completed=at,
    )
    assert "objectRef" not in discovery and discovery["verb"] == "get"


def test_tokens_name_their_service_account_and_nothing_else() -> None:
    tokens = Tokens()
    one, two = tokens.issue("a", "one"), tokens.issue("a", "one")
    assert one != two
    assert tokens.user(f"Bearer {one}") == service_account_user("a", "one")
    assert tokens.user(f"bearer {two}").username == "system:serviceaccount:a:one"
    for header in (None, "", "Bearer ironlb-lab", f"Basic {one}", "Bearer"):
        assert tokens.user(header) == ADMIN


def test_token_request_answer_and_refusals() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    answer = token_request({"spec": {"audiences": ["x"]}}, "tok", now, "a", "sa")
    assert answer["status"] == {"token": "tok", "expirationTimestamp": "2026-01-01T01:00:00Z"}
    assert answer["spec"]["expirationSeconds"] == 3600 and answer["spec"]["audiences"] == ["x"]
    assert token_request({}, "t", now, "a", "sa")["metadata"] == {"name": "sa", "namespace": "a"}
    for body, says in (
        ([], "must be an object"),
        ({"spec": []}, "spec: Invalid value"),
        ({"spec": {"expirationSeconds": "1h"}}, "must be an integer"),
        ({"spec": {"expirationSeconds": True}}, "must be an integer"),
        ({"spec": {"expirationSeconds": 599}}, "less than 10 minutes"),
        ({"spec": {"expirationSeconds": 2**33}}, r"larger than 2\^32"),
    ):
        with pytest.raises(TokenRequestError, match=says):
            token_request(body, "t", now, "a", "sa")


def test_audit_log_appends_whole_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.log"
    log = AuditLog(path, keep=False)
    log.record({"verb": "get", "n": 1})
    log.record({"verb": "list", "n": 2})
    log.close()
    again = AuditLog(path)
    again.record({"verb": "watch", "n": 3})
    again.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2, 3]
    assert again.events == [{"verb": "watch", "n": 3}]
