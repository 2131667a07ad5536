"""Resource types the local API serves, their discovery documents, and CRD registration.

A :class:`ResourceType` is one (group, version, plural) with its kind, scope
and whether it has a ``status`` subresource. The :class:`Registry` starts with
the built-in types the lab needs and adds/removes the types a
CustomResourceDefinition declares. Pure: no I/O, no storage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ironlb.lab.apiserver.scale import SCALABLE, SCALE_GROUP, SCALE_KIND, SCALE_VERSION

# storage keys (group, plural) that the server treats specially
NAMESPACES = ("", "namespaces")
SERVICES = ("", "services")
SECRETS = ("", "secrets")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    has_status: bool = False
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    list_kind: str = ""
    crd_name: str | None = None  # set for types a CRD declared
    verbs: tuple[str, ...] = ALL_VERBS
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of every version of one group+plural share one storage."""
        return (self.group, self.plural)


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    *,
    status: bool = False,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        has_status=status,
        short_names=short,
        categories=categories,
    )


#: The ``all`` category (``kubectl get all``) of the kinds the lab serves, as in kube-apiserver.
ALL = ("all",)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", False, status=True, short=("ns",)),
    _builtin("", "v1", "services", "Service", True, status=True, short=("svc",), categories=ALL),
    _builtin("", "v1", "endpoints", "Endpoints", True, short=("ep",)),
    _builtin("", "v1", "nodes", "Node", False, status=True, short=("no",)),
    _builtin("", "v1", "pods", "Pod", True, status=True, short=("po",), categories=ALL),
    _builtin("", "v1", "configmaps", "ConfigMap", True, short=("cm",)),
    _builtin("", "v1", "secrets", "Secret", True),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, short=("sa",)),
    _builtin("", "v1", "events", "Event", True, short=("ev",)),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        status=True,
        short=("deploy",),
        categories=ALL,
    ),
    _builtin(
        "apps", "v1", "daemonsets", "DaemonSet", True, status=True, short=("ds",), categories=ALL
    ),
    # Served (so clients that map Deployments to their ReplicaSets, such as Helm v4's
    # kstatus waiter, find the kind) but not made: the lab's Deployment controller owns
    # its Pods directly.
    _builtin("apps", "v1", "replicasets", "ReplicaSet", True, status=True, short=("rs",)),
    # Stored and served like any object (the lab API authorizes nothing): what a chart
    # such as charts/ironlb installs besides its workloads.
    _builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        status=True,
        short=("pdb",),
    ),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", True),
    _builtin("events.k8s.io", "v1", "events", "Event", True, short=("ev",)),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        status=True,
        short=("crd", "crds"),
    ),
    _builtin(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
    ),
    _builtin(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
    ),
)

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key (descending = preferred) following Kubernetes' version ordering."""
    match = _VERSION_RE.match(version)
    if not match:
        return (0, 0, 0)
    major = int(match[1])
    stage = {"alpha": 1, "beta": 2}.get(match[2] or "", 3)
    minor = int(match[3] or 0)
    return (stage, major, minor)


class RegistryError(ValueError):
    """A CRD is not acceptable; ``field`` names the offending field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.problem = message


def _require_str(mapping: Mapping[str, Any], key: str, path: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{path}.{key}", "Required value")
    return value


def crd_types(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The served resource types a CustomResourceDefinition body declares (or RegistryError)."""
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        raise RegistryError("spec", "Required value")
    group = _require_str(spec, "group", "spec")
    names = spec.get("names")
    if not isinstance(names, Mapping):
        raise RegistryError("spec.names", "Required value")
    plural = _require_str(names, "plural", "spec.names")
    kind = _require_str(names, "kind", "spec.names")
    singular = names.get("singular") or kind.lower()
    if not _DNS_LABEL.match(plural):
        raise RegistryError("spec.names.plural", f"Invalid value: {plural!r}: must be lowercase")
    name = (crd.get("metadata") or {}).get("name")
    if name != f"{plural}.{group}":
        raise RegistryError(
            "metadata.name", f"Invalid value: {name!r}: must be spec.names.plural+'.'+spec.group"
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        raise RegistryError("spec.scope", f'Unsupported value: {scope!r}: "Cluster", "Namespaced"')
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise RegistryError("spec.versions", "Required value")
    if sum(1 for v in versions if isinstance(v, Mapping) and v.get("storage")) != 1:
        raise RegistryError(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        )
    result: list[ResourceType] = []
    for index, version in enumerate(versions):
        if not isinstance(version, Mapping):
            raise RegistryError(f"spec.versions[{index}]", "Invalid value: must be an object")
        version_name = _require_str(version, "name", f"spec.versions[{index}]")
        if not version.get("served", False):
            continue
        subresources = version.get("subresources") or {}
        result.append(
            ResourceType(
                group=group,
                version=version_name,
                plural=plural,
                singular=str(singular),
                kind=kind,
                namespaced=scope == "Namespaced",
                has_status=isinstance(subresources, Mapping) and "status" in subresources,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                list_kind=str(names.get("listKind") or f"{kind}List"),
                crd_name=str(name),
            )
        )
    return result


def crd_status(crd: Mapping[str, Any], stamp: str) -> dict[str, Any]:
    """The status kube-apiserver gives an accepted CRD (Established, NamesAccepted)."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    condition = {"status": "True", "lastTransitionTime": stamp}
    return {
        "conditions": [
            {
                **condition,
                "type": "NamesAccepted",
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                **condition,
                "type": "Established",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "acceptedNames": names,
        "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
    }


class Registry:
    """The live set of resource types, keyed by (group, version, plural)."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in types:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def find(self, group: str, plural: str) -> ResourceType | None:
        """Any served version of group+plural (the preferred one)."""
        candidates = [t for t in self._types.values() if t.group == group and t.plural == plural]
        if not candidates:
            return None
        return max(candidates, key=lambda t: version_priority(t.version))

    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def register_crd(self, crd: Mapping[str, Any]) -> list[ResourceType]:
        """Replace whatever this CRD registered before with what it declares now."""
        new_types = crd_types(crd)
        name = str((crd.get("metadata") or {}).get("name"))
        for new in new_types:
            old = self._types.get((new.group, new.version, new.plural))
            if old is not None and old.crd_name != name:
                raise RegistryError(
                    "spec.names.plural", f"{new.plural}.{new.group} is already served"
                )
        self.unregister_crd(name)
        for new in new_types:
            self._types[(new.group, new.version, new.plural)] = new
        return new_types

    def unregister_crd(self, name: str) -> list[ResourceType]:
        gone = [k for k, t in self._types.items() if t.crd_name == name]
        return [self._types.pop(k) for k in gone]

    # --- discovery documents -------------------------------------------------

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions, preferred first; the core group is ""."""
        groups: dict[str, set[str]] = {}
        for rtype in self._types.values():
            groups.setdefault(rtype.group, set()).add(rtype.version)
        return {
            g: sorted(vs, key=version_priority, reverse=True) for g, vs in sorted(groups.items())
        }

    def api_versions(self) -> dict[str, Any]:
        """The body of ``GET /api``."""
        return {
            "kind": "APIVersions",
            "versions": self.group_versions().get("", ["v1"]),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not group or not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        """The body of ``GET /apis``."""
        groups = [self.api_group(g) for g in self.group_versions() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """The body of ``GET /api/v1`` or ``GET /apis/<group>/<version>``."""
        types = [t for t in self._types.values() if t.group == group and t.version == version]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rtype in sorted(types, key=lambda t: t.plural):
            entry: dict[str, Any] = {
                "name": rtype.plural,
                "singularName": rtype.singular,
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": list(rtype.verbs),
            }
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            if rtype.has_status:
                resources.append(
                    {
                        "name": f"{rtype.plural}/status",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "kind": rtype.kind,
                        "verbs": list(STATUS_VERBS),
                    }
                )
            if rtype.storage_key in SCALABLE:
                resources.append(
                    {
                        "name": f"{rtype.plural}/scale",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "group": SCALE_GROUP,
                        "version": SCALE_VERSION,
                        "kind": SCALE_KIND,
                        "verbs": list(STATUS_VERBS),
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }
