"""Text and JSON views of a lab, for the CLI."""

from __future__ import annotations

from typing import Any

from ironlb.lab.netlab.lab import Lab
from ironlb.lab.netlab.plan import LabHost, vip_address


def host_json(host: LabHost) -> dict[str, str]:
    return {
        "name": host.name,
        "role": host.role,
        "netns": host.netns,
        "ifname": host.ifname,
        "mac": host.mac,
        "ipv4": str(host.ipv4),
        "ipv6": str(host.ipv6),
    }


def lab_json(lab: Lab) -> dict[str, Any]:
    return {
        "prefix": lab.prefix,
        "switch_netns": lab.switch_netns,
        "hosts": [host_json(h) for h in lab.hosts],
        "vips": {"ipv4_first": str(vip_address(0, 4)), "ipv6_first": str(vip_address(0, 6))},
    }


def lab_table(lab: Lab) -> str:
    rows = [("NAME", "NETNS", "IF", "MAC", "IPV4", "IPV6")]
    rows += [(h.name, h.netns, h.ifname, h.mac, str(h.ipv4), str(h.ipv6)) for h in lab.hosts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(
        f"switch: {lab.switch_netns}   VIPs from {vip_address(0, 4)} / {vip_address(0, 6)}"
        f"   remove: ironlb lab net down --prefix {lab.prefix}"
    )
    return "\n".join(lines)
