"""Parse the ``ironlb forward`` YAML file into typed values (pure: no sockets).

The file is read with PyYAML's *compose* step so every node keeps its line
number; every error names the file, the line and the field, e.g.::

    lb.yaml:7: listeners[0].port: must be an integer 1-65535, got 'http'

The result converts to the :class:`~ironlb.dataplane.state.DesiredState` the
forwarder applies, plus per-listener :class:`ListenerOptions` and health-check
settings. A listener's ``mode`` (``proxy``, the default, or ``kernel``, also
spelt ``nftables``; settable for all listeners under ``defaults``) picks the
userspace proxy or the kernel fast path; ``source_ranges`` (CIDRs) limits who
may connect; ``session_affinity: {client_ip: {timeout: 10800}}`` pins each
client address to one backend (both modes; the timeout follows Kubernetes'
``ClientIPConfig.timeoutSeconds``: default 10800, at most 86400 seconds;
``session_affinity: none`` turns a default off); ``proxy_protocol`` (``v1``,
``v2`` or ``none``; TCP listeners in proxy mode) sends HAProxy's PROXY header
to the backends. A backend that is its own listener, or leads back to it
through other listeners of the file, is refused (:mod:`ironlb.dataplane.loops`):
it would loop every connection until the connection limit. The optional
``announce`` section is validated and exposed as :class:`AnnounceConfig` for
the ARP/NDP announcer; the forwarder ignores it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import yaml

from ironlb.common.addresses import IPAddress, IPNetwork, vip_problem
from ironlb.common.ifnames import interface_name_problem
from ironlb.common.protocols import PROTOCOLS, Protocol
from ironlb.dataplane.loops import reached_listener
from ironlb.dataplane.settings import AnnounceConfig, GarpConfig
from ironlb.dataplane.state import (
    AFFINITY_TIMEOUT_DEFAULT,
    AFFINITY_TIMEOUT_MAX,
    PROXY_VERSIONS,
    Backend,
    DesiredState,
    ListenerKey,
    ListenerOptions,
    ListenerSpec,
    Mode,
    ProxyVersion,
)

T = TypeVar("T")
#: ``mode`` values the file accepts; ``nftables`` is the older name of ``kernel``.
MODE_NAMES: dict[str, Mode] = {"proxy": "proxy", "kernel": "kernel", "nftables": "kernel"}

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"


class ConfigError(ValueError):
    """A bad config file; ``str()`` is ``file:line: field: message``."""

    def __init__(self, source: str, line: int, path: str, message: str) -> None:
        self.source = source
        self.line = line
        self.path = path
        self.message = message
        where = f"{source}:{line}: " if line else f"{source}: "
        super().__init__(f"{where}{path + ': ' if path else ''}{message}")


@dataclass(frozen=True)
class HealthCheck:
    """An active check per backend, HAProxy-style rise/fall (times in seconds).

    ``type`` ``tcp``: a TCP connect. ``udp`` (UDP listeners only): ``send`` is
    sent in one datagram and the check passes when an answer containing
    ``expect`` (any answer when empty) arrives within ``timeout``, like
    HAProxy's ``udp-check send``/``expect`` or a DNS query payload. In the
    file ``send``/``expect`` are text, ``send_hex``/``expect_hex`` hex bytes.
    """

    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    port: int | None = None  # check this port instead of the backend's
    type: Protocol = "tcp"
    send: bytes = b""
    expect: bytes = b""


@dataclass(frozen=True)
class ListenerConfig:
    """One listener from the file."""

    key: ListenerKey
    backends: tuple[Backend, ...]
    options: ListenerOptions
    health_check: HealthCheck | None
    line: int = 0


@dataclass(frozen=True)
class ForwardConfig:
    """A whole parsed file."""

    listeners: tuple[ListenerConfig, ...]
    announce: AnnounceConfig | None = None
    source: str = "<config>"

    def mode_keys(self, mode: Mode) -> frozenset[ListenerKey]:
        """The listeners forwarded by ``mode``."""
        return frozenset(lst.key for lst in self.listeners if lst.options.mode == mode)

    def desired_state(
        self, down: Callable[[ListenerKey, Backend], bool] | None = None
    ) -> DesiredState:
        """The state to apply; ``down(key, backend)`` marks backends not ready.

        With an ``announce`` section the node owns every listener address
        (``vips``); without one it owns none and only listens.
        """
        listeners: dict[ListenerKey, ListenerSpec] = {}
        for lst in self.listeners:
            backends = lst.backends
            if down is not None:
                backends = tuple(replace(b, ready=not down(lst.key, b)) for b in backends)
            listeners[lst.key] = ListenerSpec(backends, lst.options)
        vips = frozenset(lst.key.vip for lst in self.listeners) if self.announce else frozenset()
        return DesiredState(listeners=listeners, vips=vips)


# --------------------------------------------------------------------------- parsing


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node | None, path: str, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 0
        return ConfigError(self.source, line, path, message)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return _Unprintable("a list" if isinstance(node, yaml.SequenceNode) else "a mapping")
        return self._constructor.construct_object(node, deep=True)

    def mapping(
        self, node: yaml.Node, path: str, allowed: Mapping[str, bool]
    ) -> dict[str, yaml.Node]:
        """Keys of a mapping node; ``allowed`` maps key -> required."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, path, f"must be a mapping, got {self.describe(node)}")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            label = _label(key)
            kpath = f"{path}.{label}" if path else label
            if not isinstance(key, str) or key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(key_node, kpath, f"unknown field (known: {known})")
            if key in out:
                raise self.error(key_node, kpath, "duplicate field")
            out[key] = value_node
        for key, required in allowed.items():
            if required and key not in out:
                raise self.error(node, f"{path}.{key}" if path else key, "required field missing")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, path, f"must be a list, got {self.describe(node)}")
        return list(node.value)

    def describe(self, node: yaml.Node) -> str:
        value = self.scalar(node)
        if isinstance(value, _Unprintable):
            return str(value)
        return repr(value)

    def choice(self, node: yaml.Node, path: str, choices: Mapping[str, T], expected: str) -> T:
        """The value ``choices`` maps the scalar ``node`` to; else an error saying
        ``must be {expected}, got ...``."""
        value = self.scalar(node)
        if not isinstance(value, str) or value not in choices:
            raise self.error(node, path, f"must be {expected}, got {self.describe(node)}")
        return choices[value]

    def integer(self, node: yaml.Node, path: str, lo: int, hi: int | None = None) -> int:
        value = self.scalar(node)
        ok = node.tag == _INT_TAG and isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < lo or (hi is not None and value > hi):
            what = f"an integer {lo}-{hi}" if hi is not None else f"an integer >= {lo}"
            raise self.error(node, path, f"must be {what}, got {self.describe(node)}")
        return int(value)

    def number(self, node: yaml.Node, path: str, lo: float, *, strict: bool) -> float:
        value = self.scalar(node)
        ok = node.tag in (_INT_TAG, _FLOAT_TAG) and isinstance(value, int | float)
        ok = ok and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < lo or (strict and value == lo):
            what = f"> {lo:g}" if strict else f">= {lo:g}"
            raise self.error(
                node, path, f"must be a number of seconds {what}, got {self.describe(node)}"
            )
        return float(value)

    def string(self, node: yaml.Node, path: str) -> str:
        value = self.scalar(node)
        if node.tag != _STR_TAG or not isinstance(value, str) or not value:
            raise self.error(node, path, f"must be a non-empty string, got {self.describe(node)}")
        return value

    def ip(self, node: yaml.Node, path: str) -> IPAddress:
        text = self.string(node, path)
        try:
            return ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            raise self.error(
                node, path, f"must be an IPv4 or IPv6 address (no host names), got {text!r}"
            ) from None


class _Unprintable(str):
    """Placeholder for a non-scalar node where a scalar was expected."""


_TOP = {"listeners": True, "defaults": False, "announce": False}
_PROXY_VERSIONS: dict[str, ProxyVersion | None] = {**{v: v for v in PROXY_VERSIONS}, "none": None}
_OPTION_FIELDS = {
    "mode": False,
    "connect_timeout": False,
    "idle_timeout": False,
    "retries": False,
    "max_connections": False,
    "session_timeout": False,
    "max_sessions": False,
    "source_ranges": False,
    "expect_reply": False,
    "reply_timeout": False,
    "session_affinity": False,
    "proxy_protocol": False,
    "health_check": False,
}
_LISTENER = {
    "address": True,
    "port": True,
    "protocol": False,
    "backends": True,
    "name": False,
    **_OPTION_FIELDS,
}
_HEALTH = {
    "interval": False,
    "timeout": False,
    "rise": False,
    "fall": False,
    "port": False,
    "type": False,
    "send": False,
    "send_hex": False,
    "expect": False,
    "expect_hex": False,
}


def parse_config(text: str, source: str = "<config>") -> ForwardConfig:
    """Parse and validate a config; raises :class:`ConfigError`."""
    ctx = _Ctx(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = _one_line(exc.problem or exc)
        raise ConfigError(source, line, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. ReaderError, whose text spans lines
        raise ConfigError(source, 0, "", f"invalid YAML: {_one_line(exc)}") from None
    if root is None:
        raise ConfigError(source, 0, "", "the file is empty; it needs a 'listeners' list")
    _check_scalars(ctx, root, "", set())
    if not isinstance(root, yaml.MappingNode):
        got = ctx.describe(root)
        raise ctx.error(root, "", f"the file must be a mapping with a 'listeners' list, got {got}")
    top = ctx.mapping(root, "", _TOP)
    defaults = ListenerOptions()
    default_health: HealthCheck | None = None
    if "defaults" in top:
        fields = ctx.mapping(top["defaults"], "defaults", _OPTION_FIELDS)
        defaults, default_health = _options(ctx, fields, "defaults", defaults, None)
    listeners: list[ListenerConfig] = []
    seen: dict[ListenerKey, int] = {}
    items = ctx.sequence(top["listeners"], "listeners")
    if not items:
        raise ctx.error(top["listeners"], "listeners", "must list at least one listener")
    for i, node in enumerate(items):
        lst = _listener(ctx, node, f"listeners[{i}]", defaults, default_health)
        if lst.key in seen:
            raise ctx.error(
                node,
                f"listeners[{i}]",
                f"duplicate listener {lst.key} (also listeners[{seen[lst.key]}])",
            )
        seen[lst.key] = i
        listeners.append(lst)
    _check_loops(ctx, items, listeners)
    announce = _announce(ctx, top["announce"]) if "announce" in top else None
    if announce is not None:
        for i, node in enumerate(items):
            _check_announceable(ctx, node, f"listeners[{i}]", listeners[i].key.vip)
    return ForwardConfig(listeners=tuple(listeners), announce=announce, source=source)


def _label(key: object) -> str:
    """A mapping key as it appears in a field path: quoted unless a plain word."""
    plain = isinstance(key, str) and key.isprintable() and key.strip() == key != ""
    return str(key) if plain else repr(key)


def _one_line(text: object) -> str:
    """PyYAML's messages span lines (the mark's excerpt); errors are one line."""
    return " ".join(str(text).split())


def _check_scalars(ctx: _Ctx, node: yaml.Node, path: str, seen: set[int]) -> None:
    """Refuse, at its line and field, a scalar PyYAML cannot construct.

    An explicit tag on a value it does not fit (``port: !!int abc``, ``!foo x``,
    ``!!binary '%%'``) only fails when the value is constructed, long after
    :func:`yaml.compose` accepted the text; checking every scalar once, up
    front, keeps the field checks free of PyYAML's own exceptions.
    """
    if id(node) in seen:  # an alias: already checked where its anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        try:
            ctx._constructor.construct_object(node, deep=True)
        except Exception:  # PyYAML's constructors raise anything (AttributeError for !!timestamp)
            raise ctx.error(
                node, path, f"invalid YAML: cannot read {node.value!r} as {node.tag}"
            ) from None
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_scalars(ctx, item, f"{path}[{i}]", seen)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _check_scalars(ctx, key_node, path or "(top level)", seen)
            key = _label(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            _check_scalars(ctx, value_node, f"{path}.{key}" if path else key, seen)


def load_config(path: str) -> ForwardConfig:
    """Read and parse a file; unreadable files are a :class:`ConfigError` too."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, 0, "", f"cannot read: {exc}") from None
    return parse_config(text, path)


def _options(
    ctx: _Ctx,
    fields: dict[str, yaml.Node],
    path: str,
    base: ListenerOptions,
    health: HealthCheck | None,
) -> tuple[ListenerOptions, HealthCheck | None]:
    opts = base
    if "mode" in fields:
        expected = "proxy or kernel (or nftables, its older name)"
        mode = ctx.choice(fields["mode"], f"{path}.mode", MODE_NAMES, expected)
        opts = replace(opts, mode=mode)
    if "connect_timeout" in fields:
        value = ctx.number(fields["connect_timeout"], f"{path}.connect_timeout", 0, strict=True)
        opts = replace(opts, connect_timeout=value)
    if "idle_timeout" in fields:
        value = ctx.number(fields["idle_timeout"], f"{path}.idle_timeout", 0, strict=True)
        opts = replace(opts, idle_timeout=value)
    if "retries" in fields:
        opts = replace(opts, retries=ctx.integer(fields["retries"], f"{path}.retries", 0, 100))
    if "max_connections" in fields:
        value_i = ctx.integer(fields["max_connections"], f"{path}.max_connections", 1)
        opts = replace(opts, max_connections=value_i)
    if "session_timeout" in fields:
        value = ctx.number(fields["session_timeout"], f"{path}.session_timeout", 0, strict=True)
        opts = replace(opts, udp_session_timeout=value)
    if "max_sessions" in fields:
        value_i = ctx.integer(fields["max_sessions"], f"{path}.max_sessions", 1)
        opts = replace(opts, udp_max_sessions=value_i)
    if "source_ranges" in fields:
        opts = replace(opts, source_ranges=_networks(ctx, fields["source_ranges"], path))
    if "expect_reply" in fields:
        enode = fields["expect_reply"]
        if enode.tag != _BOOL_TAG:
            raise ctx.error(
                enode, f"{path}.expect_reply", f"must be true or false, got {ctx.describe(enode)}"
            )
        opts = replace(opts, udp_expect_reply=bool(ctx.scalar(enode)))
    if "reply_timeout" in fields:
        value = ctx.number(fields["reply_timeout"], f"{path}.reply_timeout", 0, strict=True)
        opts = replace(opts, udp_reply_timeout=value)
    if "session_affinity" in fields:
        timeout = _affinity(ctx, fields["session_affinity"], f"{path}.session_affinity")
        opts = replace(opts, affinity_timeout=timeout)
    if "proxy_protocol" in fields:
        version = ctx.choice(
            fields["proxy_protocol"], f"{path}.proxy_protocol", _PROXY_VERSIONS, "v1, v2 or none"
        )
        opts = replace(opts, proxy_protocol=version)
    if "health_check" in fields:
        health = _health(ctx, fields["health_check"], f"{path}.health_check")
    return opts, health


def _affinity(ctx: _Ctx, node: yaml.Node, path: str) -> float | None:
    """``none`` -> ``None``; ``{client_ip: {timeout: N}}`` -> N seconds (default 10800)."""
    if isinstance(node, yaml.ScalarNode):
        if ctx.scalar(node) in ("none", "None", None):
            return None
        raise ctx.error(
            node,
            path,
            f"must be none or {{client_ip: {{timeout: SECONDS}}}}, got {ctx.describe(node)}",
        )
    fields = ctx.mapping(node, path, {"client_ip": True})
    cnode = fields["client_ip"]
    if isinstance(cnode, yaml.ScalarNode) and cnode.tag == _NULL_TAG:
        return float(AFFINITY_TIMEOUT_DEFAULT)
    client = ctx.mapping(cnode, f"{path}.client_ip", {"timeout": False})
    if "timeout" not in client:
        return float(AFFINITY_TIMEOUT_DEFAULT)
    return float(
        ctx.integer(client["timeout"], f"{path}.client_ip.timeout", 1, AFFINITY_TIMEOUT_MAX)
    )


def _networks(ctx: _Ctx, node: yaml.Node, path: str) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for k, item in enumerate(ctx.sequence(node, f"{path}.source_ranges")):
        where = f"{path}.source_ranges[{k}]"
        text = ctx.string(item, where)
        try:
            nets.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ctx.error(item, where, f"must be a CIDR such as 198.18.0.0/24: {exc}") from None
    return tuple(nets)


def _health(ctx: _Ctx, node: yaml.Node, path: str) -> HealthCheck | None:
    if isinstance(node, yaml.ScalarNode) and node.tag in (_BOOL_TAG, _NULL_TAG):
        return HealthCheck() if ctx.scalar(node) else None
    fields = ctx.mapping(node, path, _HEALTH)
    check = HealthCheck()
    if "interval" in fields:
        check = replace(
            check, interval=ctx.number(fields["interval"], f"{path}.interval", 0, strict=True)
        )
    if "timeout" in fields:
        check = replace(
            check, timeout=ctx.number(fields["timeout"], f"{path}.timeout", 0, strict=True)
        )
    if "rise" in fields:
        check = replace(check, rise=ctx.integer(fields["rise"], f"{path}.rise", 1, 1000))
    if "fall" in fields:
        check = replace(check, fall=ctx.integer(fields["fall"], f"{path}.fall", 1, 1000))
    if "port" in fields:
        check = replace(check, port=ctx.integer(fields["port"], f"{path}.port", 1, 65535))
    if "type" in fields:
        tnode = fields["type"]
        kind = ctx.scalar(tnode)
        if kind not in PROTOCOLS:
            raise ctx.error(tnode, f"{path}.type", f"must be tcp or udp, got {ctx.describe(tnode)}")
        check = replace(check, type="tcp" if kind == "tcp" else "udp")
    payloads: dict[str, bytes] = {}
    for name in ("send", "expect"):
        both = [k for k in (name, f"{name}_hex") if k in fields]
        if len(both) == 2:
            raise ctx.error(
                fields[both[1]], f"{path}.{both[1]}", f"give {name} or {name}_hex, not both"
            )
        if not both:
            continue
        key = both[0]
        if check.type != "udp":
            raise ctx.error(fields[key], f"{path}.{key}", "only a check of type: udp sends data")
        text = ctx.string(fields[key], f"{path}.{key}")
        if key == name:
            payloads[name] = text.encode()
            continue
        try:
            payloads[name] = bytes.fromhex(text)
        except ValueError:
            raise ctx.error(
                fields[key], f"{path}.{key}", f"must be hex digits such as 'beef01', got {text!r}"
            ) from None
    if check.type == "udp" and "send" not in payloads:
        raise ctx.error(node, f"{path}.send", "a check of type: udp needs send or send_hex")
    return replace(check, send=payloads.get("send", b""), expect=payloads.get("expect", b""))


def _listener(
    ctx: _Ctx,
    node: yaml.Node,
    path: str,
    defaults: ListenerOptions,
    default_health: HealthCheck | None,
) -> ListenerConfig:
    fields = ctx.mapping(node, path, _LISTENER)
    vip = ctx.ip(fields["address"], f"{path}.address")
    port = ctx.integer(fields["port"], f"{path}.port", 1, 65535)
    protocol: Protocol = "tcp"
    if "protocol" in fields:
        pnode = fields["protocol"]
        value = ctx.scalar(pnode)
        if value not in PROTOCOLS:
            raise ctx.error(
                pnode, f"{path}.protocol", f"must be tcp or udp, got {ctx.describe(pnode)}"
            )
        protocol = "tcp" if value == "tcp" else "udp"
    if "name" in fields:
        ctx.string(fields["name"], f"{path}.name")
    options, health = _options(ctx, fields, path, defaults, default_health)
    if health is not None and health.type == "udp" and protocol != "udp":
        inherited = "" if "health_check" in fields else " (from defaults)"
        raise ctx.error(
            fields.get("health_check", node),
            f"{path}.health_check",
            f"a check of type: udp is for UDP listeners{inherited}; use type: tcp here",
        )
    if options.proxy_protocol is not None and (protocol != "tcp" or options.mode != "proxy"):
        inherited = "" if "proxy_protocol" in fields else " (from defaults)"
        raise ctx.error(
            fields.get("proxy_protocol", node),
            f"{path}.proxy_protocol",
            f"a PROXY protocol header{inherited} is sent on TCP listeners in proxy mode only; "
            f"this one is {protocol} in {options.mode} mode (set proxy_protocol: none here)",
        )
    backends: list[Backend] = []
    bnodes = ctx.sequence(fields["backends"], f"{path}.backends")
    if not bnodes:
        raise ctx.error(fields["backends"], f"{path}.backends", "must list at least one backend")
    for j, bnode in enumerate(bnodes):
        backend = _backend(ctx, bnode, f"{path}.backends[{j}]")
        if backend.address.version != vip.version:
            raise ctx.error(
                bnode,
                f"{path}.backends[{j}]",
                f"IPv{backend.address.version} backend {backend} for an IPv{vip.version} "
                "listener address (use the same family)",
            )
        if backend in backends:
            raise ctx.error(bnode, f"{path}.backends[{j}]", f"duplicate backend {backend}")
        backends.append(backend)
    return ListenerConfig(
        key=ListenerKey(vip, protocol, port),
        backends=tuple(backends),
        options=options,
        health_check=health,
        line=node.start_mark.line + 1,
    )


def _backend(ctx: _Ctx, node: yaml.Node, path: str) -> Backend:
    if isinstance(node, yaml.MappingNode):
        fields = ctx.mapping(node, path, {"address": True, "port": True})
        address = ctx.ip(fields["address"], f"{path}.address")
        port = ctx.integer(fields["port"], f"{path}.port", 1, 65535)
        return Backend(address, port)
    text = ctx.string(node, path)
    host, sep, port_text = text.rpartition(":")
    bad = f"must be 'ADDRESS:PORT' ('[v6]:PORT' for IPv6) or {{address, port}}, got {text!r}"
    if not sep or not host:
        raise ctx.error(node, path, bad)
    if host.startswith("["):
        if not host.endswith("]"):
            raise ctx.error(node, path, bad)
        host = host[1:-1]
    elif ":" in host:
        raise ctx.error(node, path, bad)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ctx.error(
            node, path, f"{host!r} is not an IPv4 or IPv6 address (no host names)"
        ) from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ctx.error(node, path, f"port must be an integer 1-65535, got {port_text!r}")
    return Backend(address, int(port_text))


def _check_loops(ctx: _Ctx, items: list[yaml.Node], listeners: list[ListenerConfig]) -> None:
    """Refuse a backend that is its own listener, or leads back to it through others.

    Either would send each connection round until the connection limit (see
    :mod:`ironlb.dataplane.loops` for which listener a backend reaches). A
    backend that is another listener with real backends (a chain) is allowed.
    """
    index = {lst.key: i for i, lst in enumerate(listeners)}
    edges: list[list[tuple[int, int]]] = []  # per listener: (backend index, listener reached)
    for lst in listeners:
        out = []
        for j, backend in enumerate(lst.backends):
            key = reached_listener(backend.address, backend.port, lst.key.protocol, index)
            if key is not None:
                out.append((j, index[key]))
        edges.append(out)
    for i, lst in enumerate(listeners):
        for j, k in edges[i]:
            path = f"listeners[{i}].backends[{j}]"
            where = _backend_node(items[i], j)
            backend = lst.backends[j]
            if k == i:
                raise ctx.error(
                    where,
                    path,
                    f"backend {backend} is this listener itself ({lst.key}): "
                    "connections would loop back in",
                )
            if _leads_to(edges, k, i):
                other = listeners[k]
                raise ctx.error(
                    where,
                    path,
                    f"backend {backend} is listeners[{k}] ({other.key}, line {other.line}), "
                    f"whose backends lead back to listeners[{i}] ({lst.key}): "
                    "connections would loop between them",
                )


def _leads_to(edges: list[list[tuple[int, int]]], start: int, goal: int) -> bool:
    """Whether listener ``start`` reaches listener ``goal`` through its backends."""
    todo, seen = [start], {start}
    while todo:
        here = todo.pop()
        if here == goal:
            return True
        for _, nxt in edges[here]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _backend_node(listener: yaml.Node, j: int) -> yaml.Node:
    """The YAML node of backend ``j`` of an already validated listener mapping."""
    assert isinstance(listener, yaml.MappingNode)
    for key_node, value_node in listener.value:
        if key_node.value == "backends":
            assert isinstance(value_node, yaml.SequenceNode)
            item: yaml.Node = value_node.value[j]
            return item
    raise AssertionError("a validated listener has backends")


def _announce(ctx: _Ctx, node: yaml.Node) -> AnnounceConfig:
    fields = ctx.mapping(node, "announce", {"interfaces": False, "garp": False})
    interfaces: list[str] = []
    if "interfaces" in fields:
        for k, inode in enumerate(ctx.sequence(fields["interfaces"], "announce.interfaces")):
            name = ctx.string(inode, f"announce.interfaces[{k}]")
            problem = interface_name_problem(name)
            if problem is not None:
                raise ctx.error(
                    inode,
                    f"announce.interfaces[{k}]",
                    f"not a valid interface name: {name!r} {problem}",
                )
            interfaces.append(name)
    garp = GarpConfig()
    if "garp" in fields:
        gfields = ctx.mapping(fields["garp"], "announce.garp", {"repeat": False, "refresh": False})
        if "repeat" in gfields:
            delays = [
                ctx.number(d, f"announce.garp.repeat[{k}]", 0, strict=False)
                for k, d in enumerate(ctx.sequence(gfields["repeat"], "announce.garp.repeat"))
            ]
            garp = replace(garp, repeat=tuple(delays))
        if "refresh" in gfields:
            refresh = ctx.number(gfields["refresh"], "announce.garp.refresh", 0, strict=True)
            garp = replace(garp, refresh=refresh)
    return AnnounceConfig(interfaces=tuple(interfaces), garp=garp)


def _check_announceable(ctx: _Ctx, node: yaml.Node, path: str, vip: IPAddress) -> None:
    """With ``announce``, every listener address is a VIP owned on the LAN."""
    problem = vip_problem(vip)
    if problem is not None:
        where = node
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == "address":
                    where = value_node
        raise ctx.error(
            where,
            f"{path}.address",
            f"{vip} is {problem} and cannot be announced on the LAN (loopback, unspecified, "
            "multicast, broadcast and link-local addresses need no 'announce')",
        )
