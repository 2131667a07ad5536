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
        session affinity:    per ready backend a dynamic set of client addresses
                             (aff_<hash>, with the listener's timeout): a client in
                             a set goes to that backend's chain, others to one
                             chosen by numgen; the backend chain <listener>_<i>
                             (re)adds the client with a fresh timeout and DNATs
    chain postrouting        nat, hook postrouting: masquerade connections DNATed
                             from one of our VIPs that leave the node, so replies
                             come back through us (not on ``lo``: masquerading
                             loopback-to-loopback DNAT breaks it, and a local
                             client's source is already this node's). A listener
                             with ``masquerade`` off (externalTrafficPolicy Local)
                             keeps the client's address: its VIP is not in the set

Only the first packet of a connection traverses nat chains; conntrack keeps
every later packet (and every open connection, across table replacements) on
the backend its first packet was sent to. Session affinity is kube-proxy's
iptables shape (``-m recent --rcheck --seconds T`` per endpoint, ``--set`` in
the endpoint chain) in nftables terms: a set per backend, ``update @set {
ip saddr timeout Ts }`` on every new connection. A table replacement would
empty the sets, so the caller reads them first (:func:`parse_pins`) and
passes them back: each backend still ready keeps its clients with their
remaining time (sets are named by listener and backend, not by position),
and the clients of a backend that left go to numgen and are pinned anew.
Backends that are not ready are left out of the map. Ordering is canonical
(family, address, protocol, port; backends in the state's round-robin order),
so one state (and one set of pins) always renders to the same text.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

from ironlb.dataplane.state import Backend, DesiredState, IPAddress, ListenerKey, ListenerSpec

TABLE_FAMILY = "inet"
TABLE_NAME = "ironlb"
_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,30}$")
#: Pinned clients per backend of a listener with session affinity; past it new
#: clients are still served (numgen), only not pinned (the set update fails).
AFFINITY_SET_SIZE = 65535
_SET_RE = re.compile(r"^\s*set (aff_[0-9a-f]{16}) \{$")
_EXPIRES_RE = re.compile(r"^(\S+)(?: timeout \d+s)? expires (\d+)s$")

#: Pinned clients of one table: affinity set name -> (client address, seconds left).
Pins = Mapping[str, Sequence[tuple[IPAddress, int]]]


class RenderError(ValueError):
    """The state cannot be expressed as an nftables table (bad input)."""


def listener_chain(key: ListenerKey) -> str:
    """The chain name of one listener, e.g. ``tcp_198_18_0_200_80``."""
    addr = key.vip.compressed.replace(".", "_").replace(":", "_")
    return f"{key.protocol}_{addr}_{key.port}"


def affinity_set(key: ListenerKey, backend: Backend) -> str:
    """The name of the set of clients pinned to ``backend`` of listener ``key``,
    e.g. ``aff_3f9c0e1a2b4d5e6f``: a hash, so it is stable while both exist."""
    digest = hashlib.blake2b(f"{key}|{backend}".encode(), digest_size=8).hexdigest()
    return f"aff_{digest}"


def parse_pins(listing: str) -> dict[str, list[tuple[IPAddress, int]]]:
    """The pinned clients in an ``nft list`` text of our table, listed with
    numeric times (``-T``: ``10.9.0.1 expires 491s``): per affinity set, the
    client addresses and their seconds left. Lines it does not recognise are
    skipped (a foreign edit loses those pins, nothing else)."""
    pins: dict[str, list[tuple[IPAddress, int]]] = {}
    current: str | None = None
    body = ""
    inside = False
    for line in listing.splitlines():
        match = _SET_RE.match(line)
        if match:
            current, body, inside = match.group(1), "", False
            continue
        if current is None:
            continue
        text = line.strip()
        if text.startswith("elements = {"):
            inside, text = True, text[len("elements = {") :]
        if inside:
            body += " " + text
            if text.endswith("}"):
                inside = False
                pins[current] = _elements(body.strip().rstrip("}"))
                current = None
        elif text == "}":
            current = None
    return pins


def without_pins(listing: str) -> str:
    """``listing`` without the elements of the affinity sets: what stays equal
    while clients come and go (the kernel adds and expires them)."""
    out: list[str] = []
    in_set = inside = False
    for line in listing.splitlines():
        text = line.strip()
        if _SET_RE.match(line):
            in_set = True
        elif in_set and text.startswith("elements = {"):
            inside = True
        elif in_set and not inside and text == "}":
            in_set = False
        if inside:
            inside = not text.endswith("}")
            continue
        out.append(line)
    return "\n".join(out)


def _elements(body: str) -> list[tuple[IPAddress, int]]:
    found = []
    for item in body.split(","):
        match = _EXPIRES_RE.match(item.strip())
        if match is None:
            continue
        try:
            found.append((ipaddress.ip_address(match.group(1)), int(match.group(2))))
        except ValueError:
            continue
    return found


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
    if spec.options.affinity_timeout is not None:
        chain = listener_chain(key)
        for i, backend in enumerate(ready):
            pinned = f"{family} saddr @{affinity_set(key, backend)}"
            rules.append(f"{proto} {pinned} goto {chain}_{i} {comment}")
        targets = ", ".join(f"{i} : goto {chain}_{i}" for i in range(len(ready)))
        rules.append(f"{proto} numgen inc mod {len(ready)} vmap {{ {targets} }} {comment}")
        return rules
    targets = ", ".join(f"{i} : {b.address.compressed} . {b.port}" for i, b in enumerate(ready))
    rules.append(
        f"{proto} dnat {family} to numgen inc mod {len(ready)} map {{ {targets} }} {comment}"
    )
    return rules


def _affinity_timeout(spec: ListenerSpec) -> int:
    """The set timeout in whole seconds (at least 1; nft counts in seconds here)."""
    assert spec.options.affinity_timeout is not None
    return max(1, round(spec.options.affinity_timeout))


def _backend_chains(key: ListenerKey, spec: ListenerSpec) -> list[str]:
    """Per ready backend of an affinity listener: pin (refresh) the client, then DNAT.

    Two rules, so a full set (the update fails and ends its rule) still DNATs.
    """
    family = _ip(key.vip.version)
    timeout = _affinity_timeout(spec)
    comment = f'comment "{key}"'
    lines: list[str] = []
    for i, backend in enumerate(spec.ready):
        name = affinity_set(key, backend)
        addr = backend.address.compressed
        target = (
            f"{addr}:{backend.port}" if backend.address.version == 4 else f"[{addr}]:{backend.port}"
        )
        lines += _chain(
            f"{listener_chain(key)}_{i}",
            [
                f"update @{name} {{ {family} saddr timeout {timeout}s }} {comment}",
                f"meta l4proto {key.protocol} dnat {family} to {target} {comment}",
            ],
        )
    return lines


def _affinity_sets(key: ListenerKey, spec: ListenerSpec, pins: Pins) -> list[str]:
    """The client sets of an affinity listener, holding the pins carried over."""
    kind = "ipv4_addr" if key.vip.version == 4 else "ipv6_addr"
    timeout = _affinity_timeout(spec)
    lines: list[str] = []
    for backend in spec.ready:
        name = affinity_set(key, backend)
        kept = sorted(
            (addr, min(left, timeout))
            for addr, left in pins.get(name, ())
            if addr.version == key.vip.version and left > 0
        )
        lines += [
            f"\tset {name} {{",
            f"\t\ttype {kind}",
            f"\t\tsize {AFFINITY_SET_SIZE}",
            "\t\tflags dynamic,timeout",
            f"\t\ttimeout {timeout}s",
        ]
        if kept:
            elements = ", ".join(
                f"{addr.compressed} timeout {timeout}s expires {left}s" for addr, left in kept
            )
            lines.append(f"\t\telements = {{ {elements} }}")
        lines.append("\t}")
    return lines


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


def render_table(
    state: DesiredState, table: str = TABLE_NAME, owner_mark: str = "", pins: Pins | None = None
) -> str:
    """The nftables text that atomically replaces ``table inet <table>`` with ``state``.

    ``owner_mark`` becomes the table's ``comment`` (see :mod:`.owner`).
    ``pins`` (from :func:`parse_pins` of the table being replaced) are put
    back into the affinity sets of backends that are still ready, with their
    remaining seconds (at most the listener's timeout). Raises
    :class:`RenderError` for a state no table can express.
    """
    pins = pins or {}
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
        *(
            line
            for key in keys
            if state.listeners[key].options.affinity_timeout is not None
            for line in _affinity_sets(key, state.listeners[key], pins)
        ),
        *_chain(
            "prerouting",
            ["type nat hook prerouting priority dstnat; policy accept;", "jump services"],
        ),
        *_chain("output", ["type nat hook output priority -100; policy accept;", "jump services"]),
        *_chain("services", dispatch),
    ]
    for key in keys:
        spec = state.listeners[key]
        lines += _chain(listener_chain(key), _listener_rules(key, spec))
        if spec.options.affinity_timeout is not None:
            lines += _backend_chains(key, spec)
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
