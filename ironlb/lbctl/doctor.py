"""``lbctl doctor``: the checks a support engineer runs, each a verdict, a detail and the fix.

Pure: every check takes a :class:`~ironlb.lbctl.facts.Facts` (read by
:func:`ironlb.lbctl.facts.gather`) and the current time, and returns one
:class:`Check`. A verdict is ``ok``, ``warn`` (works, but someone should
know) or ``fail`` (something is broken or will be); ``doctor`` exits 1 when
any check fails. The fix is a command to run, or the one thing to do. A
check whose facts the user may not read (RBAC 403, see
:attr:`~ironlb.lbctl.facts.Facts.forbidden`) is a ``warn`` saying so.

Why the checks are these:

- ``crd``: lbctl reads and writes ``ipaddresspools.ironlb.io`` ``v1alpha1``;
  a CRD without that version served, or without the fields lbctl shows,
  is an older ironlb.
- ``controller``, ``speakers``: the Leases are the authority on who runs;
  a Ready Node without a live speaker cannot announce VIPs.
- ``heartbeat-secret``: a speaker refuses to start without it.
- ``pools``: the same parsing and overlap rule as the admission webhook
  (oldest pool wins), plus what the controller wrote in the conditions.
- ``services``: a pending Service and the newest Warning Event saying why.
- ``ip-mode``: ironlb writes ``ipMode: Proxy`` so kube-proxy leaves VIP
  traffic to ironlb. The ``LoadBalancerIPMode`` feature gate is alpha (off)
  in 1.29, beta and on by default from 1.30, GA in 1.32 (Kubernetes docs,
  kubernetes/website ``content/en/docs/reference/command-line-tools-reference/
  feature-gates/LoadBalancerIPMode.md``; KEP-1860). Where it is off the API
  server drops the field and kube-proxy captures traffic to the VIP itself.
- ``metallb``, ``kube-vip``, ``cilium``, ``foreign-addresses``: another
  implementation that also serves Services without a ``loadBalancerClass``
  fights ironlb over the same Services (both write ``status.loadBalancer``,
  both answer ARP).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ironlb.lbctl.client import CRD_NAME, VERSION
from ironlb.lbctl.facts import CILIUM_L2, CILIUM_POOLS, CONTROLLER_LEASE, HEARTBEAT_SECRET, Facts
from ironlb.lbctl.health import handled_by_ironlb, lease_freshness
from ironlb.lbctl.overview import Speaker, speakers
from ironlb.lbctl.render import (
    ALLOCATED_FROM_POOL,
    external_ips,
    latest_warning,
    pool_state,
    table,
)

__all__ = ["CHECKS", "VERDICTS", "Check", "doctor_table", "run_checks"]

VERDICTS = ("ok", "warn", "fail")
CRD_FILE = "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
#: Fields of the CRD schema lbctl shows; a CRD without them predates this lbctl.
EXPECTED_SPEC = ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation", "l2")
EXPECTED_STATUS = ("assignedIPv4", "assignedIPv6", "availableIPv4", "availableIPv6", "conditions")
SPEAKER_DAEMONSET = "ironlb-speaker"
#: First Kubernetes minor release where ``ipMode`` is honoured by default (beta, on).
IP_MODE_MINOR = 30


@dataclass(frozen=True)
class Check:
    """One verdict: ``name`` (stable, for scripts), ``verdict`` in :data:`VERDICTS`,
    a one-line ``detail``, and ``fix`` (empty when ok)."""

    name: str
    verdict: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail, "fix": self.fix}


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _listed(names: Sequence[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _cannot(facts: Facts, name: str, key: str, what: str, verb: str) -> Check | None:
    """A ``warn`` when the read ``key`` was forbidden (RBAC), else None."""
    if key not in facts.forbidden:
        return None
    return Check(
        name,
        "warn",
        f"not allowed to read {what}, so this was not checked: {facts.forbidden[key]}",
        f"kubectl auth can-i {verb}; run lbctl doctor as a user who may",
    )


# --- ironlb itself -------------------------------------------------------------------------------


def check_crd(facts: Facts, now: datetime) -> Check:
    crd = facts.crd(CRD_NAME)
    fix = f"kubectl apply --server-side -f {CRD_FILE}"
    if crd is None:
        return Check("crd", "fail", f"CRD {CRD_NAME} is not installed", fix)
    versions = {str(v.get("name")): v for v in (crd.get("spec") or {}).get("versions") or []}
    mine = versions.get(VERSION)
    if mine is None or not mine.get("served"):
        have = ",".join(sorted(n for n, v in versions.items() if v.get("served"))) or "none"
        return Check(
            "crd", "fail", f"CRD {CRD_NAME} does not serve {VERSION} (serves: {have})", fix
        )
    props = ((mine.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {}
    spec = (props.get("spec") or {}).get("properties") or {}
    status = (props.get("status") or {}).get("properties") or {}
    missing = [f"spec.{f}" for f in EXPECTED_SPEC if f not in spec]
    missing += [f"status.{f}" for f in EXPECTED_STATUS if f not in status]
    if "status" not in (mine.get("subresources") or {}):
        missing.append("the status subresource")
    if missing:
        return Check(
            "crd",
            "warn",
            f"CRD {CRD_NAME} {VERSION} is older than this lbctl: no {_listed(missing)}",
            fix,
        )
    return Check("crd", "ok", f"CRD {CRD_NAME} serves {VERSION}")


def check_controller(facts: Facts, now: datetime) -> Check:
    ref = f"{facts.namespace}/{CONTROLLER_LEASE}"
    fix = (
        f"kubectl -n {facts.namespace} get pods; "
        f"kubectl -n {facts.namespace} logs deployment/ironlb-controller"
    )
    if facts.controller_lease is None:
        return Check("controller", "fail", f"no Lease {ref}: no controller has run here", fix)
    holder, left = lease_freshness(facts.controller_lease, now)
    if not holder:
        return Check("controller", "fail", f"Lease {ref} has no holder: no leader", fix)
    if left is None:
        return Check("controller", "fail", f"Lease {ref} has no renewTime/duration", fix)
    if left < 0:
        return Check(
            "controller", "fail", f"leader {holder} stopped renewing {ref} {-left:.0f}s ago", fix
        )
    return Check("controller", "ok", f"leader {holder}, Lease {ref} fresh ({left:.0f}s left)")


def _dig(obj: Mapping[str, Any] | None, *keys: str) -> Mapping[str, Any]:
    """``obj[k1][k2]...``, an empty mapping wherever a level is missing."""
    for key in keys:
        obj = (obj or {}).get(key)
    return obj or {}


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def speaker_daemonset(facts: Facts) -> Mapping[str, Any] | None:
    """The speaker DaemonSet: ``ironlb-speaker`` in the ironlb namespace, if it exists."""
    for obj in facts.workloads:
        meta = obj.get("metadata") or {}
        if (
            obj.get("kind") == "DaemonSet"
            and meta.get("namespace") == facts.namespace
            and meta.get("name") == SPEAKER_DAEMONSET
        ):
            return obj
    return None


def check_speakers(facts: Facts, now: datetime) -> Check:
    """Every Node the speaker DaemonSet's ``nodeSelector`` picks (all Nodes without one)
    must have a live speaker; a NotReady Node without one is only a warning."""
    selector = _dig(speaker_daemonset(facts), "spec", "template", "spec", "nodeSelector")
    wanted = {
        str((n.get("metadata") or {}).get("name"))
        for n in facts.nodes
        if _selector_matches(selector, (n.get("metadata") or {}).get("labels") or {})
    }
    rows: list[Speaker] = speakers(facts.nodes, facts.speaker_leases, now)
    ns = facts.namespace
    denied = _cannot(facts, "speakers", "nodes", "Nodes", "list nodes")
    if denied is not None:
        return denied
    if not facts.nodes:
        return Check("speakers", "warn", "the API lists no Nodes", "kubectl get nodes")

    def why(s: Speaker) -> str:
        if not s.has_lease:
            return f"{s.node} (no Lease)"
        if not s.holder:
            return f"{s.node} (Lease released)"
        return f"{s.node} (last heartbeat {s.heartbeat_age or 0:.0f}s ago)"

    dead_ready = [why(s) for s in rows if s.node in wanted and s.node_ready and not s.live]
    dead_down = [why(s) for s in rows if s.node in wanted and not s.node_ready and not s.live]
    live = sum(1 for s in rows if s.node in wanted and s.live)
    if dead_ready:
        first = dead_ready[0].split(" ", 1)[0]
        return Check(
            "speakers",
            "fail",
            f"{len(dead_ready)} Ready node(s) without a live speaker: {_listed(dead_ready)}",
            f"kubectl -n {ns} get pods -o wide --field-selector spec.nodeName={first}; "
            f"kubectl -n {ns} get lease ironlb-speaker-{first} -o yaml",
        )
    if dead_down:
        return Check(
            "speakers",
            "warn",
            f"{live}/{len(wanted)} live; NotReady node(s) without one: {_listed(dead_down)}",
            "kubectl get nodes; kubectl describe node NODE",
        )
    return Check("speakers", "ok", f"{live}/{len(wanted)} node(s) have a live speaker")


def check_secret(facts: Facts, now: datetime) -> Check:
    from ironlb.speaker.heartbeat import KeyMissing, heartbeat_key_from_secret

    ns = facts.namespace
    fix = (
        f"kubectl -n {ns} create secret generic {HEARTBEAT_SECRET} "
        "--from-literal=key=$(head -c32 /dev/urandom | base64)"
    )
    denied = _cannot(
        facts,
        "heartbeat-secret",
        "secret",
        f"Secret {ns}/{HEARTBEAT_SECRET}",
        f"get secrets -n {ns}",
    )
    if denied is not None:
        return denied
    if facts.secret is None:
        return Check("heartbeat-secret", "fail", f"Secret {ns}/{HEARTBEAT_SECRET} not found", fix)
    try:
        key = heartbeat_key_from_secret(facts.secret, ns)
    except KeyMissing as exc:
        detail = str(exc).split(": create it with", 1)[0]
        replace = f"kubectl -n {ns} delete secret {HEARTBEAT_SECRET}; {fix}"
        return Check("heartbeat-secret", "fail", detail, replace)
    return Check("heartbeat-secret", "ok", f"Secret {ns}/{HEARTBEAT_SECRET}: {len(key)}-byte key")


def check_pools(facts: Facts, now: datetime) -> Check:
    from ironlb.operator.pools import Pool, PoolError, parse_pool, select_non_overlapping

    if not facts.crd_serves_ours:
        return Check(
            "pools", "fail", f"pools cannot be read: no CRD {CRD_NAME} {VERSION}", "see crd"
        )
    if not facts.pools:
        return Check(
            "pools",
            "warn",
            "no IPAddressPool: every LoadBalancer Service will stay pending",
            "lbctl pool create NAME --addresses FIRST-LAST",
        )
    ordered = sorted(
        facts.pools,
        key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", _name(p)),
    )
    problems: list[str] = []
    parsed: list[Pool] = []
    for pool in ordered:
        try:
            parsed.append(parse_pool(_name(pool), pool.get("spec") or {}))
        except PoolError as exc:
            problems.append(f"{_name(pool)}: {exc}")
    _, rejected = select_non_overlapping(parsed)
    problems += [f"{name}: {message}" for name, message in rejected.items()]
    told = {p.split(":", 1)[0] for p in problems}
    for pool in ordered:
        state = pool_state(pool)
        if state.startswith("Invalid") and _name(pool) not in told:
            problems.append(f"{_name(pool)}: {state}")
    if problems:
        first = problems[0].split(":", 1)[0]
        return Check(
            "pools",
            "fail",
            f"{len(problems)} pool problem(s): {'; '.join(problems)}",
            f"lbctl pool show {first}; fix its spec or delete it: lbctl pool delete {first}",
        )
    waiting = [_name(p) for p in ordered if pool_state(p) != "Ready"]
    if waiting:
        return Check(
            "pools",
            "warn",
            f"valid, but not Ready yet (no status from the controller): {_listed(waiting)}",
            "see the controller check",
        )
    return Check("pools", "ok", f"{len(ordered)} pool(s), valid, no overlaps, all Ready")


def check_services(facts: Facts, now: datetime) -> Check:
    pending = [s for s in facts.services if handled_by_ironlb(s) and not external_ips(s)]
    ours = sum(1 for s in facts.services if handled_by_ironlb(s))
    if not pending:
        return Check("services", "ok", f"{ours} LoadBalancer Service(s), none pending")
    reasons = []
    for svc in sorted(pending, key=_name):
        warning = latest_warning(svc, facts.events)
        why = "no Event yet" if warning is None else str(warning.get("reason"))
        if warning is not None and warning.get("message"):
            why += f": {warning.get('message')}"
        reasons.append(f"{_name(svc)} ({why})")
    first = pending[0].get("metadata") or {}
    return Check(
        "services",
        "fail",
        f"{len(pending)} of {ours} pending: {_listed(reasons, 3)}",
        f"lbctl services; kubectl -n {first.get('namespace')} describe service {first.get('name')}",
    )


# --- the cluster ---------------------------------------------------------------------------------


def server_minor(version: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(major, minor)`` from ``/version`` (``minor`` may read ``30+``), else gitVersion."""
    major = re.match(r"\d+", str(version.get("major") or ""))
    minor = re.match(r"\d+", str(version.get("minor") or ""))
    if major and minor:
        return int(major.group()), int(minor.group())
    git = re.match(r"v?(\d+)\.(\d+)", str(version.get("gitVersion") or ""))
    return (int(git.group(1)), int(git.group(2))) if git else None


def check_ip_mode(facts: Facts, now: datetime) -> Check:
    git = str((facts.version or {}).get("gitVersion") or "?")
    parsed = server_minor(facts.version or {})
    effect = "kube-proxy takes the VIP traffic itself, bypassing ironlb's forwarding"
    upgrade = "upgrade Kubernetes to 1.30 or later"
    if parsed is None:
        return Check("ip-mode", "warn", f"server version {git} not understood", "kubectl version")
    if parsed >= (1, IP_MODE_MINOR):
        return Check("ip-mode", "ok", f"Kubernetes {git} honours ipMode: Proxy")
    if parsed == (1, 29):
        return Check(
            "ip-mode",
            "warn",
            f"Kubernetes {git}: LoadBalancerIPMode is alpha (off unless enabled); if off, {effect}",
            f"{upgrade}, or enable --feature-gates=LoadBalancerIPMode=true "
            "on kube-apiserver and kube-proxy",
        )
    return Check(
        "ip-mode", "warn", f"Kubernetes {git} drops ipMode: Proxy (1.30+): {effect}", upgrade
    )


def _mentions(obj: Mapping[str, Any], word: str) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return word in str(meta.get("name") or "") or any(
        word in str(labels.get(k) or "")
        for k in ("app", "app.kubernetes.io/name", "app.kubernetes.io/part-of")
    )


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _active(obj: Mapping[str, Any]) -> bool:
    """A Deployment with replicas (default 1), or any DaemonSet."""
    if obj.get("kind") == "Deployment":
        replicas = (obj.get("spec") or {}).get("replicas")
        return replicas is None or replicas > 0
    return True


def check_metallb(facts: Facts, now: datetime) -> Check:
    found = [w for w in facts.workloads if _mentions(w, "metallb") and _active(w)]
    names = [str((c.get("metadata") or {}).get("name") or "") for c in facts.crds]
    crds = [n for n in names if n.endswith(".metallb.io")]
    if found:
        names = [f"{w.get('kind')} {_name(w)}" for w in found]
        return Check(
            "metallb",
            "fail",
            f"MetalLB runs ({_listed(names)}) and will fight ironlb over the same Services",
            "lbctl import metallb -f <(kubectl get ipaddresspools.metallb.io,"
            "l2advertisements.metallb.io -A -o yaml) --apply; then uninstall MetalLB",
        )
    if crds:
        return Check(
            "metallb",
            "warn",
            f"MetalLB CRDs left behind ({_listed(crds)}), no MetalLB workload runs",
            f"kubectl delete crd {' '.join(crds)}",
        )
    denied = _cannot(facts, "metallb", "workloads", "Deployments/DaemonSets", "list daemonsets -A")
    return denied or Check("metallb", "ok", "no MetalLB")


def check_kube_vip(facts: Facts, now: datetime) -> Check:
    found = [
        f"{w.get('kind')} {_name(w)}"
        for w in facts.workloads
        if _mentions(w, "kube-vip") and _active(w)
    ]
    found += [f"Pod {_name(p)}" for p in facts.system_pods if _mentions(p, "kube-vip")]
    annotated = [
        _name(s)
        for s in facts.services
        if handled_by_ironlb(s) and any(k.startswith("kube-vip.io/") for k in _annotations(s))
    ]
    if found:
        return Check(
            "kube-vip",
            "fail",
            f"kube-vip runs ({_listed(found)}): it also answers ARP for Service addresses",
            "run kube-vip for the control-plane VIP only (svc_enable=false) or remove it",
        )
    if annotated:
        return Check(
            "kube-vip",
            "warn",
            f"kube-vip.io/ annotations on {_listed(annotated)} (ignored by ironlb)",
            "use ironlb.io/loadBalancerIPs instead of kube-vip.io/loadbalancerIPs",
        )
    denied = _cannot(facts, "kube-vip", "workloads", "Deployments/DaemonSets", "list daemonsets -A")
    denied = denied or _cannot(
        facts, "kube-vip", "pods", "Pods in kube-system", "list pods -n kube-system"
    )
    return denied or Check("kube-vip", "ok", "no kube-vip")


def check_cilium(facts: Facts, now: datetime) -> Check:
    pools = facts.cilium_objects.get(CILIUM_POOLS, [])
    policies = facts.cilium_objects.get(CILIUM_L2, [])
    if pools:
        return Check(
            "cilium",
            "fail",
            f"Cilium LB-IPAM has {len(pools)} CiliumLoadBalancerIPPool(s) "
            f"({_listed([_name(p) for p in pools])}): it assigns addresses to the same Services",
            "kubectl delete ciliumloadbalancerippools --all, or disable Cilium LB-IPAM",
        )
    if policies:
        return Check(
            "cilium",
            "warn",
            f"{len(policies)} CiliumL2AnnouncementPolicy(s) but no Cilium IP pool",
            "kubectl delete ciliuml2announcementpolicies --all",
        )
    denied = _cannot(
        facts, "cilium", "cilium", "Cilium's pools/policies", "list ciliumloadbalancerippools"
    )
    if denied is not None:
        return denied
    if facts.crd(CILIUM_POOLS) is not None:
        return Check("cilium", "ok", "Cilium present, its LB-IPAM has no pools")
    return Check("cilium", "ok", "no Cilium load-balancer objects")


def check_foreign_addresses(facts: Facts, now: datetime) -> Check:
    """Services ironlb handles (no or ironlb's ``loadBalancerClass``) that have an address
    but not the ``ironlb.io/ip-allocated-from-pool`` annotation ironlb writes with every
    address it gives: another implementation wrote that status."""
    theirs = [
        s
        for s in sorted(facts.services, key=_name)
        if handled_by_ironlb(s) and external_ips(s) and ALLOCATED_FROM_POOL not in _annotations(s)
    ]
    if theirs:
        foreign = [f"{_name(s)} ({','.join(external_ips(s))})" for s in theirs]
        meta = theirs[0].get("metadata") or {}
        return Check(
            "foreign-addresses",
            "fail",
            f"{len(foreign)} Service(s) got an address ironlb did not give: {_listed(foreign)}",
            "another load balancer is active (see metallb, kube-vip, cilium); who wrote it: "
            f"kubectl -n {meta.get('namespace')} get service {meta.get('name')} -o yaml "
            "--show-managed-fields",
        )
    return Check("foreign-addresses", "ok", "every LoadBalancer address was given by ironlb")


CHECKS: tuple[Callable[[Facts, datetime], Check], ...] = (
    check_crd,
    check_controller,
    check_speakers,
    check_secret,
    check_pools,
    check_services,
    check_ip_mode,
    check_metallb,
    check_kube_vip,
    check_cilium,
    check_foreign_addresses,
)


def run_checks(facts: Facts, now: datetime) -> list[Check]:
    """Every check in :data:`CHECKS` order."""
    return [check(facts, now) for check in CHECKS]


def doctor_table(checks: Sequence[Check], *, wide: bool = False) -> str:
    """CHECK VERDICT DETAIL (wide: FIX as a column); otherwise each fix on a ``fix:`` line
    under the table, for the checks that are not ok. Ends with the verdict counts."""
    headers = ["CHECK", "VERDICT", "DETAIL"] + (["FIX"] if wide else [])
    rows = [[c.name, c.verdict, c.detail] + ([c.fix or "-"] if wide else []) for c in checks]
    lines = [table(headers, rows)]
    if not wide:
        fixes = [c for c in checks if c.verdict != "ok" and c.fix]
        if fixes:
            lines.append("")
            lines += [f"fix {c.name}: {c.fix}" for c in fixes]
    counts = {v: sum(1 for c in checks if c.verdict == v) for v in VERDICTS}
    lines.append("")
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)
