"""Turn a Service object (a plain dict) into the allocator's :class:`ServiceRequest`.

Also answers the two questions the controller asks of every Service event:
is this Service ours (:func:`is_ours`: ``type: LoadBalancer`` and a matching
``spec.loadBalancerClass``), and which IPs/pool does its status currently show
(:func:`current_ingress_ips`, :func:`allocated_pool`).

Annotations read (MetalLB's, in the ``ironlb.io`` group):

- ``ironlb.io/loadBalancerIPs``: comma-separated addresses, at most one per
  family; the deprecated ``spec.loadBalancerIP`` is honoured too, but not both;
- ``ironlb.io/address-pool``: the pool to allocate from;
- ``ironlb.io/allow-shared-ip``: the sharing key.

MetalLB's names for these three (``metallb.io/...`` and the older
``metallb.universe.tf/...``) are honoured as aliases, so Services move over
from MetalLB unchanged; the ``ironlb.io/`` one wins when both are set, and
:func:`annotation_aliases` says which alias was used or ignored (the
controller posts it as an Event).

Bad values raise :class:`ServiceRequestError` with a message that names the
field and value; the controller posts it as an ``AllocationFailed`` Event.
Pure: no Kubernetes client, no kopf.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ironlb.common.addresses import IPAddress
from ironlb.common.protocols import KUBERNETES_PROTOCOLS
from ironlb.operator.allocator import ServiceKey, ServiceRequest

__all__ = [
    "ADDRESS_POOL",
    "ALLOCATED_FROM_POOL",
    "ALLOW_SHARED_IP",
    "DEFAULT_LOAD_BALANCER_CLASS",
    "LOAD_BALANCER_IPS",
    "ServiceRequestError",
    "allocated_pool",
    "annotation_aliases",
    "current_ingress_ips",
    "holding_request",
    "is_ours",
    "parse_service",
    "service_key",
]

LOAD_BALANCER_IPS = "ironlb.io/loadBalancerIPs"
ADDRESS_POOL = "ironlb.io/address-pool"
ALLOW_SHARED_IP = "ironlb.io/allow-shared-ip"
ALLOCATED_FROM_POOL = "ironlb.io/ip-allocated-from-pool"
#: Written by the speaker that announces the Service's VIP: that node's name.
ANNOUNCING_NODE = "ironlb.io/announcing-node"
DEFAULT_LOAD_BALANCER_CLASS = "ironlb.io/ironlb"

#: MetalLB's annotations honoured as aliases of ours, newest spelling first.
ALIASES: dict[str, tuple[str, ...]] = {
    name: tuple(
        f"{group}/{name.split('/', 1)[1]}" for group in ("metallb.io", "metallb.universe.tf")
    )
    for name in (LOAD_BALANCER_IPS, ADDRESS_POOL, ALLOW_SHARED_IP)
}

_FAMILIES = {"IPv4": 4, "IPv6": 6}
_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
_TRAFFIC_POLICIES = ("Cluster", "Local")


class ServiceRequestError(ValueError):
    """A Service whose fields or annotations cannot be turned into a request."""


def _part(obj: Any, key: str) -> Mapping[str, Any]:
    """``obj[key]`` when both are objects, else empty: for the questions that never raise."""
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _section(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    """``obj[key]`` as an object (unset or empty: ``{}``); anything else names ``path``."""
    value = obj.get(key)
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ServiceRequestError(f"{path} must be an object, got {value!r}")
    return value


def service_key(service: Mapping[str, Any]) -> ServiceKey:
    """The Service's namespace (``default`` when unset) and name (``""`` when unset)."""
    meta = _part(service, "metadata")
    return ServiceKey(str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


def is_ours(
    service: Mapping[str, Any], load_balancer_class: str, *, unset_class: bool = True
) -> bool:
    """``type: LoadBalancer`` and ``spec.loadBalancerClass`` equal to ours, or unset while
    ``unset_class`` (we are the cluster's default implementation; False while another one,
    e.g. MetalLB during a migration, still serves the Services without a class)."""
    spec = _part(service, "spec")
    if spec.get("type") != "LoadBalancer":
        return False
    cls = spec.get("loadBalancerClass")
    if cls is None or cls == "":
        return unset_class
    return bool(cls == load_balancer_class)


def current_ingress_ips(service: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    """The IPs in ``status.loadBalancer.ingress`` (hostnames and garbage skipped)."""
    ingress = _part(_part(service, "status"), "loadBalancer").get("ingress")
    if not isinstance(ingress, list):
        return ()
    ips: list[IPAddress] = []
    for entry in ingress:
        if not isinstance(entry, Mapping):
            continue
        try:
            ips.append(ipaddress.ip_address(str(entry.get("ip"))))
        except ValueError:
            continue
    return tuple(ips)


def allocated_pool(service: Mapping[str, Any]) -> str | None:
    """The pool named by our ``ironlb.io/ip-allocated-from-pool`` annotation, if any."""
    value = _part(_part(service, "metadata"), "annotations").get(ALLOCATED_FROM_POOL)
    return value if isinstance(value, str) and value else None


def _set(value: Any) -> bool:
    return value is not None and value != ""


def _annotation(annotations: Mapping[str, Any], name: str) -> tuple[str, Any]:
    """``(key, value)`` supplying annotation ``name``: ours when set, else the first
    MetalLB alias that is set, else ``(name, our value)``. Empty counts as unset."""
    value = annotations.get(name)
    if _set(value):
        return name, value
    for alias in ALIASES[name]:
        if _set(annotations.get(alias)):
            return alias, annotations[alias]
    return name, value


def annotation_aliases(service: Mapping[str, Any]) -> tuple[str, ...]:
    """One line per MetalLB alias annotation the Service carries: used, or ignored
    because the ``ironlb.io/`` one is set. Empty when it uses none."""
    annotations = _part(_part(service, "metadata"), "annotations")
    lines: list[str] = []
    for name, aliases in ALIASES.items():
        used, _ = _annotation(annotations, name)
        for alias in aliases:
            if not _set(annotations.get(alias)):
                continue
            if alias == used:
                lines.append(f"annotation {alias} is used as {name} (a MetalLB alias)")
            else:
                lines.append(f"annotation {alias} is ignored: {used} is set and wins")
    return tuple(lines)


def _requested_ips(
    spec: Mapping[str, Any], annotations: Mapping[str, Any]
) -> tuple[IPAddress, ...]:
    annotation, raw_annotation = _annotation(annotations, LOAD_BALANCER_IPS)
    raw_legacy = spec.get("loadBalancerIP")
    if raw_annotation and raw_legacy:
        raise ServiceRequestError(
            f"both annotation {annotation} and spec.loadBalancerIP are set; use only "
            f"the annotation (spec.loadBalancerIP is deprecated)"
        )
    if raw_legacy:
        source, texts = "spec.loadBalancerIP", [str(raw_legacy)]
    elif raw_annotation:
        source = f"annotation {annotation}"
        texts = [part.strip() for part in str(raw_annotation).split(",")]
    else:
        return ()
    ips: list[IPAddress] = []
    for text in texts:
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError:
            raise ServiceRequestError(
                f"{source}: {text!r} is not an IPv4 or IPv6 address"
            ) from None
    versions = [ip.version for ip in ips]
    if len(set(versions)) != len(versions):
        raise ServiceRequestError(
            f"{source}: {raw_annotation or raw_legacy!r} has more than one address of a family "
            f"(at most one IPv4 and one IPv6)"
        )
    return tuple(ips)


def _families(spec: Mapping[str, Any], requested: tuple[IPAddress, ...]) -> tuple[int, ...]:
    raw = spec.get("ipFamilies")
    if not raw:
        return tuple(ip.version for ip in requested) or (4,)
    if not isinstance(raw, list):
        raise ServiceRequestError(f"spec.ipFamilies must be a list, got {raw!r}")
    families: list[int] = []
    for item in raw:
        if not isinstance(item, str) or item not in _FAMILIES:
            raise ServiceRequestError(f"spec.ipFamilies: unknown family {item!r}")
        families.append(_FAMILIES[item])
    if len(set(families)) != len(families):
        raise ServiceRequestError(f"spec.ipFamilies: {raw!r} repeats a family")
    return tuple(families)


def _ports(spec: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    ports: list[tuple[str, int]] = []
    raw = spec.get("ports") or []
    if not isinstance(raw, list):
        raise ServiceRequestError(f"spec.ports must be a list, got {raw!r}")
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise ServiceRequestError(f"spec.ports[{i}] must be an object")
        protocol = entry.get("protocol") or "TCP"
        port = entry.get("port")
        if protocol not in KUBERNETES_PROTOCOLS:
            raise ServiceRequestError(f"spec.ports[{i}].protocol: unknown protocol {protocol!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ServiceRequestError(f"spec.ports[{i}].port: {port!r} is not a port number")
        ports.append((str(protocol), port))
    return tuple(ports)


def _string_map(obj: Any) -> dict[str, str]:
    if not isinstance(obj, Mapping):
        return {}
    return {str(k): str(v) for k, v in obj.items()}


def _lenient_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    ports: list[tuple[str, int]] = []
    entries = spec.get("ports")
    for entry in entries if isinstance(entries, list) else []:
        try:
            ports.extend(_ports({"ports": [entry]}))
        except ServiceRequestError:
            continue
    return tuple(ports)


def holding_request(
    service: Mapping[str, Any],
    namespace_labels: Mapping[str, str],
    ips: tuple[IPAddress, ...],
) -> ServiceRequest:
    """The request under which a Service keeps ``ips`` while its own request is refused.

    Used when a Service that shows addresses has annotations or fields that
    no longer parse (or ask for something that does not exist): it keeps what
    it holds, as MetalLB does, instead of losing a pinned address to a typo.
    The request asks for exactly ``ips`` (one or two, at most one per family,
    in the order shown) from whichever pool holds them; the sharing key,
    ports, traffic policy and selector are taken from the object where they
    parse (entries that do not are left out), so sharing rules still hold.
    """
    meta = _part(service, "metadata")
    spec = _part(service, "spec")
    _, sharing = _annotation(_part(meta, "annotations"), ALLOW_SHARED_IP)
    traffic = spec.get("externalTrafficPolicy")
    return ServiceRequest(
        key=service_key(service),
        requested_ips=ips,
        sharing_key=(sharing.strip() or None) if isinstance(sharing, str) else None,
        ports=_lenient_ports(spec),
        families=tuple(ip.version for ip in ips),
        family_policy="RequireDualStack" if len(ips) == 2 else "SingleStack",
        external_traffic_policy=traffic if traffic in _TRAFFIC_POLICIES else "Cluster",
        selector=frozenset(_string_map(spec.get("selector")).items()),
        labels=_string_map(meta.get("labels")),
        namespace_labels=dict(namespace_labels),
    )


def parse_service(
    service: Mapping[str, Any], namespace_labels: Mapping[str, str]
) -> ServiceRequest:
    """The allocation request a Service makes; raises :class:`ServiceRequestError`."""
    if not isinstance(service, Mapping):
        raise ServiceRequestError(
            f"the Service must be an object with metadata and spec, got {service!r}"
        )
    meta = _section(service, "metadata", "metadata")
    spec = _section(service, "spec", "spec")
    annotations = _section(meta, "annotations", "metadata.annotations")
    key = service_key(service)
    if not key.name:
        raise ServiceRequestError("metadata.name is missing")
    requested = _requested_ips(spec, annotations)
    # An empty annotation counts as unset (Helm charts stamp them from empty values).
    pool_key, pool = _annotation(annotations, ADDRESS_POOL)
    if pool is not None and not isinstance(pool, str):
        raise ServiceRequestError(f"annotation {pool_key} must name a pool, got {pool!r}")
    pool = (pool or "").strip() or None
    sharing_key, sharing = _annotation(annotations, ALLOW_SHARED_IP)
    if sharing is not None and not isinstance(sharing, str):
        raise ServiceRequestError(f"annotation {sharing_key} must be a string")
    sharing = (sharing or "").strip() or None
    policy = spec.get("ipFamilyPolicy") or "SingleStack"
    if policy not in _FAMILY_POLICIES:
        raise ServiceRequestError(f"spec.ipFamilyPolicy: unknown policy {policy!r}")
    traffic = spec.get("externalTrafficPolicy") or "Cluster"
    if traffic not in _TRAFFIC_POLICIES:
        raise ServiceRequestError(f"spec.externalTrafficPolicy: unknown policy {traffic!r}")
    return ServiceRequest(
        key=key,
        requested_ips=requested,
        pool=pool,
        sharing_key=sharing,
        ports=_ports(spec),
        families=_families(spec, requested),
        family_policy=str(policy),
        external_traffic_policy=str(traffic),
        selector=frozenset(_string_map(spec.get("selector")).items()),
        labels=_string_map(meta.get("labels")),
        namespace_labels=dict(namespace_labels),
    )
