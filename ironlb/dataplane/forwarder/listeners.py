"""The forwarder of one event loop: turns a DesiredState into listeners.

:meth:`Forwarder.apply` diffs the new state against what runs:

* a new listener is bound (``SO_REUSEPORT`` so worker processes share it,
  ``IP_FREEBIND`` so the VIP need not be on the node yet);
* a listener that is gone stops accepting; its open connections (UDP
  sessions) live on until they end, then it is dropped;
* a listener that stays gets its new ready backends (round-robin position
  kept) and options; open connections to removed backends drain;
* a listener added back while its old self still drains takes that one
  back instead of binding beside it: a UDP listener keeps its socket (a
  second ``SO_REUSEPORT`` socket on the same port would get a share of the
  new clients' datagrams, and a draining socket drops them), a TCP listener
  listens again on a fresh socket; either way its open connections and its
  limit count carry on.

Applying an equal state again is a no-op: nothing is rebound or reset. A
listener that failed to bind is retried on the next :meth:`apply`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Mapping

from ironlb.dataplane.forwarder.fd_limits import FdBudget
from ironlb.dataplane.forwarder.shared_limits import LocalGate, WorkerCounts
from ironlb.dataplane.forwarder.stats import StatsRegistry
from ironlb.dataplane.forwarder.tcp import TcpListener
from ironlb.dataplane.forwarder.udp import UdpListener
from ironlb.dataplane.state import DesiredState, IPAddress, ListenerKey, ListenerOptions

log = logging.getLogger("ironlb.forward")

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78  # linux/in6.h; not exported by the socket module

Listener = TcpListener | UdpListener


def listener_socket(
    key: ListenerKey, *, reuse_addr: bool = True, reuse_port: bool = True
) -> socket.socket:
    """An unbound socket of ``key``'s family and protocol, set up as listeners
    are: IPv6-only for IPv6, ``IP_FREEBIND``, and ``SO_REUSEADDR`` /
    ``SO_REUSEPORT`` as asked. Raises ``OSError``."""
    family = socket.AF_INET6 if key.vip.version == 6 else socket.AF_INET
    kind = socket.SOCK_STREAM if key.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_hint(err: int | None, port: int) -> str:
    """A short hint to append to a bind error (``errno`` ``err``), or ``""``.

    ``EACCES`` on a port below 1024 is the missing ``CAP_NET_BIND_SERVICE``
    (Linux's privileged ports, ``net.ipv4.ip_unprivileged_port_start``): the
    case of a speaker confined to ``NET_ADMIN`` and ``NET_RAW`` in a container.
    """
    if err == errno.EADDRINUSE:
        return " (is another program using the port?)"
    if err == errno.EACCES and port < 1024:
        return " (ports below 1024 need CAP_NET_BIND_SERVICE)"
    return ""


def bind_socket(key: ListenerKey) -> socket.socket:
    """A bound (and for TCP not yet listening) non-blocking socket for ``key``."""
    sock = listener_socket(key)
    try:
        sock.setblocking(False)
        sock.bind((str(key.vip), key.port))
    except BaseException:
        sock.close()
        raise
    return sock


class Forwarder:
    """All listeners of one event loop, driven by :meth:`apply`.

    ``counts`` is this worker's side of the limit counts shared with the
    other workers (:mod:`.shared_limits`); without it (or for a listener
    :meth:`apply` gets no slot for) a listener counts its limits alone.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        stats: StatsRegistry | None = None,
        counts: WorkerCounts | None = None,
    ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.stats = stats or StatsRegistry()
        self.counts = counts
        self.fds = FdBudget()
        self.listeners: dict[ListenerKey, Listener] = {}
        self.draining: list[Listener] = []
        self.state = DesiredState()
        self.bind_errors: dict[ListenerKey, str] = {}
        self._last_bind_errors: dict[ListenerKey, str] = {}
        self._lock = asyncio.Lock()

    async def apply(
        self, state: DesiredState, slots: Mapping[ListenerKey, int] | None = None
    ) -> dict[ListenerKey, str]:
        """Make the running listeners match ``state`` (backends and options);
        returns bind errors by listener. ``slots`` gives new listeners their
        shared limit count (a listener keeps its slot while it lives). Owned
        VIPs (``state.vips``) are not this class's business: listeners bind
        with ``IP_FREEBIND`` either way."""
        slots = slots or {}
        async with self._lock:
            self.draining = [lst for lst in self.draining if not lst.drained]
            for key in list(self.listeners):
                if key not in state.listeners:
                    self._remove(key)
            self._last_bind_errors, self.bind_errors = self.bind_errors, {}
            for key, spec in state.listeners.items():
                listener = self.listeners.get(key)
                if listener is None:
                    listener = await self._resume(key) or await self._add(
                        key, spec.options, slots.get(key)
                    )
                    if listener is None:
                        continue
                elif spec.options != listener.options:
                    self._set_options(listener, spec.options)
                listener.set_backends(spec.backends)
            self.state = state
            self.fds.measure()  # listening sockets included
            return dict(self.bind_errors)

    def _set_options(self, listener: Listener, opts: ListenerOptions) -> None:
        listener.set_options(opts)

    async def _add(
        self, key: ListenerKey, opts: ListenerOptions, slot: int | None
    ) -> Listener | None:
        stats = self.stats.listener(str(key))
        try:
            sock = bind_socket(key)
        except OSError as exc:
            hint = bind_hint(exc.errno, key.port)
            error = f"{exc.strerror or exc}{hint}"
            self.bind_errors[key] = error
            if self._last_bind_errors.get(key) != error:  # once while it lasts, not per apply
                log.error("listener %s: cannot bind: %s", key, error)
            return None
        gate = self.counts.gate(slot) if self.counts is not None else LocalGate()
        listener: Listener
        if key.protocol == "tcp":
            listener = TcpListener(self.loop, key, opts, stats, gate, self.fds)
        else:
            listener = UdpListener(self.loop, key, opts, stats, gate, self.fds)
        try:
            await listener.start(sock)
        except OSError as exc:
            sock.close()
            self.bind_errors[key] = str(exc)
            log.error("listener %s: cannot listen: %s", key, exc)
            return None
        self.listeners[key] = listener
        log.info("listener %s: accepting", key)
        return listener

    async def _resume(self, key: ListenerKey) -> Listener | None:
        """Take back the draining listener of ``key``, if one is still open."""
        old = next((lst for lst in self.draining if lst.key == key and not lst.drained), None)
        if old is None:
            return None
        try:
            if isinstance(old, TcpListener):
                await old.resume(bind_socket(key))
            else:
                old.resume()
        except OSError as exc:
            log.warning("listener %s: cannot take back its draining socket: %s", key, exc)
            return None
        self.draining.remove(old)
        self.listeners[key] = old
        log.info("listener %s: accepting again (its open connections carry on)", key)
        return old

    async def close_draining(self, vips: frozenset[IPAddress]) -> int:
        """Close the removed listeners on ``vips`` and their open connections
        (TCP: reset) and UDP sessions; returns how many flows were closed.
        Called just before those VIPs leave the host, so a client sees the end of
        its connection instead of a silent stall."""
        async with self._lock:
            closed = 0
            for listener in [lst for lst in self.draining if lst.key.vip in vips]:
                flows = (
                    len(listener.conns)
                    if isinstance(listener, TcpListener)
                    else len(listener.sessions)
                )
                if flows:
                    log.info(
                        "listener %s: its VIP is released, closing %d open connection(s)",
                        listener.key,
                        flows,
                    )
                listener.close()
                closed += flows
            self.draining = [lst for lst in self.draining if not lst.drained]
            return closed

    def _remove(self, key: ListenerKey) -> None:
        listener = self.listeners.pop(key)
        listener.stop_accepting()
        if not listener.drained:
            self.draining.append(listener)
        log.info("listener %s: removed, open connections drain", key)

    def close(self) -> None:
        """Stop everything, open connections included."""
        for listener in [*self.listeners.values(), *self.draining]:
            listener.close()
        self.listeners.clear()
        self.draining.clear()
