"""Service defaulting and allocation of fake ClusterIPs and NodePorts.

Modest, documented subset of what kube-apiserver does to a Service:

- ``spec.type`` defaults to ClusterIP; ``sessionAffinity`` to None;
  ``ports[].protocol`` to TCP and ``ports[].targetPort`` to ``port``.
- Non-ExternalName Services get ``clusterIP`` (from 10.96.0.0/12, dynamic ones
  above the static band Kubernetes keeps for requested addresses, unless the
  client asked for a free address in it, or ``None`` for headless), ``clusterIPs``,
  ``ipFamilies`` ["IPv4"], ``ipFamilyPolicy`` SingleStack and
  ``internalTrafficPolicy`` Cluster. The ClusterIP is only a string: nothing
  routes to it.
- NodePort and LoadBalancer Services get ``externalTrafficPolicy`` Cluster and
  a ``nodePort`` (30000-32767) per port; LoadBalancer Services default
  ``allocateLoadBalancerNodePorts`` to true and get no node ports when it is false.
- Updates keep the allocated clusterIP (changing it is 422, field immutable)
  and each port's nodePort; addresses and ports no longer used are released.
Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from typing import Any

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


class DefaultingError(ValueError):
    """A Service field is invalid; ``field`` is its path."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.problem = message


class ServiceAllocator:
    """Hands out ClusterIPs and NodePorts and tracks which are in use."""

    def __init__(
        self, cidr: str = "10.96.0.0/12", node_ports: tuple[int, int] = (30000, 32767)
    ) -> None:
        self._network = ipaddress.IPv4Network(cidr)
        # Skip .0 (network) and the first 9 addresses (.1 is the usual `kubernetes` Service).
        self._first = int(self._network.network_address) + 10
        self._last = int(self._network.broadcast_address) - 1
        # Dynamic allocation starts above the static band that Kubernetes keeps for
        # requested values (KEP-3070 for ClusterIPs: min(max(16, size/16), 256) addresses
        # at the start of the range; KEP-3668 for NodePorts: min(max(16, size/32), 128)),
        # so a requested address or port is not taken by an earlier dynamic one.
        size = int(self._network.num_addresses)
        self._next_ip = int(self._network.network_address) + min(max(16, size // 16), 256)
        if self._next_ip > self._last:  # a range no larger than the band: no bands
            self._next_ip = self._first
        self._ips: set[int] = set()
        self._port_range = node_ports
        ports = node_ports[1] - node_ports[0] + 1
        self._next_port = node_ports[0] + min(max(16, ports // 32), 128)
        if self._next_port > node_ports[1]:
            self._next_port = node_ports[0]
        self._ports: set[int] = set()

    # --- low-level allocation -------------------------------------------------

    def _allocate_ip(self) -> str:
        size = self._last - self._first + 1
        for step in range(size):
            candidate = self._first + (self._next_ip - self._first + step) % size
            if candidate not in self._ips:
                self._ips.add(candidate)
                self._next_ip = candidate + 1
                return str(ipaddress.IPv4Address(candidate))
        raise DefaultingError("spec.clusterIP", "Internal error: no ClusterIPs left")

    def _reserve_ip(self, text: str) -> str:
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError as exc:
            raise DefaultingError(
                "spec.clusterIP", f"Invalid value: {text!r}: must be a valid IP address"
            ) from exc
        if address not in self._network:
            raise DefaultingError(
                "spec.clusterIP",
                f"Invalid value: {text!r}: provided IP is not in the valid range ({self._network})",
            )
        if int(address) in self._ips:
            raise DefaultingError(
                "spec.clusterIP", f"Invalid value: {text!r}: provided IP is already allocated"
            )
        self._ips.add(int(address))
        return text

    def _allocate_port(self) -> int:
        low, high = self._port_range
        size = high - low + 1
        for step in range(size):
            candidate = low + (self._next_port - low + step) % size
            if candidate not in self._ports:
                self._ports.add(candidate)
                self._next_port = candidate + 1
                return candidate
        raise DefaultingError("spec.ports", "Internal error: no NodePorts left")

    def _reserve_port(self, port: Any, index: int) -> int:
        low, high = self._port_range
        field_path = f"spec.ports[{index}].nodePort"
        if not isinstance(port, int) or not low <= port <= high:
            raise DefaultingError(
                field_path, f"Invalid value: {port!r}: provided port is not in the valid range"
            )
        if port in self._ports:
            raise DefaultingError(
                field_path, f"Invalid value: {port}: provided port is already allocated"
            )
        self._ports.add(port)
        return port

    # --- whole Services -----------------------------------------------------------

    @staticmethod
    def _held(service: dict[str, Any] | None) -> tuple[set[int], set[int]]:
        if not service:
            return set(), set()
        spec = service.get("spec") or {}
        ips: set[int] = set()
        for text in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            with contextlib.suppress(ValueError, TypeError):
                ips.add(int(ipaddress.IPv4Address(text)))
        ports = {
            p["nodePort"] for p in spec.get("ports") or [] if isinstance(p.get("nodePort"), int)
        }
        return ips, ports

    def release(self, service: dict[str, Any]) -> None:
        ips, ports = self._held(service)
        self._ips -= ips
        self._ports -= ports

    def apply(self, service: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        """Default ``service`` in place (create: old None; update: old = stored).

        All or nothing: when it raises :class:`DefaultingError`, no ClusterIP or
        NodePort it reserved on the way stays held (the refused write changed nothing).
        """
        saved = (set(self._ips), set(self._ports), self._next_ip, self._next_port)
        try:
            self._apply(service, old)
        except DefaultingError:
            self._ips, self._ports, self._next_ip, self._next_port = saved
            raise

    def _apply(self, service: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = service.get("spec")
        if not isinstance(spec, dict):
            spec = service["spec"] = {}
        old_spec = (old or {}).get("spec") or {}
        svc_type = spec.setdefault("type", "ClusterIP")
        if svc_type not in SERVICE_TYPES:
            raise DefaultingError(
                "spec.type", f"Unsupported value: {svc_type!r}: " + ", ".join(SERVICE_TYPES)
            )
        spec.setdefault("sessionAffinity", "None")
        ports = spec.get("ports") or []
        if not isinstance(ports, list):
            raise DefaultingError("spec.ports", "Invalid value: must be a list")
        seen: set[tuple[int, str]] = set()
        for index, port in enumerate(ports):
            if not isinstance(port, dict):
                raise DefaultingError(f"spec.ports[{index}]", "Invalid value: must be an object")
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                raise DefaultingError(
                    f"spec.ports[{index}].port",
                    f"Invalid value: {number!r}: must be between 1 and 65535, inclusive",
                )
            port.setdefault("protocol", "TCP")
            if port["protocol"] not in ("TCP", "UDP", "SCTP"):
                raise DefaultingError(
                    f"spec.ports[{index}].protocol",
                    f'Unsupported value: {port["protocol"]!r}: "SCTP", "TCP", "UDP"',
                )
            port.setdefault("targetPort", number)
            key = (number, port["protocol"])
            if key in seen:
                raise DefaultingError(
                    f"spec.ports[{index}]",
                    f'Duplicate value: {{"protocol":"{key[1]}","port":{key[0]}}}',
                )
            seen.add(key)
        held_before = self._held(old)
        if svc_type == "ExternalName":
            for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(name, None)
        else:
            self._default_cluster_ip(spec, old_spec)
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        self._default_node_ports(spec, old_spec, svc_type, ports)
        held_after = self._held(service)
        self._ips -= held_before[0] - held_after[0]
        self._ports -= held_before[1] - held_after[1]

    def _default_cluster_ip(self, spec: dict[str, Any], old_spec: dict[str, Any]) -> None:
        old_ip = old_spec.get("clusterIP")
        wanted = spec.get("clusterIP") or ""
        if not isinstance(wanted, str):
            raise DefaultingError("spec.clusterIP", f"Invalid value: {wanted!r}: must be a string")
        if old_ip:
            if wanted and wanted != old_ip:
                raise DefaultingError(
                    "spec.clusterIPs[0]", f"Invalid value: {wanted!r}: field is immutable"
                )
            spec["clusterIP"] = old_ip
        elif wanted == "None":
            pass
        elif wanted:
            self._reserve_ip(wanted)
        else:
            spec["clusterIP"] = self._allocate_ip()
        spec["clusterIPs"] = [spec["clusterIP"]]

    def _default_node_ports(
        self,
        spec: dict[str, Any],
        old_spec: dict[str, Any],
        svc_type: str,
        ports: Iterable[dict[str, Any]],
    ) -> None:
        wants_ports = svc_type == "NodePort"
        if svc_type == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
            wants_ports = bool(spec["allocateLoadBalancerNodePorts"])
        if svc_type in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        else:
            spec.pop("externalTrafficPolicy", None)
        old_by_port = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or []
            if isinstance(p, dict) and isinstance(p.get("nodePort"), int)
        }
        old_held = {
            p["nodePort"]
            for p in old_spec.get("ports") or []
            if isinstance(p, dict) and isinstance(p.get("nodePort"), int)
        }
        for index, port in enumerate(ports):
            if not wants_ports and svc_type != "LoadBalancer":
                port.pop("nodePort", None)
                continue
            requested = port.get("nodePort")
            previous = old_by_port.get((port.get("port"), port.get("protocol")))
            if requested is not None and (
                isinstance(requested, bool) or not isinstance(requested, int)
            ):
                raise DefaultingError(
                    f"spec.ports[{index}].nodePort",
                    f"Invalid value: {requested!r}: must be an integer",
                )
            if requested in (None, 0):
                if previous is not None:
                    port["nodePort"] = previous
                elif wants_ports:
                    port["nodePort"] = self._allocate_port()
                else:
                    port.pop("nodePort", None)
            elif requested not in old_held:
                self._reserve_port(requested, index)
