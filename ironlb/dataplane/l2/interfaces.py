"""Which interfaces the announcer serves, and noticing when they change.

:func:`eligible` is the pure choice: an interface named in the list (or any,
without a list) that is up, broadcast-capable, Ethernet, not loopback and not
enslaved to a bridge or bond (its master answers instead).

:class:`LinkMonitor` keeps the links of the current network namespace from
rtnetlink: a dump at start, then ``RTM_NEWLINK``/``RTM_DELLINK`` events
(multicast group ``RTMGRP_LINK``), and a full re-dump on socket overrun and
every ``resync_interval`` seconds as a safety net. It reads a plain netlink
socket on the event loop (``add_reader``) and decodes with pyroute2's
rtnetlink marshal: pyroute2's own asyncio transport cannot run on uvloop
(uvloop refuses ``AF_NETLINK`` datagram endpoints), and the forwarder does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import (
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_LOWER_UP,
    IFF_UP,
    ifinfmsg,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

log = logging.getLogger(__name__)

ARPHRD_ETHER = 1


@dataclass(frozen=True)
class LinkInfo:
    """What the announcer needs to know about one network interface."""

    index: int
    name: str
    mac: bytes
    flags: int
    master: int | None = None
    link_type: int = ARPHRD_ETHER

    @property
    def carrier(self) -> bool:
        return bool(self.flags & IFF_LOWER_UP)


def eligible(link: LinkInfo, names: Collection[str] | None) -> bool:
    """Whether the announcer should answer on ``link``.

    ``names`` restricts the choice to those interfaces; the other conditions
    hold for listed interfaces too (a listed bridge port is still skipped:
    the bridge, which carries its addresses, answers).
    """
    if names is not None and link.name not in names:
        return False
    return (
        link.link_type == ARPHRD_ETHER
        and bool(link.flags & IFF_UP)
        and bool(link.flags & IFF_BROADCAST)
        and not link.flags & IFF_LOOPBACK
        and link.master is None
        and len(link.mac) == 6
        and link.mac != b"\x00" * 6
    )


def link_from_message(msg: Any) -> LinkInfo | None:
    """A :class:`LinkInfo` from a decoded pyroute2 ``ifinfmsg``."""
    name = msg.get_attr("IFLA_IFNAME")
    if name is None:
        return None
    address = msg.get_attr("IFLA_ADDRESS")
    mac = bytes.fromhex(address.replace(":", "")) if address else b""
    master = msg.get_attr("IFLA_MASTER")
    return LinkInfo(
        index=int(msg["index"]),
        name=str(name),
        mac=mac,
        flags=int(msg["flags"]),
        master=int(master) if master else None,
        link_type=int(msg["ifi_type"]),
    )


class LinkMonitor:
    """The links of this network namespace, kept current from rtnetlink.

    ``on_change`` is called (on the event loop) with the full
    ``{ifindex: LinkInfo}`` mapping after every change.
    """

    def __init__(
        self,
        on_change: Callable[[Mapping[int, LinkInfo]], None],
        *,
        resync_interval: float | None = 60.0,
    ) -> None:
        self._on_change = on_change
        self._resync_interval = resync_interval
        self._links: dict[int, LinkInfo] = {}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._marshal = MarshalRtnl()
        self._seq = 0
        self._dump_seq: int | None = None  # sequence number of the dump in flight
        self._dump_again = False
        self._seen: set[int] = set()
        self._first_dump: asyncio.Future[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None

    @property
    def links(self) -> Mapping[int, LinkInfo]:
        return dict(self._links)

    async def start(self, timeout: float = 10.0) -> None:
        """Subscribe to link events and load the current links."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_LINK))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._first_dump = loop.create_future()
        loop.add_reader(sock.fileno(), self._on_readable)
        self.request_dump()
        await asyncio.wait_for(asyncio.shield(self._first_dump), timeout)
        if self._resync_interval:
            self._resync_task = loop.create_task(self._resync_forever(self._resync_interval))

    def close(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            self._resync_task = None
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._first_dump is not None and not self._first_dump.done():
            self._first_dump.cancel()
        self._dump_seq = None
        self._dump_again = False

    def request_dump(self) -> None:
        """Ask the kernel for every link; links missing from the answer are
        dropped when it completes."""
        if self._sock is None:
            return
        if self._dump_seq is not None:
            self._dump_again = True
            return
        self._seq += 1
        msg = ifinfmsg()
        msg["family"] = socket.AF_UNSPEC
        msg["header"]["type"] = RTM_GETLINK
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._dump_seq = self._seq
        self._seen = set()
        try:
            self._sock.sendto(msg.data, (0, 0))
        except OSError as exc:
            log.warning("link dump request failed: %s", exc)
            self._dump_seq = None

    async def _resync_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.request_dump()

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        changed = False
        while True:
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # Events were lost: the kernel queue overflowed. Start over.
                    log.warning("link events overran the netlink socket; re-reading links")
                    self._dump_seq = None
                    self.request_dump()
                    continue
                log.error("link monitor socket failed: %s", exc)
                break
            changed |= self.apply(data)
        if changed:
            self._on_change(self.links)

    def apply(self, data: bytes) -> bool:
        """Apply one rtnetlink datagram (events or dump parts) to the link
        table; whether anything changed."""
        changed = False
        for msg in self._marshal.parse(data):
            header = msg["header"]
            kind = header["type"]
            seq = header.get("sequence_number")
            if kind in (RTM_NEWLINK, RTM_DELLINK) and msg["family"] != socket.AF_UNSPEC:
                # AF_BRIDGE copies describe bridge-port state; a DELLINK of that
                # family means "left the bridge", not "gone".
                continue
            if kind == RTM_NEWLINK:
                link = link_from_message(msg)
                if link is not None:
                    # Anything reported while a dump is in flight is current.
                    self._seen.add(link.index)
                    changed |= self._links.get(link.index) != link
                    self._links[link.index] = link
            elif kind == RTM_DELLINK:
                changed |= self._links.pop(int(msg["index"]), None) is not None
            elif kind in (NLMSG_DONE, NLMSG_ERROR) and seq is not None and seq == self._dump_seq:
                changed |= self._finish_dump(ok=kind == NLMSG_DONE)
        return changed

    def _finish_dump(self, *, ok: bool) -> bool:
        self._dump_seq = None
        changed = False
        if ok:
            for index in set(self._links) - self._seen:
                del self._links[index]
                changed = True
            if self._first_dump is not None and not self._first_dump.done():
                self._first_dump.set_result(None)
                changed = True
        else:
            self._dump_again = True
        if self._dump_again:
            self._dump_again = False
            if self._loop is not None:
                self._loop.call_later(0.1 if not ok else 0, self.request_dump)
        return changed
