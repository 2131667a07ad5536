"""Render a :class:`~ironlb.dataplane.state.DesiredState` as one nftables table (pure).

The output is the text of one ``nft -f`` transaction that replaces the whole
``table inet ironlb`` atomically: it creates the table if it is missing (so the
``delete`` cannot fail), deletes it and defines it again. The kernel applies the
three commands as one batch, so packets see either the old table or the new one.

Layout of the table::

    set vips4 / vips6        listener VIPs whose connections are masqueraded
    chain prerouting         nat, hook prerouting  -> jump services
    chain output             nat, hook output      -> jump services (node-local clients)
    chain services           VIP . l4proto . port  vmap -> one chain per listener
    chain <proto>_<vip>_<port>
        source ranges:       clients outside them are rejected (loadBalancerSourceRanges)
        ready backends:      dnat to numgen inc mod N map { 0 : addr . port, ... }
        none ready:          reject (TCP reset / ICMP port unreachable)
    chain postrouting        nat, hook postrouting: masquerade connections DNATed
                             from one of our VIPs that leave the node, so replies
                             come back through us (not on ``lo``: masquerading
                             loopback-to-loopback DNAT breaks it, and a local
                             client's source is already this node's). A listener
                             with ``masquerade`` off (externalTrafficPolicy Local)
                             keeps the client's address: its VIP is not in the set

Only the first packet of a connection traverses nat chains; conntrack keeps
every later packet (and every open connection, across table replacements) on
the backend its first packet was sent to. Backends that are not ready are left
out of the map. Ordering is canonical (family, address, protocol, port;
backends in the state's round-robin order), so one state always renders to the
same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ironlb.dataplane.state import Backend, DesiredState, IPAddress, ListenerKey, ListenerSpec

TABLE_FAMILY = "inet"
TABLE_NAME = "ironlb"
_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,30}$")


class RenderError(ValueError):
    """The state cannot be expressed as an nftables table (bad input)."""


def listener_chain(key: ListenerKey) -> str:
    """The chain name of one listener, e.g. ``tcp_198_18_0_200_80``."""
    addr = key.vip.compressed.replace(".", "_").replace(":", "_")
    return f"{key.protocol}_{addr}_{key.port}"


def _sort_key(key: ListenerKey) -> tuple[int, int, str, int]:
    # IPv4Address and IPv6Address do not compare with each other.
    return (key.vip.version, int(key.vip), key.protocol, key.port)


def _check(key: ListenerKey, backends: Iterable[Backend]) -> None:
    if key.protocol not in ("tcp", "udp"):
        raise RenderError(f"listener {key}: protocol must be tcp or udp, got {key.protocol!r}")
    if not 1 <= key.port <= 65535:
        raise RenderError(f"listener {key}: port must be 1-65535, got {key.port}")
    for backend in backends:
        if backend.address.version != key.vip.version:
            raise RenderError(
                f"listener {key}: IPv{backend.address.version} backend {backend} for an "
                f"IPv{key.vip.version} VIP (NAT cannot change the address family)"
            )
        if not 1 <= backend.port <= 65535:
            raise RenderError(f"listener {key}: backend port must be 1-65535, got {backend}")


def _ip(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def _reject(key: ListenerKey) -> str:
    return (
        "reject with tcp reset" if key.protocol == "tcp" else "reject with icmpx port-unreachable"
    )


def _listener_rules(key: ListenerKey, spec: ListenerSpec) -> list[str]:
    ready = spec.ready
    proto = f"meta l4proto {key.protocol}"
    comment = f'comment "{key}"'
    family = _ip(key.vip.version)
    rules: list[str] = []
    ranges = spec.options.source_ranges
    if ranges:
        mine = sorted(
            (n for n in ranges if n.version == key.vip.version),
            key=lambda n: (int(n.network_address), n.prefixlen),
        )
        if mine:
            allowed = ", ".join(n.compressed for n in mine)
            rules.append(f"{proto} {family} saddr != {{ {allowed} }} {_reject(key)} {comment}")
        else:  # no range of this family: nobody of it may connect
            rules.append(f"{proto} {_reject(key)} {comment}")
            return rules
    if not ready:
        rules.append(f"{proto} {_reject(key)} {comment}")
        return rules
    targets = ", ".join(f"{i} : {b.address.compressed} . {b.port}" for i, b in enumerate(ready))
    rules.append(
        f"{proto} dnat {family} to numgen inc mod {len(ready)} map {{ {targets} }} {comment}"
    )
    return rules


def _vmap(version: int, keys: list[ListenerKey]) -> str | None:
    if not keys:
        return None
    entries = ", ".join(
        f"{k.vip.compressed} . {k.protocol} . {k.port} : jump {listener_chain(k)}" for k in keys
    )
    return f"{_ip(version)} daddr . meta l4proto . th dport vmap {{ {entries} }}"


def _set(name: str, kind: str, vips: Sequence[IPAddress]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {kind}"]
    if vips:
        lines.append(f"\t\telements = {{ {', '.join(v.compressed for v in vips)} }}")
    lines.append("\t}")
    return lines


def _chain(name: str, body: Iterable[str]) -> list[str]:
    return [f"\tchain {name} {{", *(f"\t\t{line}" for line in body), "\t}"]


def render_table(state: DesiredState, table: str = TABLE_NAME, owner_mark: str = "") -> str:
    """The nftables text that atomically replaces ``table inet <table>`` with ``state``.

    ``owner_mark`` becomes the table's ``comment`` (see :mod:`.owner`).
    Raises :class:`RenderError` for a state no table can express.
    """
    if '"' in owner_mark or "\n" in owner_mark:
        raise RenderError(f"an owner mark cannot hold quotes or newlines: {owner_mark!r}")
    if not _NAME_RE.match(table):
        raise RenderError(f"table name must be a letter then up to 30 of [a-zA-Z0-9_], {table!r}")
    keys = sorted(state.listeners, key=_sort_key)
    for key in keys:
        _check(key, state.listeners[key].backends)
    masqueraded = {k.vip for k in keys if state.listeners[k].options.masquerade}
    vips = sorted(masqueraded, key=lambda v: (v.version, int(v)))
    vips4 = [v for v in vips if v.version == 4]
    vips6 = [v for v in vips if v.version == 6]
    dispatch = [
        rule
        for rule in (
            _vmap(4, [k for k in keys if k.vip.version == 4]),
            _vmap(6, [k for k in keys if k.vip.version == 6]),
        )
        if rule is not None
    ]
    lines = [
        f"# ironlb fast path: {len(keys)} listener(s); replaces the whole table atomically",
        f"table {TABLE_FAMILY} {table} {{}}",
        f"delete table {TABLE_FAMILY} {table}",
        f"table {TABLE_FAMILY} {table} {{",
        *([f'  comment "{owner_mark}"'] if owner_mark else []),
        *_set("vips4", "ipv4_addr", vips4),
        *_set("vips6", "ipv6_addr", vips6),
        *_chain(
            "prerouting",
            ["type nat hook prerouting priority dstnat; policy accept;", "jump services"],
        ),
        *_chain("output", ["type nat hook output priority -100; policy accept;", "jump services"]),
        *_chain("services", dispatch),
    ]
    for key in keys:
        lines += _chain(listener_chain(key), _listener_rules(key, state.listeners[key]))
    lines += _chain(
        "postrouting",
        [
            "type nat hook postrouting priority srcnat; policy accept;",
            'ct status dnat ct original ip daddr @vips4 oifname != "lo" masquerade',
            'ct status dnat ct original ip6 daddr @vips6 oifname != "lo" masquerade',
        ],
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_removal(table: str = TABLE_NAME) -> str:
    """The nftables text that removes the table; a no-op when it does not exist."""
    if not _NAME_RE.match(table):
        raise RenderError(f"table name must be a letter then up to 30 of [a-zA-Z0-9_], {table!r}")
    return f"table {TABLE_FAMILY} {table} {{}}\ndelete table {TABLE_FAMILY} {table}\n"
