"""Loopback backends for the forwarder tests.

``Backends`` starts TCP servers that greet with their name (``b0\\n``) and
then echo, honouring half-close (EOF in -> EOF out after the echo), and UDP
servers that answer ``name:payload``. ``foreign`` starts a plain Python
process holding an address (a listener's "another process"). Every test gets
free ports on 127.0.0.1 and closes everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import uvloop

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.state import Backend, DesiredState, ListenerKey, ListenerOptions
from tests.support import free_port as free_port

LOCAL = ipaddress.ip_address("127.0.0.1")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    # The forwarder runs on uvloop in production; test it there.
    return {"uvloop": uvloop.new_event_loop}


class NamedEcho(asyncio.Protocol):
    """Greets with ``name\\n``, echoes, half-closes after the peer does."""

    def __init__(self, name: str, counts: dict[str, int], conns: set[NamedEcho]) -> None:
        self.name = name
        self.counts = counts
        self.conns = conns
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conns.add(self)
        self.counts[self.name] = self.counts.get(self.name, 0) + 1
        self.transport.write(f"{self.name}\n".encode())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.transport.write_eof()  # type: ignore[union-attr]
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)


class UdpNamed(asyncio.DatagramProtocol):
    def __init__(self, name: str, peers: set[tuple[str, int]]) -> None:
        self.name = name
        self.peers = peers
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peers.add(addr)
        self.transport.sendto(self.name.encode() + b":" + data, addr)  # type: ignore[union-attr]


class Backends:
    """Starts named backends on free ports and closes them afterwards."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.udp_peers: dict[str, set[tuple[str, int]]] = {}
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.udp: list[asyncio.DatagramTransport] = []
        self.conns: set[NamedEcho] = set()

    async def tcp(self, name: str, host: str = "127.0.0.1", port: int = 0) -> Backend:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: NamedEcho(name, self.counts, self.conns), host, port or free_port(host=host)
        )
        self.servers[name] = server
        sockname = server.sockets[0].getsockname()
        return Backend(ipaddress.ip_address(host), sockname[1])

    async def udp_server(self, name: str, host: str = "127.0.0.1") -> Backend:
        loop = asyncio.get_running_loop()
        peers: set[tuple[str, int]] = set()
        self.udp_peers[name] = peers
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpNamed(name, peers), local_addr=(host, free_port(socket.SOCK_DGRAM, host))
        )
        self.udp.append(transport)
        port = transport.get_extra_info("sockname")[1]
        return Backend(ipaddress.ip_address(host), port)

    async def stop(self, name: str) -> None:
        server = self.servers.pop(name)
        server.close()
        await server.wait_closed()

    async def close(self) -> None:
        for server in self.servers.values():
            server.close()
        for transport in self.udp:
            transport.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.abort()
        self.servers.clear()
        # Let the transports finish closing before the loop goes away: uvloop
        # crashes when it frees a transport that is still open with a pending
        # write_eof() (shutdown request).
        await asyncio.sleep(0.05)


def dead_backend() -> Backend:
    """A loopback port nobody listens on (connects are refused)."""
    return Backend(LOCAL, free_port())


@pytest.fixture
async def blackhole() -> AsyncIterator[Backend]:
    """A backend whose connects hang: a listener with a full accept queue drops SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    await asyncio.sleep(0.2)
    try:
        yield Backend(ipaddress.ip_address("127.0.0.1"), listener.getsockname()[1])
    finally:
        for sock in [*fillers, listener]:
            sock.close()


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    pool = Backends()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    fwd = Forwarder(asyncio.get_running_loop())
    try:
        yield fwd
    finally:
        fwd.close()
        await asyncio.sleep(0.05)  # see Backends.close()


def tcp_key(port: int | None = None, host: str = "127.0.0.1") -> ListenerKey:
    return ListenerKey(ipaddress.ip_address(host), "tcp", port or free_port(host=host))


def udp_key(port: int | None = None, host: str = "127.0.0.1") -> ListenerKey:
    return ListenerKey(
        ipaddress.ip_address(host), "udp", port or free_port(socket.SOCK_DGRAM, host)
    )


def state(
    *entries: tuple[ListenerKey, list[Backend]],
    options: dict[ListenerKey, ListenerOptions] | None = None,
) -> DesiredState:
    return DesiredState.build(entries, options)


async def greet(key: ListenerKey) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect through the forwarder; the backend's name and the stream."""
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    name = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    return name, reader, writer


async def who(key: ListenerKey) -> str:
    name, _, writer = await greet(key)
    writer.close()
    return name


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """Errors the event loop would log (unhandled exceptions in callbacks)."""
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        yield errors
    finally:
        loop.set_exception_handler(old)


HOLDER = textwrap.dedent(
    """\
    import os, socket, sys, time
    if sys.argv[4] == "detach" and os.fork():  # the holder is then no child of ours
        os._exit(0)
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    kind = socket.SOCK_STREAM if sys.argv[3] == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((sys.argv[1], int(sys.argv[2])))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    print(os.getpid(), flush=True)
    time.sleep(120)
    """
)

PYTHON = os.path.basename(sys.executable)

Hold = Callable[..., int]


@pytest.fixture
def foreign() -> Iterator[Hold]:
    """``hold(address, port, protocol, detach=True)`` starts a plain Python process
    holding that address with ``SO_REUSEPORT`` (as a second balancer would) and
    returns its pid; detached, it is no descendant of this process. Killed at the end."""
    pids: list[int] = []

    def hold(address: str, port: int, protocol: str, detach: bool = True) -> int:
        how = "detach" if detach else "stay"
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, address, str(port), protocol, how],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if detach:
            proc.wait(10)
        else:
            children.append(proc)
        assert line.strip().isdigit(), line
        pids.append(int(line))
        return int(line)

    children: list[subprocess.Popen[str]] = []
    try:
        yield hold
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in children:
            proc.wait(10)
