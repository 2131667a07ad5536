"""Every transition a reload or an endpoint change makes, under load.

For each transition (listener added, removed, added back while it drains,
options changed, backends emptied and refilled; TCP and UDP) the test keeps
new clients coming while :meth:`Forwarder.apply` runs and checks two things:

* every new client is served, and a client that starts after ``apply()``
  returned is served by the new configuration (the backend it reaches is
  one of the new ones; a removed listener refuses it);
* every flow that was open before the transition finishes: its data still
  goes both ways and a half-close is answered with the backend's EOF (UDP:
  the session's next datagram is answered by the backend it started with).

The VIP moving away from a node and back is the speaker's transition; it
does not touch the forwarder's listeners and is tested end to end in
``tests/e2e/test_speaker.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.forwarder.tcp import TcpListener
from ironlb.dataplane.forwarder.udp import UdpListener
from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

from .conftest import Backends, greet, state, tcp_key, udp_key

#: Clients each load generator starts in parallel.
PARALLEL = 4


@dataclass
class Served:
    """What one new client met: the backend's name, or what went wrong."""

    started: float
    backend: str | None = None
    error: str | None = None


@dataclass
class TcpLoad:
    """New TCP clients, one after another on :data:`PARALLEL` tasks, until stopped.

    Each connects, reads the backend's greeting, has one line echoed,
    half-closes and waits for the backend's EOF.
    """

    key: ListenerKey
    results: list[Served] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._run()) for _ in range(PARALLEL)]

    async def stop(self) -> list[Served]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.results

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            served = Served(loop.time())
            self.results.append(served)
            try:
                served.backend = await asyncio.wait_for(one_tcp_client(self.key), 10)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, AssertionError) as exc:
                served.error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.002)


async def one_tcp_client(key: ListenerKey) -> str:
    name, reader, writer = await greet(key)
    try:
        assert name, "no greeting: the connection was closed"
        writer.write(b"hello\n")
        assert await reader.readexactly(6) == b"hello\n"
        writer.write_eof()
        assert await reader.read() == b""
    finally:
        writer.close()
    return name


class TcpFlow:
    """A TCP connection opened before a transition and finished after it."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.name, self.reader, self.writer = name, reader, writer

    @classmethod
    async def open(cls, key: ListenerKey) -> TcpFlow:
        return cls(*await greet(key))

    async def finish(self) -> None:
        """Data both ways, then a half-close answered by the backend's EOF."""
        try:
            for i in range(3):
                msg = f"still here {i}\n".encode()
                self.writer.write(msg)
                assert await asyncio.wait_for(self.reader.readexactly(len(msg)), 5) == msg
            self.writer.write_eof()
            assert await asyncio.wait_for(self.reader.read(), 5) == b""
        finally:
            self.writer.close()


class UdpClient(asyncio.DatagramProtocol):
    """One client address (its own socket) talking to a UDP listener."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)

    @classmethod
    async def open(cls, key: ListenerKey) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(
            cls, remote_addr=(str(key.vip), key.port), family=socket.AF_INET
        )
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    async def ask(self, payload: bytes, timeout: float = 2.0) -> str | None:
        """The name of the backend that answered ``payload``, None if nobody did."""
        assert self.transport is not None
        self.transport.sendto(payload)
        try:
            reply = await asyncio.wait_for(self.replies.get(), timeout)
        except TimeoutError:
            return None
        name, _, echoed = reply.partition(b":")
        assert echoed == payload
        return name.decode()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def new_udp_clients(key: ListenerKey, count: int = 24) -> list[str | None]:
    """``count`` new client addresses, one datagram each: who answered each."""
    clients = [await UdpClient.open(key) for _ in range(count)]
    try:
        return list(await asyncio.gather(*(c.ask(b"new") for c in clients)))
    finally:
        for c in clients:
            c.close()


def after(results: list[Served], t: float) -> list[Served]:
    return [r for r in results if r.started > t]


def failures(results: list[Served]) -> list[str]:
    return [r.error for r in results if r.error is not None]


# -- TCP -----------------------------------------------------------------------


async def test_tcp_listener_added_beside_a_loaded_one(
    forwarder: Forwarder, backends: Backends
) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    a, b = tcp_key(), tcp_key()
    await forwarder.apply(state((a, [b0])))
    flow = await TcpFlow.open(a)
    load = TcpLoad(a)
    load.start()
    await asyncio.sleep(0.1)
    await forwarder.apply(state((a, [b0]), (b, [b1])))
    assert {await one_tcp_client(b) for _ in range(4)} == {"b1"}  # served at once
    await asyncio.sleep(0.1)
    results = await load.stop()
    assert not failures(results)
    assert {r.backend for r in results} == {"b0"}
    await flow.finish()


async def test_tcp_listener_removed_refuses_new_clients_and_open_flows_finish(
    forwarder: Forwarder, backends: Backends
) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    a, b = tcp_key(), tcp_key()
    await forwarder.apply(state((a, [b0]), (b, [b1])))
    flows = [await TcpFlow.open(b) for _ in range(3)]
    load = TcpLoad(a)
    load.start()
    await asyncio.sleep(0.1)
    await forwarder.apply(state((a, [b0])))
    try:
        await one_tcp_client(b)
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "a removed listener still accepts"
    await asyncio.sleep(0.1)
    results = await load.stop()
    assert not failures(results)  # the other listener never noticed
    for flow in flows:
        await flow.finish()


async def test_tcp_listener_added_back_while_it_drains(
    forwarder: Forwarder, backends: Backends
) -> None:
    """New clients reach the new backends at once; the draining flows finish;
    the open flows still count against ``max_connections``."""
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    key = tcp_key()
    opts = {key: ListenerOptions(max_connections=PARALLEL + 2)}
    await forwarder.apply(state((key, [b0]), options=opts))
    flows = [await TcpFlow.open(key) for _ in range(2)]
    await forwarder.apply(state())
    assert [lst.key for lst in forwarder.draining] == [key]
    await forwarder.apply(state((key, [b1]), options=opts))
    t = asyncio.get_running_loop().time()
    load = TcpLoad(key)
    load.start()
    await asyncio.sleep(0.3)
    results = await load.stop()
    assert not failures(results)
    assert {r.backend for r in after(results, t)} == {"b1"}
    # 2 draining + PARALLEL new ones fill the limit: one more is turned away.
    extra = [await TcpFlow.open(key) for _ in range(PARALLEL)]
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        name, _, writer = await greet(key)
        writer.close()
        assert name == "", f"{name} served past max_connections"
    assert forwarder.stats.listeners[str(key)].rejected_limit >= 1
    for flow in [*flows, *extra]:
        assert flow.name in ("b0", "b1")
        await flow.finish()
    assert [f.name for f in flows] == ["b0", "b0"]


async def test_tcp_options_changed_under_load(forwarder: Forwarder, backends: Backends) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(2)]
    key = tcp_key()
    await forwarder.apply(state((key, pool)))
    listener = forwarder.listeners[key]
    assert isinstance(listener, TcpListener)
    flows = [await TcpFlow.open(key) for _ in range(2)]
    load = TcpLoad(key)
    load.start()
    for n in range(6):
        opts = ListenerOptions(
            connect_timeout=1 + n, idle_timeout=30 + n, retries=n % 3, max_connections=100 + n
        )
        await forwarder.apply(state((key, pool), options={key: opts}))
        await asyncio.sleep(0.05)
    results = await load.stop()
    assert forwarder.listeners[key] is listener  # changed in place, never rebound
    assert listener.max_connections == 105
    assert not failures(results)
    assert {r.backend for r in results} == {"b0", "b1"}
    for flow in flows:
        await flow.finish()


async def test_tcp_backends_emptied_and_refilled(forwarder: Forwarder, backends: Backends) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    key = tcp_key()
    await forwarder.apply(state((key, [b0])))
    flows = [await TcpFlow.open(key) for _ in range(2)]
    await forwarder.apply(state((key, [])))
    # No backend: a new client is closed at once (no hang) and counted.
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert forwarder.stats.listeners[str(key)].no_backend >= 1
    # Not ready is the same as gone.
    await forwarder.apply(state((key, [Backend(b0.address, b0.port, ready=False)])))
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await forwarder.apply(state((key, [b1])))
    t = asyncio.get_running_loop().time()
    load = TcpLoad(key)
    load.start()
    await asyncio.sleep(0.3)
    results = await load.stop()
    assert not failures(results)
    assert {r.backend for r in after(results, t)} == {"b1"}
    for flow in flows:  # the flows to the emptied backend lived through it all
        assert flow.name == "b0"
        await flow.finish()


# -- UDP -----------------------------------------------------------------------


async def test_udp_listener_added_and_removed(forwarder: Forwarder, backends: Backends) -> None:
    u0, u1 = await backends.udp_server("u0"), await backends.udp_server("u1")
    a, b = udp_key(), udp_key()
    await forwarder.apply(state((a, [u0])))
    session = await UdpClient.open(a)
    try:
        assert await session.ask(b"1") == "u0"
        await forwarder.apply(state((a, [u0]), (b, [u1])))
        assert set(await new_udp_clients(b)) == {"u1"}
        await forwarder.apply(state((b, [u1])))
        assert await new_udp_clients(a, 4) == [None] * 4  # removed: new clients get nothing
        assert await session.ask(b"2") == "u0"  # the open session still works
        assert set(await new_udp_clients(b)) == {"u1"}
    finally:
        session.close()


async def test_udp_listener_added_back_while_its_sessions_drain(
    forwarder: Forwarder, backends: Backends
) -> None:
    """The reported fault: a UDP listener removed and added back while old
    sessions drain must serve every new client (before, a second
    ``SO_REUSEPORT`` socket was bound beside the draining one, and the new
    clients the kernel hashed onto the draining socket got nothing)."""
    u0, u1 = await backends.udp_server("u0"), await backends.udp_server("u1")
    key = udp_key()
    opts = {key: ListenerOptions(udp_session_timeout=30)}
    await forwarder.apply(state((key, [u0]), options=opts))
    sessions = [await UdpClient.open(key) for _ in range(3)]
    try:
        assert [await s.ask(b"a") for s in sessions] == ["u0"] * 3
        await forwarder.apply(state())
        await forwarder.apply(state((key, [u1]), options=opts))
        answers = await new_udp_clients(key, 40)
        assert answers == ["u1"] * 40, f"{answers.count(None)} of 40 new clients got nothing"
        assert [await s.ask(b"b") for s in sessions] == ["u0"] * 3  # open sessions finish
    finally:
        for s in sessions:
            s.close()


async def test_udp_options_changed_keep_sessions(forwarder: Forwarder, backends: Backends) -> None:
    u0 = await backends.udp_server("u0")
    key = udp_key()
    await forwarder.apply(state((key, [u0])))
    listener = forwarder.listeners[key]
    assert isinstance(listener, UdpListener)
    session = await UdpClient.open(key)
    try:
        assert await session.ask(b"a") == "u0"
        for n in range(4):
            opts = ListenerOptions(udp_session_timeout=10 + n, udp_max_sessions=50 + n)
            await forwarder.apply(state((key, [u0]), options={key: opts}))
            assert await session.ask(f"n{n}".encode()) == "u0"
        assert forwarder.listeners[key] is listener
        assert listener.max_sessions == 53
        assert set(await new_udp_clients(key)) == {"u0"}
    finally:
        session.close()


async def test_udp_backends_emptied_and_refilled(forwarder: Forwarder, backends: Backends) -> None:
    u0, u1 = await backends.udp_server("u0"), await backends.udp_server("u1")
    key = udp_key()
    await forwarder.apply(state((key, [u0])))
    session = await UdpClient.open(key)
    try:
        assert await session.ask(b"a") == "u0"
        await forwarder.apply(state((key, [])))
        assert await new_udp_clients(key, 4) == [None] * 4
        assert forwarder.stats.listeners[str(key)].no_backend >= 4
        assert await session.ask(b"b") == "u0"  # the open session lives on
        await forwarder.apply(state((key, [u1])))
        assert set(await new_udp_clients(key)) == {"u1"}
        assert await session.ask(b"c") == "u0"
    finally:
        session.close()
