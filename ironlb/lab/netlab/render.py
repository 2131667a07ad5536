"""Text and JSON views of a lab, for the CLI (pure: a Lab in, text or dicts out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ironlb.lab.netlab.lab import Lab
from ironlb.lab.netlab.plan import LabHost, PodNetwork, vip_address


def host_json(host: LabHost) -> dict[str, str]:
    """One host as strings: name, role, netns, ifname, mac, ipv4, ipv6 (+ node for a pod)."""
    out = {
        "name": host.name,
        "role": host.role,
        "netns": host.netns,
        "ifname": host.ifname,
        "mac": host.mac,
        "ipv4": str(host.ipv4),
        "ipv6": str(host.ipv6),
    }
    if host.node is not None:
        out["node"] = host.node
    return out


def pod_network_json(net: PodNetwork) -> dict[str, str]:
    return {
        "node": net.node,
        "ipv4": str(net.ipv4),
        "ipv6": str(net.ipv6),
        "gateway4": str(net.gateway4),
        "gateway6": str(net.gateway6),
        "via4": str(net.node_ipv4),
        "via6": str(net.node_ipv6),
    }


def lab_json(
    lab: Lab, serving: tuple[Sequence[int], Sequence[int]] | None = None
) -> dict[str, Any]:
    """The whole lab; ``serving`` = (tcp ports, udp ports) when pod servers run."""
    out: dict[str, Any] = {
        "prefix": lab.prefix,
        "switch_netns": lab.switch_netns,
        "hosts": [host_json(h) for h in lab.hosts],
        "pods": [host_json(p) for p in lab.pods],
        "pod_networks": [pod_network_json(n) for n in lab.pod_networks],
        "vips": {"ipv4_first": str(vip_address(0, 4)), "ipv6_first": str(vip_address(0, 6))},
    }
    if serving is not None:
        out["pod_servers"] = {
            "tcp": list(serving[0]),
            "udp": list(serving[1]),
            "pids": {name: proc.pid for name, proc in lab.pod_servers.items()},
        }
    return out


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def lab_table(lab: Lab, serving: tuple[Sequence[int], Sequence[int]] | None = None) -> str:
    """Hosts (and pods, if any) as aligned text tables plus a how-to-remove line."""
    rows = [("NAME", "NETNS", "IF", "MAC", "IPV4", "IPV6")]
    rows += [(h.name, h.netns, h.ifname, h.mac, str(h.ipv4), str(h.ipv6)) for h in lab.hosts]
    lines = _table(rows)
    if lab.pods:
        pod_rows = [("POD", "NODE", "NETNS", "MAC", "IPV4", "IPV6")]
        pod_rows += [
            (p.name, p.node or "-", p.netns, p.mac, str(p.ipv4), str(p.ipv6)) for p in lab.pods
        ]
        lines += ["", *_table(pod_rows)]
        nets = ", ".join(f"{n.node} {n.ipv4} {n.ipv6}" for n in lab.pod_networks)
        lines.append(f"pod CIDRs: {nets}")
    if serving is not None:
        tcp = ",".join(map(str, serving[0])) or "-"
        udp = ",".join(map(str, serving[1])) or "-"
        lines.append(f"pod servers: tcp {tcp}  udp {udp}")
    lines.append(
        f"switch: {lab.switch_netns}   VIPs from {vip_address(0, 4)} / {vip_address(0, 6)}"
        f"   remove: ironlb lab net down --prefix {lab.prefix}"
    )
    return "\n".join(lines)
