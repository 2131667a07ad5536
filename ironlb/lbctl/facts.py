"""Read from the cluster everything ``lbctl status`` and ``lbctl doctor`` judge (the I/O half).

:func:`gather` makes the API calls and returns a :class:`Facts` of plain dicts
as the API sent them; the judging (:mod:`ironlb.lbctl.overview`,
:mod:`ironlb.lbctl.doctor`) is pure and works on a :class:`Facts` alone, so
it is testable without a cluster. ``status`` asks for the few objects its
screen shows; ``doctor`` (``full=True``) also reads the heartbeat Secret,
the server version, every CRD, Deployments and DaemonSets in all
namespaces, the Pods of ``kube-system`` (where kube-vip runs as a static
Pod) and Cilium's load-balancer objects when Cilium's CRDs exist.

For ``doctor``, a read the user is not allowed (403 Forbidden: RBAC) does
not end the run: it is recorded in :attr:`Facts.forbidden` and the checks
that needed it say so (``warn``), while the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from ironlb.lbctl.client import CRD_NAME, VERSION, Cluster, LbctlError

__all__ = [
    "CILIUM_L2",
    "CILIUM_POOLS",
    "CONTROLLER_LEASE",
    "HEARTBEAT_SECRET",
    "Facts",
    "crd_storage_version",
    "gather",
]

#: The controller's election Lease (``ironlb.operator.controller_runtime.LEASE_NAME``).
CONTROLLER_LEASE = "ironlb-controller"
#: The speakers' heartbeat key (``ironlb.speaker.heartbeat.SECRET_NAME``).
HEARTBEAT_SECRET = "ironlb-heartbeat"
#: Cilium's CRDs that assign (LB IPAM pools) or announce (L2 policies) LoadBalancer addresses.
CILIUM_POOLS = "ciliumloadbalancerippools.cilium.io"
CILIUM_L2 = "ciliuml2announcementpolicies.cilium.io"
CILIUM_CRDS = (CILIUM_POOLS, CILIUM_L2)

Obj = dict[str, Any]
T = TypeVar("T")


@dataclass
class Facts:
    """What the API said; ``None`` / empty where an object is absent or was not asked for."""

    namespace: str
    crds: list[Obj] = field(default_factory=list)
    controller_lease: Obj | None = None
    speaker_leases: list[Obj] = field(default_factory=list)
    nodes: list[Obj] = field(default_factory=list)
    pools: list[Obj] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    events: list[Obj] = field(default_factory=list)
    # doctor only
    full: bool = False
    secret: Obj | None = None
    version: Obj | None = None
    workloads: list[Obj] = field(default_factory=list)
    system_pods: list[Obj] = field(default_factory=list)
    cilium_objects: dict[str, list[Obj]] = field(default_factory=dict)
    #: what could not be read for lack of permission: key -> the API's message
    forbidden: dict[str, str] = field(default_factory=dict)

    def crd(self, name: str) -> Obj | None:
        """The CRD called ``name`` (``<plural>.<group>``), or None."""
        return next((c for c in self.crds if (c.get("metadata") or {}).get("name") == name), None)

    @property
    def crd_registered(self) -> bool:
        return self.crd(CRD_NAME) is not None

    @property
    def crd_serves_ours(self) -> bool:
        """The IPAddressPool CRD serves the version lbctl speaks (so pools can be listed)."""
        crd = self.crd(CRD_NAME) or {}
        versions = (crd.get("spec") or {}).get("versions") or []
        return any(v.get("name") == VERSION and v.get("served") for v in versions)


def crd_storage_version(crd: Obj) -> str | None:
    """The served version a CRD stores (else its first served one), for listing its objects."""
    versions = [v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
    stored = [v for v in versions if v.get("storage")]
    chosen = (stored or versions or [None])[0]
    return None if chosen is None else str(chosen.get("name"))


def _allowed(facts: Facts, key: str, read: Callable[[], T], default: T) -> T:
    """``read()``, or ``default`` with ``facts.forbidden[key]`` set when the API says 403."""
    try:
        return read()
    except LbctlError as exc:
        if exc.status != 403:
            raise
        facts.forbidden[key] = exc.message
        return default


def gather(cluster: Cluster, namespace: str, *, full: bool = False) -> Facts:
    """Read the facts; ``namespace`` holds the controller Lease, speaker Leases and Secret.

    Raises :class:`LbctlError` on an API failure other than a missing object.
    """
    facts = Facts(namespace=namespace, full=full)
    facts.crds = cluster.list_crds()
    facts.controller_lease = cluster.get_lease(namespace, CONTROLLER_LEASE)
    try:
        facts.speaker_leases = cluster.list_leases(namespace)
    except LbctlError as exc:
        if exc.status != 404:
            raise
    facts.nodes = _allowed(facts, "nodes", cluster.list_nodes, []) if full else cluster.list_nodes()
    if facts.crd_serves_ours:
        facts.pools = cluster.list_pools()
    facts.services = cluster.list_services()
    facts.events = cluster.list_service_events()
    if not full:
        return facts
    facts.secret = _allowed(
        facts, "secret", lambda: cluster.get_secret(namespace, HEARTBEAT_SECRET), None
    )
    facts.version = cluster.server_version()
    facts.workloads = _allowed(facts, "workloads", cluster.list_workloads, [])
    try:
        facts.system_pods = _allowed(facts, "pods", lambda: cluster.list_pods("kube-system"), [])
    except LbctlError as exc:
        if exc.status != 404:
            raise
    for name in CILIUM_CRDS:
        crd = facts.crd(name)
        version = None if crd is None else crd_storage_version(crd)
        if crd is not None and version is not None:
            plural, group = name.split(".", 1)
            facts.cilium_objects[name] = _allowed(
                facts, "cilium", partial(cluster.list_cluster_objects, group, version, plural), []
            )
    return facts
