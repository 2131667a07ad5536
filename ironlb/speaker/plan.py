"""Kubernetes objects -> one node's :class:`~ironlb.dataplane.state.DesiredState`.

:func:`plan_node` reads Services (core/v1), EndpointSlices
(discovery.k8s.io/v1), Nodes (as :class:`~ironlb.speaker.election.NodeInfo`)
and IPAddressPools and returns a :class:`NodePlan`:

* listeners for *every* Service of ours that has ingress IPs, on every node,
  so a standby is ready to take a VIP over with a bind and a gratuitous ARP;
* the VIPs this node owns (elected with :mod:`ironlb.speaker.election`), and
  the interfaces each is announced on (the pool's ``l2.interfaces``);
* the owner of every VIP (the same on every node given the same inputs);
* problems per Service, with stable reasons for Events/conditions.

Rules, with their Kubernetes sources:

* a Service port is ``spec.ports[i]`` (``protocol`` defaults to ``TCP``;
  ``SCTP`` is reported as ``UnsupportedProtocol``); one listener per port and
  ingress IP. Two Services claiming the same ``(ip, protocol, port)``: the
  older (``metadata.creationTimestamp``, then namespace/name) keeps it, the
  other gets ``PortConflict``;
* endpoints come from EndpointSlices labelled ``kubernetes.io/service-name``
  in the Service's namespace whose ``addressType`` is the ingress IP's family
  (``FQDN`` slices are ignored). The backend port is the slice ``ports`` entry
  with the Service port's ``name`` and ``protocol`` (how named
  ``targetPort``\\s resolve). Only ``addresses[0]`` is used (the API: consumers
  must use only the first). ``conditions.ready`` nil means ready; a
  ``terminating`` endpoint is not ready. Not-ready endpoints stay as
  ``ready=False`` backends so open connections drain;
* ``externalTrafficPolicy: Local``: a node's listeners get only endpoints
  with ``nodeName`` equal to it, only nodes with a ready local endpoint may
  own the VIP, and kernel-mode listeners do not masquerade;
* ``ironlb.io/forwarding-mode`` (``proxy``/``kernel``) picks the mode;
  ``ironlb.io/udp-expect-reply: "false"`` tells the proxy that the UDP
  protocol is one-way, so unanswered datagrams are no sign of a dead backend
  (:attr:`~ironlb.dataplane.state.ListenerOptions.udp_expect_reply`);
  ``spec.loadBalancerSourceRanges`` becomes ``source_ranges``;
* ``spec.sessionAffinity: ClientIP`` (with its timeout) and the annotations
  ``ironlb.io/idle-timeout`` / ``ironlb.io/connect-timeout`` are read by
  :mod:`ironlb.speaker.service_options`; affinity is served in both modes,
  the timeouts by the proxy.
* ``ironlb.io/proxy-protocol: v1|v2`` sends HAProxy's PROXY header to the
  backends of the Service's TCP ports, which are then served in proxy mode
  (the kernel path cannot add it: a Service that asks for kernel mode too gets
  ``ProxyProtocolNeedsProxyMode``); its UDP ports get no header
  (``ProxyProtocolTcpOnly``). Backends that expect the header refuse
  connections without it, hence the mode switch rather than a silent drop.

Pure: no kopf, no sockets, no asyncio.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from ironlb.common.addresses import IPAddress, IPNetwork, address_sort_key, vip_problem
from ironlb.common.kubetime import parse_time
from ironlb.common.protocols import Protocol, served_protocol
from ironlb.dataplane.state import (
    MODES,
    PROXY_VERSIONS,
    Backend,
    DesiredState,
    ListenerKey,
    ListenerOptions,
    ListenerSpec,
    Mode,
    ProxyVersion,
)
from ironlb.operator.allocator import ServiceKey
from ironlb.operator.pools import L2Scope, Pool
from ironlb.operator.service_request import (
    DEFAULT_LOAD_BALANCER_CLASS,
    allocated_pool,
    current_ingress_ips,
    is_ours,
    service_key,
)
from ironlb.speaker.election import NodeInfo, eligible_nodes, ineligible_reason, rendezvous_owner
from ironlb.speaker.service_options import service_options

__all__ = [
    "FAIL_CLOSED_RANGES",
    "FORWARDING_MODE",
    "PROXY_PROTOCOL",
    "SERVICE_NAME_LABEL",
    "UDP_EXPECT_REPLY",
    "NodePlan",
    "Problem",
    "plan_node",
]

#: Annotation choosing the forwarding mode of a Service's listeners.
FORWARDING_MODE = "ironlb.io/forwarding-mode"
#: Annotation: ``"false"`` when a Service's UDP protocol does not answer every datagram.
UDP_EXPECT_REPLY = "ironlb.io/udp-expect-reply"
#: Annotation: ``v1`` or ``v2`` to send a PROXY protocol header to the TCP backends.
PROXY_PROTOCOL = "ironlb.io/proxy-protocol"
#: EndpointSlice label naming the Service it belongs to (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: Source ranges that admit no client: used when every given range was invalid.
FAIL_CLOSED_RANGES: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("0.0.0.0/32"),
    ipaddress.IPv6Network("::/128"),
)

_SLICE_FAMILIES = {"IPv4": 4, "IPv6": 6}
_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Problem:
    """Why (part of) a Service is not served. ``reason`` is stable (CamelCase, for Events)."""

    reason: str
    message: str


@dataclass(frozen=True)
class NodePlan:
    """One node's plan.

    ``state``: the node's desired data-plane state. ``owners``: per VIP the
    elected node, ``None`` when nobody is eligible or no Service on it has a
    ready endpoint. ``vip_services``: per VIP the Services on it, sorted.
    ``problems``: per Service its problems (Services without any are absent).
    """

    state: DesiredState
    owners: Mapping[IPAddress, str | None] = field(default_factory=dict)
    vip_services: Mapping[IPAddress, tuple[ServiceKey, ...]] = field(default_factory=dict)
    problems: Mapping[ServiceKey, tuple[Problem, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Endpoint:
    address: IPAddress
    ready: bool
    node: str | None


@dataclass(frozen=True)
class _Slice:
    family: int
    ports: Mapping[tuple[str, str], int]  # (name, protocol) -> port
    endpoints: tuple[_Endpoint, ...]


class _Problems:
    """Problems per Service, deduplicated, in the order found."""

    def __init__(self) -> None:
        self._items: dict[ServiceKey, list[Problem]] = defaultdict(list)

    def add(self, key: ServiceKey, reason: str, message: str) -> None:
        problem = Problem(reason, message)
        if problem not in self._items[key]:
            self._items[key].append(problem)

    def freeze(self) -> Mapping[ServiceKey, tuple[Problem, ...]]:
        return MappingProxyType({k: tuple(v) for k, v in sorted(self._items.items()) if v})


# --- EndpointSlices -------------------------------------------------------------------------------


def _parse_slice(obj: Mapping[str, Any]) -> _Slice | None:
    """The useful part of one EndpointSlice, or ``None`` for FQDN/unknown address types."""
    family = _SLICE_FAMILIES.get(str(obj.get("addressType")))
    if family is None:
        return None
    ports: dict[tuple[str, str], int] = {}
    for entry in obj.get("ports") or []:
        if not isinstance(entry, Mapping):
            continue
        port = entry.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            continue  # a nil port means "all ports": nothing we can forward to
        ports[(str(entry.get("name") or ""), str(entry.get("protocol") or "TCP"))] = port
    endpoints: list[_Endpoint] = []
    for entry in obj.get("endpoints") or []:
        if not isinstance(entry, Mapping):
            continue
        addresses = entry.get("addresses") or []
        if not addresses:
            continue
        try:
            address = ipaddress.ip_address(str(addresses[0]))
        except ValueError:
            continue
        if address.version != family:
            continue
        conditions = entry.get("conditions") or {}
        ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
        node = entry.get("nodeName")
        endpoints.append(_Endpoint(address, ready, str(node) if node else None))
    return _Slice(family, MappingProxyType(ports), tuple(endpoints))


def _index_slices(slices: Iterable[Mapping[str, Any]]) -> dict[ServiceKey, list[_Slice]]:
    """Slices by the Service (namespace, ``kubernetes.io/service-name``) they belong to."""
    index: dict[ServiceKey, list[_Slice]] = defaultdict(list)
    for obj in slices:
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not name:
            continue
        parsed = _parse_slice(obj)
        if parsed is not None:
            index[ServiceKey(str(meta.get("namespace") or "default"), str(name))].append(parsed)
    return index


def _backends(
    slices: Iterable[_Slice], family: int, name: str, protocol: str, node: str | None
) -> tuple[Backend, ...]:
    """Backends for one Service port and family, sorted by (address, port), deduplicated.

    ``node`` set (``externalTrafficPolicy: Local``): only endpoints on that node.
    A duplicate that is ready in one slice counts as ready.
    """
    found: dict[tuple[IPAddress, int], bool] = {}
    for sl in slices:
        if sl.family != family:
            continue
        port = sl.ports.get((name, protocol))
        if port is None:
            continue
        for ep in sl.endpoints:
            if node is not None and ep.node != node:
                continue
            key = (ep.address, port)
            found[key] = found.get(key, False) or ep.ready
    ordered = sorted(found, key=lambda k: (address_sort_key(k[0]), k[1]))
    return tuple(Backend(addr, port, found[(addr, port)]) for addr, port in ordered)


# --- Service fields -------------------------------------------------------------------------------


def _mode(annotations: Mapping[str, Any], default: Mode) -> tuple[Mode, str | None]:
    raw = annotations.get(FORWARDING_MODE)
    if raw is None or raw == "":
        return default, None
    for mode in MODES:
        if raw == mode:
            return mode, None
    return default, (
        f"annotation {FORWARDING_MODE}: {raw!r} is not one of {list(MODES)}; using {default}"
    )


def _expect_reply(annotations: Mapping[str, Any]) -> tuple[bool, str | None]:
    raw = annotations.get(UDP_EXPECT_REPLY)
    if raw is None or raw == "" or raw == "true":
        return True, None
    if raw == "false":
        return False, None
    return True, f"annotation {UDP_EXPECT_REPLY}: {raw!r} is not 'true' or 'false'; using true"


def _proxy_protocol(annotations: Mapping[str, Any]) -> tuple[ProxyVersion | None, str | None]:
    raw = annotations.get(PROXY_PROTOCOL)
    if raw is None or raw == "":
        return None, None
    for version in PROXY_VERSIONS:
        if raw == version:
            return version, None
    return None, (
        f"annotation {PROXY_PROTOCOL}: {raw!r} is not one of {list(PROXY_VERSIONS)}; "
        "sending no PROXY header"
    )


def _source_ranges(spec: Mapping[str, Any]) -> tuple[tuple[IPNetwork, ...], list[str]]:
    """``spec.loadBalancerSourceRanges`` -> networks (host bits masked, sorted, unique).

    Kubernetes parses the CIDRs sloppily (host bits allowed), hence
    ``strict=False``. Invalid entries are skipped and reported. When entries
    were given and none is valid the result is :data:`FAIL_CLOSED_RANGES`: a
    typo must not open the firewall to everyone.
    """
    raw = spec.get("loadBalancerSourceRanges") or []
    if not isinstance(raw, list):
        raw = [raw]
    nets: set[IPNetwork] = set()
    errors: list[str] = []
    for i, text in enumerate(raw):
        try:
            nets.add(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            errors.append(f"spec.loadBalancerSourceRanges[{i}]: {text!r} is not a CIDR")
    if raw and not nets:
        return FAIL_CLOSED_RANGES, [*errors, "no valid range left: serving no client"]
    ordered = sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    return tuple(ordered), errors


def _created(service: Mapping[str, Any]) -> tuple[datetime, ServiceKey]:
    meta = service.get("metadata") or {}
    return (parse_time(meta.get("creationTimestamp")) or _NEVER, service_key(service))


@dataclass(frozen=True)
class _Port:
    name: str
    kube_protocol: str
    protocol: Protocol
    port: int


def _ports(spec: Mapping[str, Any], key: ServiceKey, problems: _Problems) -> list[_Port]:
    ports: list[_Port] = []
    for i, entry in enumerate(spec.get("ports") or []):
        if not isinstance(entry, Mapping):
            continue
        kube_protocol = str(entry.get("protocol") or "TCP")
        number = entry.get("port")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            continue
        protocol = served_protocol(kube_protocol)
        if protocol is None:
            problems.add(
                key,
                "UnsupportedProtocol",
                f"spec.ports[{i}]: {kube_protocol}/{number} is not served "
                f"(only TCP and UDP are forwarded)",
            )
            continue
        ports.append(_Port(str(entry.get("name") or ""), kube_protocol, protocol, number))
    return ports


# --- the plan -------------------------------------------------------------------------------------


def plan_node(
    *,
    node: str,
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, NodeInfo],
    pools: Mapping[str, Pool],
    alive: frozenset[str],
    load_balancer_class: str = DEFAULT_LOAD_BALANCER_CLASS,
    default_mode: Mode = "proxy",
    unset_class: bool = True,
) -> NodePlan:
    """The plan of node ``node``; see the module docstring for the rules.

    ``services``/``slices`` are API objects (dicts); ``nodes`` maps Node
    names to :class:`NodeInfo`; ``pools`` maps pool names to validated pools;
    ``alive`` holds the nodes whose speaker is live; ``unset_class`` False leaves
    Services without ``spec.loadBalancerClass`` to another implementation. ``owners``,
    ``vip_services`` and ``problems`` do not depend on ``node``.
    """
    index = _index_slices(slices)
    problems = _Problems()
    listeners: dict[ListenerKey, ListenerSpec] = {}
    claimed: dict[ListenerKey, ServiceKey] = {}
    vip_keys: dict[IPAddress, set[ServiceKey]] = defaultdict(set)
    vip_pool: dict[IPAddress, str] = {}
    # Per VIP and Service: whether it has a ready endpoint, and (Local) the nodes that have one.
    has_ready: dict[tuple[IPAddress, ServiceKey], bool] = {}
    local_nodes: dict[tuple[IPAddress, ServiceKey], frozenset[str]] = {}

    ours = [
        s
        for s in services
        if is_ours(s, load_balancer_class, unset_class=unset_class) and current_ingress_ips(s)
    ]
    for service in sorted(ours, key=_created):
        key = service_key(service)
        meta = service.get("metadata") or {}
        spec = service.get("spec") or {}
        annotations = meta.get("annotations") or {}
        local = spec.get("externalTrafficPolicy") == "Local"
        mode, mode_error = _mode(annotations, default_mode)
        if mode_error:
            problems.add(key, "InvalidForwardingMode", mode_error)
        expect_reply, expect_error = _expect_reply(annotations)
        if expect_error:
            problems.add(key, "InvalidUdpExpectReply", expect_error)
        ranges, range_errors = _source_ranges(spec)
        for message in range_errors:
            problems.add(key, "InvalidSourceRanges", message)
        extra = service_options(spec, annotations)
        for reason, message in extra.problems:
            problems.add(key, reason, message)
        options = ListenerOptions(
            mode=mode,
            source_ranges=ranges,
            masquerade=not (local and mode == "kernel"),
            udp_expect_reply=expect_reply,
            idle_timeout=extra.idle_timeout,
            connect_timeout=extra.connect_timeout,
            affinity_timeout=extra.affinity_timeout,
        )
        ports = _ports(spec, key, problems)
        tcp_options = options
        proxy_version, proxy_error = _proxy_protocol(annotations)
        if proxy_error:
            problems.add(key, "InvalidProxyProtocol", proxy_error)
        if proxy_version is not None:
            if mode == "kernel":
                problems.add(
                    key,
                    "ProxyProtocolNeedsProxyMode",
                    f"annotation {PROXY_PROTOCOL}: the kernel path cannot send a PROXY header; "
                    "TCP ports are served in proxy mode",
                )
            tcp_options = replace(
                options, mode="proxy", masquerade=True, proxy_protocol=proxy_version
            )
            if any(p.protocol != "tcp" for p in ports):
                problems.add(
                    key,
                    "ProxyProtocolTcpOnly",
                    f"annotation {PROXY_PROTOCOL}: only TCP ports get a PROXY header",
                )
        own_slices = index.get(key, [])
        pool = allocated_pool(service)
        for ip in dict.fromkeys(current_ingress_ips(service)):
            unfit = vip_problem(ip)
            if unfit is not None:
                problems.add(key, "InvalidIngressIP", f"{ip} is {unfit}: not announced or served")
                continue
            vip_keys[ip].add(key)
            if pool is not None:
                vip_pool.setdefault(ip, pool)
            ready_eps = [
                ep
                for sl in own_slices
                if sl.family == ip.version
                for ep in sl.endpoints
                if ep.ready
            ]
            has_ready[(ip, key)] = bool(ready_eps)
            if local:
                local_nodes[(ip, key)] = frozenset(ep.node for ep in ready_eps if ep.node)
            for port in ports:
                lkey = ListenerKey(ip, port.protocol, port.port)
                holder = claimed.get(lkey)
                if holder is not None:
                    if holder != key:
                        problems.add(
                            key,
                            "PortConflict",
                            f"{lkey} is already served for the older Service {holder}",
                        )
                    continue
                claimed[lkey] = key
                backends = _backends(
                    own_slices, ip.version, port.name, port.kube_protocol, node if local else None
                )
                listeners[lkey] = ListenerSpec(
                    backends, tcp_options if port.protocol == "tcp" else options
                )

    owners: dict[IPAddress, str | None] = {}
    announce: dict[IPAddress, frozenset[str]] = {}
    for ip in sorted(vip_keys, key=address_sort_key):
        keys = sorted(vip_keys[ip])
        pool_name = vip_pool.get(ip)
        pool_obj = pools.get(pool_name) if pool_name is not None else None
        scope: L2Scope | None = pool_obj.l2 if pool_obj is not None else None
        served = [k for k in keys if has_ready[(ip, k)]]
        for k in keys:
            if not has_ready[(ip, k)]:
                problems.add(
                    k,
                    "NoEndpoints",
                    f"no ready IPv{ip.version} endpoint for {ip}"
                    + ("" if served else "; nobody announces it"),
                )
        if not served:
            owners[ip] = None
            continue
        local_sets = [local_nodes[(ip, k)] for k in served if (ip, k) in local_nodes]
        local_ready = frozenset.intersection(*local_sets) if local_sets else None
        candidates = eligible_nodes(
            ip, alive=alive, nodes=nodes, scope=scope, local_ready=local_ready
        )
        owner = rendezvous_owner(ip, candidates)
        owners[ip] = owner
        if owner is None:
            why = ineligible_reason(
                alive=alive, nodes=nodes, scope=scope, local_ready=local_ready, pool=pool_name
            )
            for k in served:
                problems.add(k, "NoEligibleNode", f"{ip}: {why}")
        elif owner == node and pool_obj is not None and pool_obj.l2.interfaces:
            announce[ip] = frozenset(pool_obj.l2.interfaces)

    vips = frozenset(ip for ip, owner in owners.items() if owner == node)
    return NodePlan(
        state=DesiredState(listeners=listeners, vips=vips, announce=announce),
        owners=MappingProxyType(owners),
        vip_services=MappingProxyType(
            {ip: tuple(sorted(vip_keys[ip])) for ip in sorted(vip_keys, key=address_sort_key)}
        ),
        problems=problems.freeze(),
    )
