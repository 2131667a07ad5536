"""The L2 announcer: answers ARP and IPv6 Neighbor Discovery for the VIPs
this node owns, and announces them when it takes them over.

Per served interface it holds two raw ``AF_PACKET`` sockets on the event
loop (``add_reader``): one for ARP requests, one for Neighbor Solicitations.
A request for an owned VIP is answered with the MAC of the interface it came
in on; anything else (unowned addresses, gratuitous packets, our own output)
is left alone.

On takeover (:meth:`Announcer.set_owned` with a new VIP) it sends gratuitous
ARP requests (IPv4) or unsolicited Neighbor Advertisements with the Override
flag (IPv6) on every served interface, at the times in ``garp_repeat``
(default 0 s, 0.5 s, 2 s), then every ``refresh_interval`` seconds (default
30 s, well inside the 300 s a typical switch keeps a MAC table entry) while it
owns the VIP. An interface that appears, comes up or regains carrier while
VIPs are owned gets the same ``garp_repeat`` burst. Releasing a VIP stops
answering and announcing it at once.

Everything runs on one event loop thread, which must be in the network
namespace the announcer serves: :meth:`start`, :meth:`stop` and
:meth:`set_owned` are called on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from ironlb.common.addresses import check_vip
from ironlb.common.ifnames import interface_name_problem
from ironlb.dataplane.l2 import arp, ndp, sockets
from ironlb.dataplane.l2.interfaces import LinkInfo, LinkMonitor, eligible
from ironlb.dataplane.l2.metrics import OTHER, metrics_for
from ironlb.dataplane.state import IPAddress

log = logging.getLogger(__name__)

# Frames handled per readiness callback before yielding to the loop.
_BATCH = 256
# Full socket buffer or transmit queue: the frame is dropped, like a busy NIC would.
_TRANSIENT_SEND_ERRORS = (errno.EAGAIN, errno.EINTR, errno.ENOBUFS)
# Seconds before re-reading links after a socket reported an error.
_REOPEN_DELAY = 1.0


@dataclass(eq=False)
class _Port:
    """One served interface: its sockets and solicited-node memberships."""

    link: LinkInfo
    arp_sock: socket.socket
    ns_sock: socket.socket
    groups: set[bytes] = field(default_factory=set)
    # The owned VIPs this port answers for (packed), by their scopes.
    owned4: frozenset[bytes] = frozenset()
    owned6: frozenset[bytes] = frozenset()
    burst: asyncio.Task[None] | None = None


def validate_vip(vip: object) -> IPAddress:
    """``vip`` if it is an address a node can own (:func:`ironlb.common.addresses.check_vip`)."""
    return check_vip(vip)


class Announcer:
    """Answers ARP/NDP for owned VIPs on the chosen interfaces.

    ``interfaces``: names to serve, or ``None`` for every interface that is
    up, broadcast-capable, Ethernet, not loopback and not enslaved.
    ``garp_repeat``: seconds after a takeover at which announcements are sent.
    ``refresh_interval``: seconds between announcements afterwards (``None``:
    no refresh). ``registry``: where the metrics go (default: global).
    ``resync_interval``: seconds between full re-reads of the links, a safety
    net behind the netlink link events (``None``: events only).

    :meth:`start` raises :class:`PermissionError` without ``CAP_NET_RAW``.
    """

    def __init__(
        self,
        interfaces: Sequence[str] | None = None,
        *,
        garp_repeat: Sequence[float] = (0.0, 0.5, 2.0),
        refresh_interval: float | None = 30.0,
        registry: CollectorRegistry | None = None,
        resync_interval: float | None = 60.0,
    ) -> None:
        if isinstance(interfaces, str):
            raise TypeError("interfaces must be a sequence of names, not one string")
        if interfaces is not None:
            for name in interfaces:
                problem = interface_name_problem(name)
                if problem is not None:
                    raise ValueError(f"invalid interface name {name!r}: it {problem}")
        for delay in garp_repeat:
            if not math.isfinite(delay) or delay < 0:
                raise ValueError(f"garp_repeat delays must be finite and >= 0, got {delay!r}")
        if refresh_interval is not None and not (
            math.isfinite(refresh_interval) and refresh_interval > 0
        ):
            raise ValueError(f"refresh_interval must be > 0 or None, got {refresh_interval!r}")
        self._names = frozenset(interfaces) if interfaces is not None else None
        self._garp_repeat = tuple(sorted(garp_repeat))
        self._refresh_interval = refresh_interval
        self._metrics = metrics_for(registry)
        self._monitor = LinkMonitor(self._on_links, resync_interval=resync_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ports: dict[int, _Port] = {}
        self._owned: frozenset[IPAddress] = frozenset()
        # Per VIP: the interface names it is announced on (None: every served one).
        self._scope: dict[IPAddress, frozenset[str] | None] = {}
        self._vip_tasks: dict[IPAddress, asyncio.Task[None]] = {}
        self._counters: dict[bytes, tuple[Any, Any]] = {}
        self._other = {
            4: self._metrics.requests.labels("ipv4", OTHER),
            6: self._metrics.requests.labels("ipv6", OTHER),
        }
        self._reopen: asyncio.TimerHandle | None = None
        # Ports opened by start() itself get no burst: the VIP schedules cover them.
        self._started = False

    # -- public API ---------------------------------------------------------

    @property
    def owned(self) -> frozenset[IPAddress]:
        return self._owned

    @property
    def interfaces(self) -> frozenset[str]:
        return frozenset(port.link.name for port in self._ports.values())

    async def start(self) -> None:
        """Open sockets on the current interfaces and start watching links;
        announce the VIPs already owned."""
        if self._loop is not None:
            raise RuntimeError("announcer already started")
        _check_raw_sockets()
        self._loop = asyncio.get_running_loop()
        try:
            await self._monitor.start()
        except BaseException:
            self._monitor.close()
            self._loop = None
            raise
        self._started = True
        for vip in sorted(self._owned, key=_sort_key):
            self._start_vip(vip)

    async def stop(self) -> None:
        """Stop answering and announcing; close every socket."""
        tasks = list(self._vip_tasks.values())
        self._vip_tasks.clear()
        for index in list(self._ports):
            port = self._ports[index]
            if port.burst is not None:
                tasks.append(port.burst)
            self._close_port(index)
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        self._monitor.close()
        self._started = False
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None

    def set_owned(
        self, vips: Iterable[IPAddress] | Mapping[IPAddress, frozenset[str] | None]
    ) -> None:
        """Own exactly ``vips``: announce the new ones, stop answering for the
        ones no longer in it (at once).

        ``vips`` may map each VIP to the interface names it is announced on
        (an IPAddressPool's ``l2.interfaces``; ``None`` or empty: every served
        interface). A request arriving on another interface is not answered.
        A VIP whose scope changed is announced again on its new interfaces.
        """
        if isinstance(vips, Mapping):
            scope = {validate_vip(v): (frozenset(n) if n else None) for v, n in vips.items()}
        else:
            scope = {validate_vip(v): None for v in vips}
        wanted = frozenset(scope)
        rescoped = {v for v in wanted & self._owned if self._scope.get(v) != scope[v]}
        if self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self._loop:
                raise RuntimeError("set_owned must be called on the announcer's event loop")
        added = wanted - self._owned
        removed = self._owned - wanted
        self._owned = wanted
        self._scope = scope
        for vip in added:
            family = _family(vip)
            self._counters[vip.packed] = (
                self._metrics.requests.labels(family, str(vip)),
                self._metrics.replies.labels(family, str(vip)),
            )
        for vip in removed:
            self._counters.pop(vip.packed, None)
            task = self._vip_tasks.pop(vip, None)
            if task is not None:
                task.cancel()
        if added or removed:
            log.info(
                "owned VIPs: %s (+%s -%s)",
                sorted(map(str, wanted)),
                sorted(map(str, added)),
                sorted(map(str, removed)),
            )
        for port in list(self._ports.values()):
            self._refresh_port(port)
        if self._loop is not None:
            for vip in sorted(added | rescoped, key=_sort_key):
                self._start_vip(vip)

    def missing_interfaces(self) -> dict[IPAddress, frozenset[str]]:
        """Per owned VIP, the interfaces of its scope that are not served (absent,
        down, or not eligible): what an ``AnnounceFailed`` Event should name."""
        served = self.interfaces
        missing: dict[IPAddress, frozenset[str]] = {}
        for vip, names in self._scope.items():
            if names and names - served:
                missing[vip] = frozenset(names - served)
        return missing

    def _serves(self, port: _Port, vip: IPAddress) -> bool:
        names = self._scope.get(vip)
        return names is None or port.link.name in names

    def _refresh_port(self, port: _Port) -> None:
        """Recompute which owned VIPs ``port`` answers for; join their NDP groups."""
        mine = [v for v in self._owned if self._serves(port, v)]
        port.owned4 = frozenset(v.packed for v in mine if v.version == 4)
        port.owned6 = frozenset(v.packed for v in mine if v.version == 6)
        self._sync_groups(port)

    # -- interfaces ---------------------------------------------------------

    def _on_links(self, links: Mapping[int, LinkInfo]) -> None:
        wanted = {i: link for i, link in links.items() if eligible(link, self._names)}
        for index in list(self._ports):
            port = self._ports[index]
            link = wanted.get(index)
            if link is None or link.name != port.link.name or link.mac != port.link.mac:
                self._close_port(index)
                continue
            regained = link.carrier and not port.link.carrier
            port.link = link
            if regained:
                log.info("%s: carrier up, announcing", link.name)
                self._start_burst(port)
        for index, link in wanted.items():
            if index not in self._ports:
                self._open_port(link)
        self._metrics.interfaces.set(len(self._ports))

    def _open_port(self, link: LinkInfo) -> None:
        assert self._loop is not None
        try:
            arp_sock = sockets.open_arp_socket(link.name)
        except OSError as exc:
            log.warning("%s: cannot open ARP socket: %s", link.name, exc)
            return
        try:
            ns_sock = sockets.open_ns_socket(link.name)
        except OSError as exc:
            arp_sock.close()
            log.warning("%s: cannot open NDP socket: %s", link.name, exc)
            return
        port = _Port(link, arp_sock, ns_sock)
        self._ports[link.index] = port
        self._loop.add_reader(arp_sock.fileno(), self._on_arp, port)
        self._loop.add_reader(ns_sock.fileno(), self._on_ns, port)
        self._refresh_port(port)
        log.info("%s: answering ARP/NDP (mac %s)", link.name, link.mac.hex(":"))
        if link.carrier:  # else the burst comes when carrier does
            self._start_burst(port)

    def _close_port(self, index: int) -> None:
        port = self._ports.pop(index, None)
        if port is None:
            return
        if port.burst is not None:
            port.burst.cancel()
            port.burst = None
        for sock in (port.arp_sock, port.ns_sock):
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()  # the kernel drops the socket's memberships
        log.info("%s: no longer answering", port.link.name)
        self._metrics.interfaces.set(len(self._ports))

    def _port_failed(self, port: _Port, exc: OSError) -> None:
        """A socket error (the interface went down or away): close the port
        and re-read the links shortly; the port reopens if it is still fit."""
        if self._ports.get(port.link.index) is not port:
            return
        log.warning("%s: socket error %s; closing", port.link.name, exc)
        self._close_port(port.link.index)
        if self._loop is not None and self._reopen is None:
            self._reopen = self._loop.call_later(_REOPEN_DELAY, self._resync)

    def _resync(self) -> None:
        self._reopen = None
        self._monitor.request_dump()

    def _sync_groups(self, port: _Port) -> None:
        """Join the solicited-node groups of the owned IPv6 VIPs, leave others."""
        wanted = {
            ndp.multicast_mac(ndp.solicited_node_address(v))
            for v in self._owned
            if isinstance(v, ipaddress.IPv6Address) and self._serves(port, v)
        }
        try:
            for mac in wanted - port.groups:
                sockets.add_membership(port.ns_sock, port.link.index, mac)
                port.groups.add(mac)
            for mac in port.groups - wanted:
                sockets.drop_membership(port.ns_sock, port.link.index, mac)
                port.groups.discard(mac)
        except OSError as exc:
            self._port_failed(port, exc)

    # -- answering ----------------------------------------------------------

    def _on_arp(self, port: _Port) -> None:
        sock = port.arp_sock
        mac = port.link.mac
        owned = port.owned4
        counters = self._counters
        other = self._other[4]
        for _ in range(_BATCH):
            try:
                frame, address = sock.recvfrom(128)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._port_failed(port, exc)
                return
            if address[2] == sockets.PACKET_OUTGOING:
                continue
            try:
                packet = arp.parse(frame)
            except arp.MalformedPacket:
                continue
            if packet.op != arp.OP_REQUEST or packet.is_gratuitous:
                continue
            pair = counters.get(packet.target_ip)
            if pair is None:
                other.inc()
                continue
            pair[0].inc()
            if arp.should_answer(packet, owned) and self._send(
                port, sock, arp.build_reply(packet, mac)
            ):
                pair[1].inc()

    def _on_ns(self, port: _Port) -> None:
        sock = port.ns_sock
        mac = port.link.mac
        owned = port.owned6
        counters = self._counters
        other = self._other[6]
        for _ in range(_BATCH):
            try:
                frame, address = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._port_failed(port, exc)
                return
            if address[2] == sockets.PACKET_OUTGOING:
                continue
            try:
                ns = ndp.parse_ns(frame)
            except arp.MalformedPacket:
                continue
            pair = counters.get(ns.target)
            if pair is None:
                other.inc()
                continue
            pair[0].inc()
            if ns.target in owned and self._send(port, sock, ndp.answer(ns, mac)):
                pair[1].inc()

    def _send(self, port: _Port, sock: socket.socket, frame: bytes) -> bool:
        try:
            sock.send(frame)
        except OSError as exc:
            self._metrics.send_errors.labels(port.link.name).inc()
            if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                self._port_failed(port, exc)
            elif exc.errno not in _TRANSIENT_SEND_ERRORS:
                log.warning("%s: send failed: %s", port.link.name, exc)
            return False
        return True

    # -- announcing ---------------------------------------------------------

    def _announce(self, port: _Port, vip: IPAddress) -> None:
        if isinstance(vip, ipaddress.IPv4Address):
            frame, sock = arp.build_gratuitous(vip, port.link.mac), port.arp_sock
        else:
            frame, sock = ndp.build_unsolicited_na(vip, port.link.mac), port.ns_sock
        if self._send(port, sock, frame):
            self._metrics.gratuitous.labels(_family(vip), str(vip)).inc()

    def _start_vip(self, vip: IPAddress) -> None:
        assert self._loop is not None
        old = self._vip_tasks.pop(vip, None)
        if old is not None:
            old.cancel()
        self._vip_tasks[vip] = self._loop.create_task(
            self._schedule(lambda: self._announce_everywhere(vip), refresh=True),
            name=f"l2-announce-{vip}",
        )

    def _announce_everywhere(self, vip: IPAddress) -> None:
        if vip in self._owned:
            for port in list(self._ports.values()):
                if self._serves(port, vip):
                    self._announce(port, vip)

    def _start_burst(self, port: _Port) -> None:
        """Announce every owned VIP on one (new) port, ``garp_repeat`` times."""
        loop = self._loop
        if loop is None or not self._started or self._ports.get(port.link.index) is not port:
            return
        if port.burst is not None:
            port.burst.cancel()
        port.burst = loop.create_task(
            self._schedule(lambda: self._announce_port(port), refresh=False),
            name=f"l2-announce-{port.link.name}",
        )

    def _announce_port(self, port: _Port) -> None:
        if self._ports.get(port.link.index) is port:
            for vip in sorted(self._owned, key=_sort_key):
                if self._serves(port, vip):
                    self._announce(port, vip)

    async def _schedule(self, send: Callable[[], None], *, refresh: bool) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for delay in self._garp_repeat:
            wait = start + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            send()
        if refresh and self._refresh_interval is not None:
            while True:
                await asyncio.sleep(self._refresh_interval)
                send()


def _check_raw_sockets() -> None:
    """Fail at start, not silently per interface, without CAP_NET_RAW."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, "the L2 announcer needs CAP_NET_RAW to open AF_PACKET sockets"
        ) from exc


def _family(vip: IPAddress) -> str:
    return "ipv4" if vip.version == 4 else "ipv6"


def _sort_key(vip: IPAddress) -> tuple[int, int]:
    return (vip.version, int(vip))
