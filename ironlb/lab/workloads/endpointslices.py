"""The EndpointSlice controller's decisions, pure: the slices a Service should have.

After the Kubernetes docs ("EndpointSlices") and
``pkg/controller/endpointslice`` / ``staging/.../endpointslice/reconciler``:

- Services with a ``spec.selector`` only; their pods are the active-or-
  terminating pods of the namespace whose labels match it and that have an IP.
- One slice per address family (``addressType`` ``IPv4``/``IPv6``) of
  ``spec.ipFamilies`` (default IPv4), and within a family one per distinct
  set of resolved ports: a named ``targetPort`` resolves per pod to the
  ``containerPort`` of that name and protocol; a pod lacking it has that
  port left out (so it lands in a slice with other ports).
- Endpoint ``conditions``: ``serving`` = the pod's Ready condition,
  ``terminating`` = ``deletionTimestamp`` set, ``ready`` = serving and not
  terminating; ``spec.publishNotReadyAddresses`` makes all three "ready"
  (``ready``/``serving`` True). ``nodeName`` and ``targetRef`` name the pod.
- Labels ``kubernetes.io/service-name`` and
  ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``,
  a controller ``ownerReference`` to the Service, names ``<service>-<5 chars>``
  (``generateName``). A Service without endpoints keeps one empty placeholder
  slice of its first family, as the real controller does.

Slices are compared by (addressType, ports); :func:`diff` turns desired and
existing slices into creates, updates and deletes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from ironlb.lab.apiserver.selectors import label_selector_matches
from ironlb.lab.workloads import podstate
from ironlb.lab.workloads.podstate import Obj

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
FAMILY_TYPES = {"IPv4": 4, "IPv6": 6}

PortKey = tuple[tuple[str, str, int], ...]  # (name, protocol, port), sorted
SliceKey = tuple[str, PortKey]  # (addressType, ports)


@dataclass
class SliceDiff:
    """What to write for one Service: new slice bodies, (name, body) updates, names to delete."""

    create: list[Obj] = field(default_factory=list)
    update: list[tuple[str, Obj]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def resolve_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod port a Service port sends to (``podutil.FindPort``): an integer
    ``targetPort`` as is, a name via the pod's ``containerPorts`` of that name and
    protocol, no ``targetPort`` as ``port``; None when a name is not found."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = str(service_port.get("protocol") or "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and str(port.get("protocol") or "TCP") == protocol:
                value = port.get("containerPort")
                return int(value) if isinstance(value, int) else None
    return None


def _ports_for(pod: Mapping[str, Any], service: Mapping[str, Any]) -> PortKey:
    ports: list[tuple[str, str, int]] = []
    for sport in (service.get("spec") or {}).get("ports") or []:
        resolved = resolve_port(pod, sport)
        if resolved is not None:
            ports.append(
                (str(sport.get("name") or ""), str(sport.get("protocol") or "TCP"), resolved)
            )
    return tuple(sorted(ports))


def _endpoint(pod: Mapping[str, Any], address: str, publish_not_ready: bool) -> Obj:
    pmeta = podstate.meta(pod)
    terminating = podstate.is_terminating(pod)
    serving = podstate.is_ready(pod) or publish_not_ready
    endpoint: Obj = {
        "addresses": [address],
        "conditions": {
            "ready": serving if publish_not_ready else (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": pmeta.get("namespace", "default"),
            "name": pmeta.get("name"),
            "uid": pmeta.get("uid"),
        },
    }
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        endpoint["nodeName"] = node
    return endpoint


def _families(service: Mapping[str, Any]) -> list[str]:
    families = [f for f in (service.get("spec") or {}).get("ipFamilies") or [] if f in FAMILY_TYPES]
    return families or ["IPv4"]


def desired_slices(
    service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> dict[SliceKey, list[Obj]]:
    """(addressType, ports) -> endpoints (sorted by pod name) for a Service with a
    selector; ``{}`` for one without (its slices are not ours to manage)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        return {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    families = _families(service)
    namespace = podstate.meta(service).get("namespace", "default")
    result: dict[SliceKey, list[Obj]] = {}
    ordered = sorted(pods, key=lambda p: str(podstate.meta(p).get("name")))
    for pod in ordered:
        if podstate.meta(pod).get("namespace", "default") != namespace or podstate.is_finished(pod):
            continue
        if not label_selector_matches({"matchLabels": selector}, podstate.labels(pod)):
            continue
        ports = _ports_for(pod, service)
        for address in podstate.pod_ips(pod):
            family = "IPv4" if ip_address(address).version == 4 else "IPv6"
            if family in families:
                result.setdefault((family, ports), []).append(_endpoint(pod, address, publish))
    if not result:
        result[(families[0], ())] = []
    return result


def slice_body(service: Mapping[str, Any], key: SliceKey, endpoints: list[Obj]) -> Obj:
    """A new EndpointSlice body for ``service`` (``generateName`` ``<service>-``)."""
    smeta = podstate.meta(service)
    address_type, ports = key
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{smeta.get('name')}-",
            "namespace": smeta.get("namespace", "default"),
            "labels": {SERVICE_NAME_LABEL: smeta.get("name"), MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [podstate.owner_ref(service, "v1", "Service")],
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": n, "protocol": proto, "port": port} for n, proto, port in ports],
    }


def slice_key(slice_obj: Mapping[str, Any]) -> SliceKey:
    """(addressType, ports) of an existing slice."""
    ports = tuple(
        sorted(
            (str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p.get("port") or 0))
            for p in slice_obj.get("ports") or []
        )
    )
    return (str(slice_obj.get("addressType")), ports)


def managed_slices(
    service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The slices of ``slices`` this controller manages for ``service``."""
    smeta = podstate.meta(service)
    return [
        s
        for s in slices
        if podstate.meta(s).get("namespace") == smeta.get("namespace")
        and podstate.labels(s).get(SERVICE_NAME_LABEL) == smeta.get("name")
        and podstate.labels(s).get(MANAGED_BY_LABEL) == MANAGED_BY
    ]


def diff(
    service: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
) -> SliceDiff:
    """Creates, updates and deletes that make ``service``'s managed slices (picked
    from ``slices``) what :func:`desired_slices` says."""
    wanted = desired_slices(service, pods)
    result = SliceDiff()
    if not wanted:  # no selector: nothing of ours should exist
        result.delete = [str(podstate.meta(s).get("name")) for s in managed_slices(service, slices)]
        return result
    seen: set[SliceKey] = set()
    for existing in sorted(
        managed_slices(service, slices), key=lambda s: str(podstate.meta(s).get("name"))
    ):
        key = slice_key(existing)
        name = str(podstate.meta(existing).get("name"))
        if key not in wanted or key in seen:
            result.delete.append(name)
            continue
        seen.add(key)
        if list(existing.get("endpoints") or []) != wanted[key]:
            result.update.append((name, {"endpoints": wanted[key]}))
    for key, endpoints in wanted.items():
        if key not in seen:
            result.create.append(slice_body(service, key, endpoints))
    return result
