"""UDP forwarding: a session per client address with its own upstream socket.

The listener socket is bound to the VIP:port, so replies sent from it carry
the address the client talked to. Each client address gets a connected
upstream socket (its source port identifies the session for the backend's
replies) watched with ``add_reader``. Sessions expire when idle; their number
is bounded, datagrams from new clients beyond the bound are dropped.

Dead backends are found passively (:mod:`~.outlier`, shared with TCP): an
ICMP error on the session socket, or (``udp_expect_reply``, the default,
right for DNS-like request/response protocols) a datagram left unanswered for
``udp_reply_timeout``, is a failure of the session's backend; an answer is a
success. After a failure the session moves to another backend at once, so
the client's next datagram (a DNS retry) is answered; after an ICMP error the
last datagram, which provably reached no application, is also resent there.
A few failures in a row take the backend out for new sessions until a probe
session gets an answer. For one-way protocols ``udp_expect_reply: false``
counts silence as success and only ICMP errors as failures.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from ironlb.dataplane.forwarder.balancer import RoundRobin
from ironlb.dataplane.forwarder.fd_limits import EXHAUSTED, FdBudget
from ironlb.dataplane.forwarder.logs import RateLimitedLog
from ironlb.dataplane.forwarder.tcp import Target, affinity_for, choose, choose_affine, client_key

if TYPE_CHECKING:
    from ironlb.dataplane.forwarder.shared_limits import Gate
    from ironlb.dataplane.forwarder.stats import ListenerStats
    from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

log = logging.getLogger("ironlb.forward.udp")

IDLE_TICKS = 4
MAX_DATAGRAM = 65535
# Replies read per readiness event before yielding to the loop.
READ_BATCH = 64


class UdpListener(asyncio.DatagramProtocol):
    """The VIP:port socket and the sessions of its clients."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        key: ListenerKey,
        options: ListenerOptions,
        stats: ListenerStats,
        gate: Gate,
        fds: FdBudget,
    ) -> None:
        self.fds = fds
        self.loop = loop
        self.key = key
        self.name = str(key)
        self.family = socket.AF_INET6 if key.vip.version == 6 else socket.AF_INET
        self.stats = stats
        self.options = options
        self.source_filter = options.allows if options.source_ranges else None
        self.gate = gate
        self.max_sessions = options.udp_max_sessions
        self.balancer: RoundRobin[Target] = RoundRobin()
        self.affinity = affinity_for(options)
        self.targets: dict[tuple[str, int], Target] = {}
        self.sessions: dict[Any, UdpSession] = {}
        # Sessions that sent a datagram not answered yet (judged by _sweep_replies).
        self.waiting: set[UdpSession] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self.accepting = False
        self._full_log = RateLimitedLog(log)
        self._no_backend_log = RateLimitedLog(log)
        self._fd_log = RateLimitedLog(log, interval=1.0)
        self._sweeper: asyncio.TimerHandle | None = None
        self._reply_sweeper: asyncio.TimerHandle | None = None

    # -- configuration -----------------------------------------------------

    def set_options(self, options: ListenerOptions) -> None:
        """New options; the open sessions stay counted against the new limit."""
        old = self.options.udp_session_timeout
        self.options = options
        self.source_filter = options.allows if options.source_ranges else None
        if options.udp_max_sessions != self.max_sessions:
            self._full_log = RateLimitedLog(log)  # a new limit gets its own line at once
        self.max_sessions = options.udp_max_sessions
        if options.affinity_timeout is None:
            self.affinity = None
        elif self.affinity is None:
            self.affinity = affinity_for(options)
            assert self.affinity is not None
            self.affinity.update(self.balancer.items)
        else:
            self.affinity.timeout = options.affinity_timeout
        if old != options.udp_session_timeout and self._sweeper is not None:
            self._sweeper.cancel()
            self._schedule_sweep()
        if self._reply_sweeper is not None:
            self._reply_sweeper.cancel()
            self._schedule_reply_sweep()

    def set_backends(self, backends: tuple[Backend, ...]) -> None:
        rotation = []
        for backend in backends:
            if not backend.ready:
                continue
            tkey = (str(backend.address), backend.port)
            target = self.targets.get(tkey)
            if target is None:
                target = self.targets[tkey] = Target(backend, self.stats.backend(str(backend)))
            rotation.append(target)
        self.balancer.update(rotation)
        if self.affinity is not None:
            self.affinity.update(rotation)

    async def start(self, sock: socket.socket) -> None:
        await self.loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.accepting = True
        self._schedule_sweep()
        self._schedule_reply_sweep()

    def stop_accepting(self) -> None:
        """No new sessions; the socket stays open for the replies of old ones."""
        self.accepting = False
        if not self.sessions:
            self.close()

    def resume(self) -> None:
        """Take new sessions again after :meth:`stop_accepting`, on the same
        socket (the listener must not be :attr:`drained`)."""
        self.accepting = True
        if self._sweeper is None:
            self._schedule_sweep()
        if self._reply_sweeper is None:
            self._schedule_reply_sweep()

    def close(self) -> None:
        self.accepting = False
        for session in list(self.sessions.values()):
            session.close()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        for timer in (self._sweeper, self._reply_sweeper):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._reply_sweeper = None

    @property
    def drained(self) -> bool:
        return self.transport is None

    # -- protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        session = self.sessions.get(addr)
        if session is None:
            if self.source_filter is not None and not self.source_filter(
                ip_address(addr[0].split("%", 1)[0])
            ):
                self.stats.rejected_source += 1
                return
            session = self._new_session(addr)
            if session is None:
                self.stats.udp_dropped += 1
                return
        session.idle = 0
        session.last = data
        if not session.waiting_since:
            session.waiting_since = self.loop.time()
            self.waiting.add(session)
        try:
            session.sock.send(data)
        except BlockingIOError:
            self.stats.udp_dropped += 1
            return
        except OSError:  # an ICMP error of an earlier datagram, reported here
            session.failed(resend=True)
            return
        session.target.stats.bytes_to_backend += len(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("listener %s: %s", self.name, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _new_session(self, addr: Any) -> UdpSession | None:
        if not self.accepting:
            return None
        if not self.gate.try_acquire(self.max_sessions):
            self._full_log.warning(
                "listener %s: UDP session limit %d reached, dropping datagrams of new clients",
                self.name,
                self.max_sessions,
            )
            return None
        affinity = self.affinity
        if affinity is None:
            target = choose(self.balancer, [], self.loop.time())
        else:
            target = choose_affine(affinity, client_key(addr), [], self.loop.time())
        if target is None:
            self.gate.release()
            self.stats.no_backend += 1
            self._no_backend_log.warning(
                "listener %s: no ready backend, dropping datagram", self.name
            )
            return None
        if not self.fds.take(1):
            target.outlier.abandon()
            self._no_descriptor("RLIMIT_NOFILE nearly reached")
            return None
        try:
            sock = self.upstream_socket(target)
        except BaseException:  # not a shortage of descriptors: give back what was taken
            sock = None
            raise
        finally:
            if sock is None:
                target.outlier.abandon()
                self.fds.give(1)
                self.gate.release()
        if sock is None:
            return None
        session = UdpSession(self, addr, sock, target)
        self.sessions[addr] = session
        self.loop.add_reader(sock.fileno(), session.readable)
        self.stats.udp_sessions_active += 1
        target.stats.udp_sessions += 1
        return session

    def upstream_socket(self, target: Target) -> socket.socket | None:
        """A non-blocking UDP socket connected to ``target``; None (logged)
        when there is no descriptor or the connect fails. The caller has
        taken the descriptor from the budget."""
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            self._fd_exhausted(exc.strerror or str(exc))
            return None
        try:
            sock.connect((target.host, target.port))
        except OSError as exc:
            sock.close()
            target.failed(self.loop.time(), self.name, log)
            self._no_backend_log.warning("listener %s: %s: %s", self.name, target.backend, exc)
            return None
        return sock

    def _no_descriptor(self, why: str) -> None:
        self.gate.release()
        self._fd_exhausted(why)

    def _fd_exhausted(self, why: str) -> None:
        self.stats.fd_exhausted += 1
        self._fd_log.warning(
            "listener %s: no file descriptor for a UDP session (%s), dropping datagrams "
            "of new clients",
            self.name,
            why,
        )

    def reply(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is not None:
            transport.sendto(data, addr)

    # -- sweeps --------------------------------------------------------------
    # Unanswered datagrams are judged by a sweep every udp_reply_timeout / 4
    # (so a datagram counts as unanswered after 1 to 1.25 times the timeout).

    def _schedule_reply_sweep(self) -> None:
        interval = max(self.options.udp_reply_timeout / IDLE_TICKS, 0.01)
        self._reply_sweeper = self.loop.call_later(interval, self._sweep_replies)

    def _sweep_replies(self) -> None:
        self._reply_sweeper = None
        if self.waiting:
            deadline = self.loop.time() - self.options.udp_reply_timeout
            expect = self.options.udp_expect_reply
            for session in [s for s in self.waiting if s.waiting_since <= deadline]:
                if expect:
                    session.failed(resend=False)
                else:  # one-way traffic: no ICMP error in time is all we can ask
                    session.answered()
        if self.transport is not None:
            self._schedule_reply_sweep()

    def _schedule_sweep(self) -> None:
        interval = max(self.options.udp_session_timeout / IDLE_TICKS, 0.01)
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        for session in list(self.sessions.values()):
            session.idle += 1
            if session.idle > IDLE_TICKS:
                session.close()
        if self.affinity is not None:
            self.affinity.expire(self.loop.time())
        if not self.accepting and not self.sessions:
            self.close()
            return
        if self.transport is not None:
            self._schedule_sweep()


class UdpSession:
    """One client address and its connected upstream socket.

    ``waiting_since`` is the loop time of the oldest datagram not answered
    yet (0.0: none); ``last`` the latest datagram (a reference, not a copy),
    resent to the next backend after an ICMP error; ``tried`` the backends
    this session already failed on.
    """

    __slots__ = ("addr", "idle", "last", "listener", "sock", "target", "tried", "waiting_since")

    def __init__(self, listener: UdpListener, addr: Any, sock: socket.socket, target: Target):
        self.listener = listener
        self.addr = addr
        self.sock = sock
        self.target = target
        self.idle = 0
        self.last: bytes | None = None
        self.waiting_since = 0.0
        self.tried: list[Target] = []

    def readable(self) -> None:
        sock = self.sock
        listener = self.listener
        stats = self.target.stats
        for _ in range(READ_BATCH):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:  # an ICMP error (port/host unreachable)
                self.failed(resend=True)
                return
            self.idle = 0
            if self.waiting_since:  # inlined answered(): once per request on the hot path
                self.waiting_since = 0.0
                listener.waiting.discard(self)
                outlier = self.target.outlier
                if outlier.failures or outlier.out_until:
                    self.target.succeeded(listener.name, log)
            stats.bytes_to_client += len(data)
            listener.reply(data, self.addr)

    def answered(self) -> None:
        """The backend answered (or, for one-way traffic, stayed silent in time)."""
        self.waiting_since = 0.0
        listener = self.listener
        listener.waiting.discard(self)
        self.target.succeeded(listener.name, log)

    def failed(self, resend: bool) -> None:
        """The backend failed this session: count it, and move the session to
        another backend (resending the last datagram when ``resend``); with
        none left untried the session ends and the next datagram starts anew."""
        listener = self.listener
        target = self.target
        self.waiting_since = 0.0
        listener.waiting.discard(self)
        now = listener.loop.time()
        target.failed(now, listener.name, log)
        self.tried.append(target)
        affinity = listener.affinity
        if affinity is None:
            new = choose(listener.balancer, self.tried, now)
        else:  # the client's next backend in its rendezvous order, as in every worker
            new = choose_affine(affinity, client_key(self.addr), self.tried, now)
        sock = listener.upstream_socket(new) if new is not None else None
        if new is None or sock is None:
            if new is not None:
                new.outlier.abandon()
            self.close()
            return
        listener.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = sock
        self.target = new
        new.stats.udp_sessions += 1
        listener.loop.add_reader(sock.fileno(), self.readable)
        data = self.last
        if resend and data is not None:
            self.waiting_since = now
            listener.waiting.add(self)
            try:
                sock.send(data)
            except OSError:
                listener.stats.udp_dropped += 1
            else:
                new.stats.bytes_to_backend += len(data)

    def close(self) -> None:
        listener = self.listener
        if listener.sessions.get(self.addr) is self:
            del listener.sessions[self.addr]
            if self.waiting_since:  # no verdict: a probe, if it was one, is freed
                listener.waiting.discard(self)
                self.target.outlier.abandon()
            listener.gate.release()
            listener.fds.give(1)
            listener.stats.udp_sessions_active -= 1
            listener.loop.remove_reader(self.sock.fileno())
            self.sock.close()
