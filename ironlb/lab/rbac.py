"""RBAC as kube-apiserver evaluates it, and the check of granted against used.

The chart must grant the controller and the speakers exactly what they use
(issue 10: "nothing used that is not granted, nothing granted that is not
used"). The lab API records who did what (:mod:`ironlb.lab.apiserver.audit`);
this module answers, for a ServiceAccount, which rules the Roles,
ClusterRoles and bindings give it (:func:`rules_for`), whether a rule allows
a request (:func:`allows`), and which requests no rule allows and which
rules no request used (:func:`compare`).

The matching follows Kubernetes' RBAC authorizer
(``plugin/pkg/auth/authorizer/rbac``, documented under "Using RBAC
Authorization"): a rule matches when its ``verbs``, ``apiGroups`` and
``resources`` each contain the request's value or ``*``; a subresource is
named ``resource/subresource`` (``*/status`` and ``pods/*`` match too);
``resourceNames``, when set, must contain the request's name (so a rule with
names never allows ``list``/``watch`` without a name, nor ``create``);
``nonResourceURLs`` match paths exactly or by a trailing ``*`` prefix. A
RoleBinding grants its rules in its own namespace only (also when it points
at a ClusterRole); a ClusterRoleBinding grants them everywhere. Aggregated
ClusterRoles are not expanded. Pure: objects in, answers out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ironlb.lab.apiserver.audit import RequestInfo

__all__ = ["Comparison", "Grant", "Rule", "allows", "compare", "parse_rule", "rules_for"]


@dataclass(frozen=True)
class Rule:
    """One ``PolicyRule`` (rbac.authorization.k8s.io/v1), normalised to tuples."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def describe(self) -> str:
        """A one-line form such as ``get,list coordination.k8s.io/leases [ironlb]``."""
        if self.non_resource_urls:
            return f"{','.join(self.verbs)} {','.join(self.non_resource_urls)}"
        groups = ",".join(g or "core" for g in self.api_groups)
        names = f" [{','.join(self.resource_names)}]" if self.resource_names else ""
        return f"{','.join(self.verbs)} {groups}/{','.join(self.resources)}{names}"


@dataclass(frozen=True)
class Grant:
    """A rule as granted: everywhere (``namespace`` None) or in one namespace, and by
    which binding (``via``, e.g. ``RoleBinding ironlb-system/ironlb-speaker``)."""

    rule: Rule
    namespace: str | None
    via: str


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field} must be a list of strings")
    return tuple(value)


def parse_rule(rule: Mapping[str, Any]) -> Rule:
    """A ``PolicyRule`` object as a :class:`Rule`. Raises ValueError naming the field
    for a rule without verbs or with a field that is not a list of strings."""
    verbs = _strings(rule.get("verbs"), "verbs")
    if not verbs:
        raise ValueError("verbs must not be empty")
    return Rule(
        verbs=verbs,
        api_groups=_strings(rule.get("apiGroups"), "apiGroups"),
        resources=_strings(rule.get("resources"), "resources"),
        resource_names=_strings(rule.get("resourceNames"), "resourceNames"),
        non_resource_urls=_strings(rule.get("nonResourceURLs"), "nonResourceURLs"),
    )


def _matching_resources(rule: Rule, info: RequestInfo) -> list[str]:
    """The entries of ``rule.resources`` that name the request's resource."""
    wanted = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    found = []
    for resource in rule.resources:
        if (
            resource in ("*", wanted)
            or (info.subresource and resource == f"*/{info.subresource}")
            or (resource == f"{info.resource}/*" and info.subresource)
        ):
            found.append(resource)
    return found


def allows(rule: Rule, info: RequestInfo) -> bool:
    """True when ``rule`` allows the request ``info`` (RBAC's ``RuleAllows``)."""
    if "*" not in rule.verbs and info.verb not in rule.verbs:
        return False
    if not info.is_resource_request:
        return any(
            url == "*" or url == info.path or (url.endswith("*") and info.path.startswith(url[:-1]))
            for url in rule.non_resource_urls
        )
    if "*" not in rule.api_groups and info.group not in rule.api_groups:
        return False
    if not _matching_resources(rule, info):
        return False
    return not rule.resource_names or info.name in rule.resource_names


def _subject_matches(subject: Mapping[str, Any], namespace: str, name: str) -> bool:
    return (
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == name
        and subject.get("namespace") == namespace
    )


def rules_for(
    service_account: tuple[str, str], objects: Iterable[Mapping[str, Any]]
) -> list[Grant]:
    """The rules ``(namespace, name)``'s ServiceAccount is granted by ``objects``
    (any mix of Role, ClusterRole, RoleBinding, ClusterRoleBinding; other kinds are
    ignored). A binding whose role is missing grants nothing. Raises ValueError for a
    malformed rule (see :func:`parse_rule`)."""
    sa_namespace, sa_name = service_account
    roles: dict[tuple[str, str, str], list[Rule]] = {}
    bindings: list[Mapping[str, Any]] = []
    for obj in objects:
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        if kind in ("Role", "ClusterRole"):
            ns = meta.get("namespace", "") if kind == "Role" else ""
            rules = [parse_rule(r) for r in obj.get("rules") or []]
            roles[(str(kind), str(ns), str(meta.get("name", "")))] = rules
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            bindings.append(obj)
    grants: list[Grant] = []
    for binding in bindings:
        subjects: Sequence[Mapping[str, Any]] = binding.get("subjects") or []
        if not any(_subject_matches(s, sa_namespace, sa_name) for s in subjects):
            continue
        meta = binding.get("metadata") or {}
        ref = binding.get("roleRef") or {}
        cluster_wide = binding.get("kind") == "ClusterRoleBinding"
        namespace = None if cluster_wide else str(meta.get("namespace", ""))
        role_ns = "" if ref.get("kind") == "ClusterRole" else (namespace or "")
        role = roles.get((str(ref.get("kind")), role_ns, str(ref.get("name", ""))), [])
        via = f"{binding.get('kind')} {meta.get('namespace', '') + '/' if namespace else ''}"
        via += str(meta.get("name", ""))
        grants.extend(Grant(rule, namespace, via) for rule in role)
    return grants


def _grant_allows(grant: Grant, info: RequestInfo) -> bool:
    if grant.namespace is not None and info.namespace != grant.namespace:
        return False
    return allows(grant.rule, info)


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found: requests no grant allows (with how often each was
    made) and grants no request used, per ``(grant, verb, apiGroup, resource)``: a
    rule granting ``get,list`` on ``services`` and ``endpoints`` of which only
    ``get services`` was used lists the other three as unused."""

    ungranted: dict[RequestInfo, int]
    unused: list[tuple[Grant, str, str, str]]

    @property
    def exact(self) -> bool:
        return not self.ungranted and not self.unused

    def report(self) -> str:
        """Both lists as text, one line each (empty when :attr:`exact`)."""
        lines = [
            f"used, not granted ({count}x): {info.verb} {info.group or 'core'}/"
            f"{info.resource}{'/' + info.subresource if info.subresource else ''}"
            f"{' ' + info.name if info.name else ''} in {info.namespace or '(cluster)'}"
            for info, count in sorted(self.ungranted.items(), key=lambda kv: repr(kv[0]))
        ]
        lines += [
            f"granted, not used: {verb} {group or 'core'}/{resource} "
            f"(rule {grant.rule.describe()} via {grant.via})"
            for grant, verb, group, resource in self.unused
        ]
        return "\n".join(lines)


def _key(info: RequestInfo) -> RequestInfo:
    """A request with what RBAC does not look at left out (path of resource requests)."""
    return RequestInfo(
        info.verb,
        "" if info.is_resource_request else info.path,
        info.group,
        "",
        info.resource,
        info.subresource,
        info.namespace,
        info.name,
    )


def compare(requests: Iterable[RequestInfo], grants: Sequence[Grant]) -> Comparison:
    """Used against granted: each resource request must be allowed by some grant, and
    each verb x apiGroup x resource a grant names must allow some request.
    Non-resource requests (discovery, ``/version``) are left out: every
    authenticated user may make them (the ``system:discovery`` ClusterRole)."""
    ungranted: dict[RequestInfo, int] = {}
    used: set[tuple[int, str, str, str]] = set()
    for info in requests:
        if not info.is_resource_request:
            continue
        matched = False
        for i, grant in enumerate(grants):
            if not _grant_allows(grant, info):
                continue
            matched = True
            rule = grant.rule
            verb = info.verb if info.verb in rule.verbs else "*"
            group = info.group if info.group in rule.api_groups else "*"
            for resource in _matching_resources(rule, info):
                used.add((i, verb, group, resource))
        if not matched:
            key = _key(info)
            ungranted[key] = ungranted.get(key, 0) + 1
    unused = [
        (grant, verb, group, resource)
        for i, grant in enumerate(grants)
        if not grant.rule.non_resource_urls
        for verb in grant.rule.verbs
        for group in grant.rule.api_groups
        for resource in grant.rule.resources
        if (i, verb, group, resource) not in used
    ]
    return Comparison(ungranted, unused)
