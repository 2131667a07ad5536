"""TCP forwarding: one listener, its accepted connections and their upstreams.

Each client connection is two ``asyncio.Protocol`` objects that point at each
other (client side and upstream side); bytes are passed on from
``data_received`` without copies or tasks. Backpressure: when one side's
transport buffer fills (``pause_writing``), reading from the other side is
paused until it drains. Half-close: an EOF from one side becomes
``write_eof()`` on the other and the connection stays open the other way.

Connecting is optimistic, as HAProxy does it: a non-blocking ``connect()``
and the transport is made at once; client bytes are written to it (the kernel
sends them once the handshake completes) and a copy is kept until the
connection is known to be established. A connect that fails (refused,
unreachable, timed out) ends that transport before it was established, and
the attempt moves on to the next backend, replaying the copy; it also counts
as a failure of that backend for passive outlier detection
(:mod:`~.outlier`: a few in a row take it out until a probe connect works),
so a dead or blackholed backend stops costing clients. Per connection
there is no task and no timer: the transport-creating coroutine is stepped
directly (:func:`~.uvloop_steps.step_coroutine`, guarded by a uvloop version
check), and connect/idle timeouts use per-listener sweeps. A listener with
``proxy_protocol`` writes the PROXY header (:mod:`~.proxy_header`) ahead of
the client's bytes on every attempt, so a retried connect carries it too.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import logging
import socket
from collections.abc import Coroutine
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from ironlb.dataplane.forwarder.affinity import Affinity
from ironlb.dataplane.forwarder.balancer import RoundRobin
from ironlb.dataplane.forwarder.fd_limits import EXHAUSTED, FdBudget
from ironlb.dataplane.forwarder.logs import RateLimitedLog
from ironlb.dataplane.forwarder.outlier import FAILURES, Outlier
from ironlb.dataplane.forwarder.proxy_header import header as proxy_header
from ironlb.dataplane.forwarder.stats import BackendStats, ListenerStats
from ironlb.dataplane.forwarder.uvloop_steps import step_coroutine

if TYPE_CHECKING:
    from ironlb.dataplane.forwarder.shared_limits import Gate
    from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

log = logging.getLogger("ironlb.forward.tcp")

_CONNECTING = (0, errno.EINPROGRESS)
# Idle timeouts are checked this many times per timeout period.
TICKS = 4


class _UpstreamSocket(_socket.socket):
    """A bare socket for ``create_connection(sock=...)``, cheaper than ``socket.socket``.

    uvloop asks for its descriptor once, to hand it to libuv, which owns it
    from then on and closes it with the transport: ``fileno`` therefore lets
    go of it, so the object can never close it a second time. (A Python
    socket that still held it did: uvloop attaches the socket object to the
    transport only after the connection callback, and on a transport that
    had already failed and closed by then nobody detaches it, so freeing it
    closed the descriptor number again, by then maybe another connection's,
    and libuv aborted the worker.) ``setblocking`` is a no-op (the socket is
    made non-blocking, so uvloop's call would be one wasted ``ioctl``) and
    ``close`` closes nothing once handed over. The C type also spares the
    Python-level ``socket.socket`` constructor and the enum ``family``/``type``
    properties uvloop reads. Until handed over, the descriptor is closed when
    the object is freed.
    """

    __slots__ = ()

    def fileno(self) -> int:
        return self.detach()

    def setblocking(self, flag: bool) -> None:
        pass

    def close(self) -> None:
        self.detach()


_NONBLOCKING_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK


class Target:
    """A backend as the hot path sees it: where to connect, what to count, and
    its passive failure state (:class:`~.outlier.Outlier`, shared by TCP and UDP)."""

    __slots__ = ("backend", "family", "host", "name", "outlier", "port", "sockaddr", "stats")

    def __init__(self, backend: Backend, stats: BackendStats) -> None:
        self.backend = backend
        self.outlier = Outlier()
        self.host = str(backend.address)
        self.port = backend.port
        self.family = socket.AF_INET6 if backend.address.version == 6 else socket.AF_INET
        self.sockaddr = (self.host, self.port)
        self.stats = stats
        self.name = str(backend).encode()  # the identity affinity hashes

    def failed(self, now: float, listener: str, logger: logging.Logger) -> None:
        """Count a failed flow (connect refused/timed out, ICMP error, no answer);
        logs and counts the ejection when this failure took the backend out."""
        self.stats.failed += 1
        outlier = self.outlier
        if outlier.failure(now):
            self.stats.ejections += 1
            logger.warning(
                "listener %s: backend %s taken out for %gs after %d failed flows in a row "
                "(passive check; one probe flow then tries it again)",
                listener,
                self.backend,
                outlier.hold(),
                FAILURES,
            )

    def succeeded(self, listener: str, logger: logging.Logger) -> None:
        """Count a working flow; logs when it brought an ejected backend back."""
        outlier = self.outlier
        if (outlier.failures or outlier.out_until) and outlier.success():
            logger.warning(
                "listener %s: backend %s is back in (a probe flow worked)", listener, self.backend
            )


def target_name(target: Target) -> bytes:
    """A target's stable identity for :mod:`.affinity` (``address:port``)."""
    return target.name


def affinity_for(options: ListenerOptions) -> Affinity[Target] | None:
    """The pin table a listener with ``options`` needs (``None``: round-robin)."""
    if options.affinity_timeout is None:
        return None
    return Affinity(options.affinity_timeout, target_name)


def client_key(peer: Any) -> bytes:
    """The affinity key of a peer address tuple: the packed IP, without port or scope."""
    return ip_address(peer[0].split("%", 1)[0]).packed


def choose(balancer: RoundRobin[Target], tried: list[Target], now: float) -> Target | None:
    """The next backend in ``balancer``'s rotation not in ``tried`` and admitted
    by its :class:`~.outlier.Outlier` at loop time ``now``.

    Ejected backends are used only when nothing else is left (a backend that
    only looks dead beats no backend); ``None`` when every backend was tried.
    """
    fallback = None
    for _ in range(len(balancer.items)):
        target = balancer.pick()
        if target is None:
            return None
        if target in tried:
            continue
        if target.outlier.admit(now):
            return target
        fallback = fallback or target
    return fallback


def choose_affine(
    affinity: Affinity[Target], client: bytes, tried: list[Target], now: float
) -> Target | None:
    """Like :func:`choose`, for a listener with ClientIP affinity: the client's
    backend (:meth:`~.affinity.Affinity.pick`, which pins it) first, then the
    others in the client's rendezvous order, so every worker retries the same way.

    The pin follows readiness only (Kubernetes' rule): while the pinned backend
    is ejected by its :class:`~.outlier.Outlier`, connections go to the next
    admitted backend in order, and the pin stays, so the client returns once
    the backend is back in. ``None`` when every ready backend was tried.
    """
    if not tried:
        first = affinity.pick(client, now)
        if first is None:
            return None
        if first.outlier.admit(now):
            return first
    fallback = None
    for target in affinity.fallbacks(client):
        if target in tried:
            continue
        if target.outlier.admit(now):
            return target
        fallback = fallback or target
    return fallback


class TcpListener:
    """A listening socket of one VIP:port and the connections it accepted.

    Calling the listener makes the protocol for a newly accepted connection.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        key: ListenerKey,
        options: ListenerOptions,
        stats: ListenerStats,
        gate: Gate,
        fds: FdBudget,
    ) -> None:
        self.loop = loop
        self.fds = fds
        self.key = key
        self.name = str(key)
        self.stats = stats
        self.balancer: RoundRobin[Target] = RoundRobin()
        self.targets: dict[tuple[str, int], Target] = {}
        self.conns: set[ClientConnection] = set()
        self.connecting: set[ClientConnection] = set()
        self.server: asyncio.AbstractServer | None = None
        self.options = options
        self.gate = gate
        self.max_connections = options.max_connections
        self.attempts = options.retries + 1
        self.source_filter = options.allows if options.source_ranges else None
        self.affinity = affinity_for(options)
        self.proxy_protocol = options.proxy_protocol
        self._limit_log = RateLimitedLog(log)
        self._no_backend_log = RateLimitedLog(log)
        self._fd_log = RateLimitedLog(log, interval=1.0)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = None

    # -- configuration -----------------------------------------------------

    def set_options(self, options: ListenerOptions) -> None:
        """New options; the open connections stay counted against the new limit."""
        self.options = options
        if options.max_connections != self.max_connections:
            self._limit_log = RateLimitedLog(log)  # a new limit gets its own line at once
        self.max_connections = options.max_connections
        self.attempts = options.retries + 1
        self.source_filter = options.allows if options.source_ranges else None
        self._set_affinity(options)
        self.proxy_protocol = options.proxy_protocol
        if self.server is not None or self.conns:
            self._stop_sweeps()
            self._start_sweeps()

    def set_backends(self, backends: tuple[Backend, ...]) -> None:
        """Ready backends enter the rotation; others get no new connections."""
        rotation = []
        for backend in backends:
            if not backend.ready:
                continue
            tkey = (str(backend.address), backend.port)
            target = self.targets.get(tkey)
            if target is None:
                name = str(backend)
                target = self.targets[tkey] = Target(backend, self.stats.backend(name))
            rotation.append(target)
        self.balancer.update(rotation)
        if self.affinity is not None:
            self.affinity.update(rotation)

    def _set_affinity(self, options: ListenerOptions) -> None:
        """Affinity on, off, or a new timeout (the pins are kept then)."""
        timeout = options.affinity_timeout
        if timeout is None:
            self.affinity = None
        elif self.affinity is None:
            self.affinity = affinity_for(options)
            assert self.affinity is not None
            self.affinity.update(self.balancer.items)
        else:
            self.affinity.timeout = timeout

    async def start(self, sock: socket.socket) -> None:
        self.server = await self.loop.create_server(self, sock=sock, backlog=4096)
        self._start_sweeps()

    async def resume(self, sock: socket.socket) -> None:
        """Listen again on ``sock`` (bound, not listening) after :meth:`stop_accepting`;
        the open connections and the limit count carry on. Raises ``OSError``
        when the socket cannot listen (``sock`` is closed then)."""
        try:
            self.server = await self.loop.create_server(self, sock=sock, backlog=4096)
        except BaseException:
            sock.close()
            raise
        self._stop_sweeps()
        self._start_sweeps()

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections continue."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.stop_accepting()
        self._stop_sweeps()
        for conn in list(self.conns):
            conn.abort()

    @property
    def accepting(self) -> bool:
        return self.server is not None

    # -- hot path ------------------------------------------------------------

    def __call__(self) -> ClientConnection:
        return ClientConnection(self)

    def choose(self, tried: list[Target], client: bytes | None = None) -> Target | None:
        """The next backend to connect to: :func:`choose_affine` for a client of a
        listener with affinity (``client``: its :func:`client_key`), else :func:`choose`."""
        affinity = self.affinity
        if affinity is not None and client is not None:
            return choose_affine(affinity, client, tried, self.loop.time())
        return choose(self.balancer, tried, self.loop.time())

    def limit_reached(self) -> None:
        self.stats.rejected_limit += 1
        self._limit_log.warning(
            "listener %s: connection limit %d reached, closing new connections",
            self.name,
            self.max_connections,
        )

    def fd_exhausted(self, why: str) -> None:
        """No descriptor for an upstream socket: the client is closed, counted."""
        self.stats.fd_exhausted += 1
        self._fd_log.warning(
            "listener %s: no file descriptor for an upstream (%s), closing new connections",
            self.name,
            why,
        )

    def no_backend(self, tried: int) -> None:
        self.stats.no_backend += 1
        if tried:
            msg = "listener %s: %d backend connect attempt(s) failed, closing the client"
            self._no_backend_log.warning(msg, self.name, tried)
        else:
            self._no_backend_log.warning(
                "listener %s: no ready backend, closing the client", self.name
            )

    # -- timeouts ------------------------------------------------------------
    # Instead of a timer per connection, two periodic sweeps count ticks: a
    # connection idle (or connecting) for more than TICKS sweeps times out, so
    # a timeout T fires between T and 1.25 T.

    def _start_sweeps(self) -> None:
        loop = self.loop
        opts = self.options
        self._idle_timer = loop.call_later(max(opts.idle_timeout / TICKS, 0.01), self._sweep_idle)
        self._connect_timer = loop.call_later(
            max(opts.connect_timeout / TICKS, 0.01), self._sweep_connecting
        )

    def _stop_sweeps(self) -> None:
        for timer in (self._idle_timer, self._connect_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._connect_timer = None

    def _sweep_idle(self) -> None:
        for conn in list(self.conns):
            conn.idle += 1
            if conn.idle > TICKS:
                conn.abort()
        if self.affinity is not None:
            self.affinity.expire(self.loop.time())
        if self.server is None and not self.conns:
            self._stop_sweeps()  # drained: nothing left to watch
            return
        interval = max(self.options.idle_timeout / TICKS, 0.01)
        self._idle_timer = self.loop.call_later(interval, self._sweep_idle)

    def _sweep_connecting(self) -> None:
        for conn in list(self.connecting):
            upstream = conn.upstream
            if upstream is not None and upstream.check_established():
                continue
            conn.ticks += 1
            if conn.ticks > TICKS:
                conn.connect_timed_out()
        interval = max(self.options.connect_timeout / TICKS, 0.01)
        self._connect_timer = self.loop.call_later(interval, self._sweep_connecting)

    @property
    def drained(self) -> bool:
        return self.server is None and not self.conns


def _delivered(transport: asyncio.Transport) -> bool:
    """True when everything written went into the kernel.

    A TCP socket takes bytes only once its handshake has completed (before
    that, ``send()`` says EAGAIN), so this proves the connect succeeded.
    """
    return transport.get_write_buffer_size() == 0 and not transport.is_closing()


class ClientConnection(asyncio.Protocol):
    """The accepted (client) side of a forwarded connection."""

    __slots__ = (
        "buffer",
        "client",
        "closed",
        "coro",
        "eof",
        "idle",
        "listener",
        "paused",
        "ticks",
        "transport",
        "tried",
        "upstream",
        "waiting",
    )

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        # Client bytes not yet known to have reached an established upstream.
        self.buffer: list[bytes] | None = []
        self.eof = False
        self.closed = False
        self.paused = False
        self.idle = 0
        self.ticks = 0
        self.tried: list[Target] = []
        self.client: bytes | None = None  # the affinity key, with affinity only
        self.coro: Coroutine[Any, Any, object] | None = None
        self.waiting: object = None  # what the coroutine waits for

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        listener = self.listener
        if listener.affinity is not None:
            self.client = client_key(transport.get_extra_info("peername"))
        if listener.source_filter is not None:
            peer = transport.get_extra_info("peername")
            if not listener.source_filter(ip_address(peer[0].split("%", 1)[0])):
                self.closed = True
                self.transport.abort()  # type: ignore[union-attr]
                listener.stats.rejected_source += 1
                return
        if not listener.gate.try_acquire(listener.max_connections):
            self.closed = True
            self.transport.abort()  # type: ignore[union-attr]
            listener.limit_reached()
            return
        if not listener.fds.take(2):
            listener.gate.release()
            self.closed = True
            self.transport.abort()  # type: ignore[union-attr]
            listener.fd_exhausted("RLIMIT_NOFILE nearly reached")
            return
        listener.conns.add(self)
        stats = listener.stats
        stats.accepted += 1
        stats.active += 1
        listener.connecting.add(self)
        self._next_attempt()

    # -- connecting ------------------------------------------------------------

    def _next_attempt(self) -> None:
        listener = self.listener
        tried = self.tried
        while len(tried) < listener.attempts:
            target = listener.choose(tried, self.client)
            if target is None:
                break
            if tried:
                listener.stats.retries += 1
            tried.append(target)
            try:
                sock = _UpstreamSocket(target.family, _NONBLOCKING_STREAM)
            except OSError as exc:
                target.outlier.abandon()
                if exc.errno not in EXHAUSTED:
                    raise
                listener.connecting.discard(self)
                listener.fd_exhausted(exc.strerror or str(exc))
                self.abort()
                return
            err = sock.connect_ex(target.sockaddr)
            if err not in _CONNECTING:
                _socket.socket.close(sock)
                self.attempt_failed(target)
                continue
            upstream = Upstream(self, target)
            self.upstream = upstream
            self.ticks = 0
            # Makes the transport (connection_made is called soon); the
            # coroutine is stepped here instead of in a Task of its own.
            # (uvloop needs only what _UpstreamSocket has of socket.socket.)
            loop = listener.loop
            self.coro = loop.create_connection(upstream, sock=sock)  # type: ignore[call-overload]
            self.waiting = None
            self._step(None)
            return
        listener.connecting.discard(self)
        listener.no_backend(len(tried))
        self.abort()

    def _step(self, waited: object) -> None:
        if waited is not self.waiting:
            return  # the future of an attempt that was replaced
        coro = self.coro
        if coro is None:
            return
        try:
            future = step_coroutine(coro)
        except StopIteration:
            self.coro = None
        except Exception as exc:  # the transport could not be made
            self.coro = None
            upstream = self.upstream
            log.warning("listener %s: %r", self.listener.name, exc)
            if upstream is not None and upstream.transport is None:
                upstream.failed(exc)
        else:
            self.waiting = future
            if future is None:  # a bare yield: continue on the next iteration
                self.listener.loop.call_soon(self._step, None)
                return
            future.add_done_callback(self._step)

    def attempt_failed(self, target: Target) -> None:
        listener = self.listener
        target.failed(listener.loop.time(), listener.name, log)

    def upstream_failed(self, upstream: Upstream) -> None:
        """The upstream ended before it was established: try the next backend."""
        self.attempt_failed(upstream.target)
        if self.upstream is upstream:
            self.upstream = None
        if self.closed:
            self.listener.connecting.discard(self)
            self.release()
            return
        self._next_attempt()

    def upstream_made(self, upstream: Upstream) -> None:
        """The upstream transport exists (the handshake may still be running)."""
        transport = upstream.transport
        assert transport is not None
        if self.closed:
            transport.abort()
            return
        version = self.listener.proxy_protocol
        if version is not None:  # the PROXY header goes first, on every attempt
            client = self.transport
            assert client is not None
            transport.write(
                proxy_header(
                    version, client.get_extra_info("peername"), client.get_extra_info("sockname")
                )
            )
        buffer = self.buffer
        if buffer:
            for chunk in buffer:
                transport.write(chunk)
        if self.eof:
            transport.write_eof()  # sent once the handshake completes
        if (buffer or version is not None) and _delivered(transport):
            upstream.establish()

    def upstream_established(self, upstream: Upstream) -> None:
        listener = self.listener
        listener.connecting.discard(self)
        target = upstream.target
        target.succeeded(listener.name, log)
        stats = target.stats
        stats.connections += 1
        stats.active += 1
        if self.buffer:
            stats.bytes_to_backend += sum(map(len, self.buffer))
        self.buffer = None
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def connect_timed_out(self) -> None:
        """Called by the listener's sweep: give up on the current attempt."""
        upstream = self.upstream
        if upstream is not None:
            upstream.close(True)  # its connection_lost moves on to the next backend

    # -- forwarding --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.idle = 0
        upstream = self.upstream
        buffer = self.buffer
        if buffer is None:  # established: the hot path
            upstream.transport.write(data)  # type: ignore[union-attr]
            upstream.target.stats.bytes_to_backend += len(data)  # type: ignore[union-attr]
            return
        buffer.append(data)
        if upstream is not None and upstream.transport is not None:
            transport = upstream.transport
            transport.write(data)
            if _delivered(transport):
                upstream.establish()
                return
        if not self.paused:  # keep at most one chunk in flight until connected
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.eof = True
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            return True  # passed on once an upstream exists
        if upstream.eof and upstream.established:
            self.close()
            return False
        transport = upstream.transport
        if not transport.is_closing():
            transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        listener = self.listener
        if self in listener.conns:
            listener.conns.discard(self)
            listener.gate.release()
            listener.fds.give(2)
            listener.stats.active -= 1
        listener.connecting.discard(self)
        self.closed = True
        upstream = self.upstream
        if upstream is None or upstream.closed:
            self.release()
        else:
            upstream.close(exc is not None or not upstream.established)

    def release(self) -> None:
        """Both sides are gone: drop the references that form cycles.

        The protocol and transport objects are then freed by reference
        counting instead of by the cyclic garbage collector.
        """
        upstream = self.upstream
        self.transport = None
        self.upstream = None
        self.buffer = None
        if upstream is not None:
            upstream.transport = None

    def pause_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()

    def close(self) -> None:
        """Close both sides after flushing what is buffered."""
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close(False)

    def abort(self) -> None:
        """Close both sides at once."""
        if self.transport is not None:
            self.transport.abort()
        if self.upstream is not None:
            self.upstream.close(True)


class Upstream(asyncio.Protocol):
    """The backend side of a forwarded connection.

    Until it is *established* (the handshake is known to have completed: the
    kernel took bytes, the backend sent some, or the socket has a peer) an
    ending means the connect failed, and the client tries the next backend.
    Calling it returns itself, so it is its own protocol factory.
    """

    __slots__ = (
        "client",
        "closed",
        "eof",
        "established",
        "target",
        "transport",
    )

    def __init__(self, client: ClientConnection, target: Target) -> None:
        self.client = client
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.closed = False
        self.established = False

    def __call__(self) -> Upstream:
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        # Until established, any unsent byte pauses the client and the
        # drain (``resume_writing``) tells that the handshake completed.
        self.transport.set_write_buffer_limits(0)  # type: ignore[union-attr]
        self.client.upstream_made(self)

    def establish(self) -> None:
        if self.established:
            return
        self.established = True
        if self.transport is not None:
            self.transport.set_write_buffer_limits()
        self.client.upstream_established(self)

    def check_established(self) -> bool:
        """Ask the kernel (used by the connect sweep when no bytes flowed)."""
        if self.established:
            return True
        transport = self.transport
        if transport is None or transport.get_extra_info("peername") is None:
            return False  # no transport yet, or not connected (ENOTCONN)
        self.establish()
        return True

    def failed(self, exc: BaseException) -> None:
        if not self.closed:
            self.closed = True
            self.client.upstream_failed(self)

    def data_received(self, data: bytes) -> None:
        if not self.established:
            self.establish()
        client = self.client
        client.idle = 0
        client.transport.write(data)  # type: ignore[union-attr]
        self.target.stats.bytes_to_client += len(data)

    def eof_received(self) -> bool:
        if not self.established:
            self.establish()
        self.eof = True
        client = self.client
        if client.eof:
            client.close()
            return False
        transport = client.transport
        if transport is not None and not transport.is_closing():
            transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        client = self.client
        if not self.established:
            log.debug(
                "listener %s: %s: connect failed: %r",
                client.listener.name,
                self.target.backend,
                exc,
            )
            self.transport = None
            client.upstream_failed(self)
            return
        self.target.stats.active -= 1
        if client.closed:
            client.release()
        elif client.transport is not None:
            if exc is None:
                client.transport.close()
            else:
                client.transport.abort()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()  # type: ignore[union-attr]
        self.client.paused = True

    def resume_writing(self) -> None:
        if not self.established:
            self.establish()  # resumes the client
            return
        client = self.client
        client.paused = False
        client.transport.resume_reading()  # type: ignore[union-attr]

    def close(self, abort: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if abort:
            transport.abort()
        else:
            transport.close()
