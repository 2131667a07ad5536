"""RBAC rule matching as kube-apiserver's authorizer does it, bindings per ServiceAccount,
and the granted-against-used comparison the chart's RBAC test relies on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironlb.lab.apiserver.audit import RequestInfo, audit_event, event_request, request_info
from ironlb.lab.apiserver.identity import ADMIN
from ironlb.lab.rbac import Grant, Rule, allows, compare, parse_rule, rules_for


def req(method: str, path: str, **query: str) -> RequestInfo:
    return request_info(method, path, query)


LEASES = Rule(("get", "update"), ("coordination.k8s.io",), ("leases",), ("ironlb",))
STATUS = Rule(("patch",), ("ironlb.io",), ("ipaddresspools/status",))


@pytest.mark.parametrize(
    ("rule", "request_", "allowed"),
    [
        (LEASES, req("GET", "/apis/coordination.k8s.io/v1/namespaces/s/leases/ironlb"), True),
        (LEASES, req("PUT", "/apis/coordination.k8s.io/v1/namespaces/s/leases/ironlb"), True),
        (LEASES, req("GET", "/apis/coordination.k8s.io/v1/namespaces/s/leases/other"), False),
        (LEASES, req("GET", "/apis/coordination.k8s.io/v1/namespaces/s/leases"), False),
        (LEASES, req("POST", "/apis/coordination.k8s.io/v1/namespaces/s/leases"), False),
        (LEASES, req("DELETE", "/apis/coordination.k8s.io/v1/namespaces/s/leases/ironlb"), False),
        (LEASES, req("GET", "/api/v1/namespaces/s/leases/ironlb"), False),  # wrong group
        (STATUS, req("PATCH", "/apis/ironlb.io/v1alpha1/ipaddresspools/p/status"), True),
        (STATUS, req("PATCH", "/apis/ironlb.io/v1alpha1/ipaddresspools/p"), False),
        (
            Rule(("patch",), ("ironlb.io",), ("ipaddresspools",)),
            req("PATCH", "/apis/ironlb.io/v1alpha1/ipaddresspools/p/status"),
            False,
        ),
        (
            Rule(("get",), ("",), ("*/status",)),
            req("GET", "/api/v1/namespaces/a/pods/p/status"),
            True,
        ),
        (
            Rule(("get",), ("",), ("pods/*",)),
            req("GET", "/api/v1/namespaces/a/pods/p/status"),
            True,
        ),
        (Rule(("get",), ("",), ("pods/*",)), req("GET", "/api/v1/namespaces/a/pods/p"), False),
        (
            Rule(("*",), ("*",), ("*",)),
            req("DELETE", "/apis/apps/v1/namespaces/a/deployments"),
            True,
        ),
        (
            Rule(("watch",), ("",), ("secrets",), ("hb",)),
            req("GET", "/api/v1/namespaces/a/secrets", watch="1", fieldSelector="metadata.name=hb"),
            True,
        ),
        (Rule(("get",), non_resource_urls=("/healthz",)), req("GET", "/healthz"), True),
        (Rule(("get",), non_resource_urls=("/apis/*",)), req("GET", "/apis/apps"), True),
        (Rule(("get",), non_resource_urls=("/apis",)), req("GET", "/apis/apps"), False),
        (Rule(("get",), ("",), ("pods",)), req("GET", "/healthz"), False),
    ],
)
def test_rules_allow_what_the_rbac_authorizer_allows(
    rule: Rule, request_: RequestInfo, allowed: bool
) -> None:
    assert allows(rule, request_) is allowed


def role(
    kind: str, name: str, rules: list[dict[str, Any]], ns: str | None = None
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(
    kind: str, name: str, ref_kind: str, ref: str, sa: tuple[str, str], ns: str | None = None
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref},
        "subjects": [{"kind": "ServiceAccount", "name": sa[1], "namespace": sa[0]}],
    }


SA = ("ironlb-system", "speaker")
OBJECTS = [
    role(
        "ClusterRole",
        "read",
        [{"verbs": ["list", "watch"], "apiGroups": [""], "resources": ["services", "nodes"]}],
    ),
    role(
        "Role",
        "leases",
        [
            {
                "verbs": ["get", "update"],
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
            }
        ],
        "ironlb-system",
    ),
    role(
        "ClusterRole", "events", [{"verbs": ["create"], "apiGroups": [""], "resources": ["events"]}]
    ),
    binding("ClusterRoleBinding", "read", "ClusterRole", "read", SA),
    binding("RoleBinding", "leases", "Role", "leases", SA, "ironlb-system"),
    # a RoleBinding to a ClusterRole grants it in the binding's namespace only
    binding("RoleBinding", "events", "ClusterRole", "events", SA, "ironlb-system"),
    # bindings of others, and to a missing role, grant this account nothing
    binding("ClusterRoleBinding", "other", "ClusterRole", "read", ("ironlb-system", "controller")),
    binding("ClusterRoleBinding", "gone", "ClusterRole", "missing", SA),
    {"kind": "ConfigMap", "metadata": {"name": "x"}},
]


def test_bindings_grant_their_role_where_they_are() -> None:
    grants = rules_for(SA, OBJECTS)
    assert [(g.via, g.namespace) for g in grants] == [
        ("ClusterRoleBinding read", None),
        ("RoleBinding ironlb-system/leases", "ironlb-system"),
        ("RoleBinding ironlb-system/events", "ironlb-system"),
    ]
    assert rules_for(("other", "speaker"), OBJECTS) == []


def test_compare_lists_what_was_used_ungranted_and_granted_unused() -> None:
    grants = rules_for(SA, OBJECTS)
    requests = [
        req("GET", "/api/v1/services", watch="true"),
        req("GET", "/api/v1/services"),
        req("GET", "/api/v1/nodes"),
        req("GET", "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases/n1"),
        req("PUT", "/apis/coordination.k8s.io/v1/namespaces/ironlb-system/leases/n1"),
        req("POST", "/api/v1/namespaces/default/events"),  # events granted in ironlb-system only
        req("POST", "/api/v1/namespaces/default/events"),
        req("GET", "/apis"),  # discovery: never counted
    ]
    found = compare(requests, grants)
    assert not found.exact
    assert list(found.ungranted.values()) == [2]
    (missing,) = found.ungranted
    assert (missing.verb, missing.resource, missing.namespace) == ("create", "events", "default")
    assert [(v, r) for _, v, _, r in found.unused] == [("watch", "nodes"), ("create", "events")]
    text = found.report()
    assert "used, not granted (2x): create core/events in default" in text
    assert (
        "granted, not used: watch core/nodes "
        "(rule list,watch core/services,nodes via ClusterRoleBinding read)" in text
    )
    requests.append(req("GET", "/api/v1/nodes", watch="1"))
    requests.append(req("POST", "/api/v1/namespaces/ironlb-system/events"))
    requests = [r for r in requests if r.namespace != "default"]
    assert compare(requests, grants).exact and compare(requests, grants).report() == ""


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"apiGroups": [""]}, "verbs must not be empty"),
        ({"verbs": "get"}, "verbs must be a list of strings"),
        ({"verbs": ["get"], "resources": [1]}, "resources must be a list of strings"),
    ],
)
def test_malformed_rules_are_refused_naming_the_field(rule: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rule(rule)


paths = st.lists(
    st.sampled_from(
        ["api", "apis", "v1", "apps", "namespaces", "a", "pods", "p", "status", "watch"]
    ),
    max_size=7,
).map(lambda parts: "/" + "/".join(parts))


@given(st.sampled_from(["GET", "PUT", "POST", "PATCH", "DELETE"]), paths, st.booleans())
def test_an_audit_event_gives_back_the_request_rbac_saw(
    method: str, path: str, watching: bool
) -> None:
    from datetime import UTC, datetime

    info = request_info(method, path, {"watch": "true"} if watching else {})
    now = datetime.now(UTC)
    event = audit_event(
        info,
        ADMIN,
        request_uri=path + "?x=1",
        code=200,
        user_agent="",
        source_ip="",
        received=now,
        completed=now,
    )
    back = event_request(event)
    if info.is_resource_request:
        assert back == RequestInfo(
            info.verb,
            "",
            info.group,
            info.version,
            info.resource,
            info.subresource,
            info.namespace,
            info.name,
        )
    else:
        assert back == RequestInfo(info.verb, path)
    rule = Rule(("*",), ("*",), ("*", "*/status"), non_resource_urls=("*",))
    assert allows(rule, back)
    assert compare([back], [Grant(rule, None, "x")]).ungranted == {}
