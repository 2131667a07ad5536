"""UDP forwarding: sessions per client, replies from the VIP, expiry, bounds."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

from .conftest import LOCAL, Backends, state, udp_key


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait((data, addr))


async def client(key: ListenerKey) -> tuple[asyncio.DatagramTransport, Client]:
    """An unconnected client socket, so replies from any address are seen."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, proto = await loop.create_datagram_endpoint(Client, sock=sock)
    return transport, proto


async def ask(
    key: ListenerKey, payload: bytes, timeout: float = 5
) -> tuple[bytes, tuple[str, int]]:
    transport, proto = await client(key)
    try:
        transport.sendto(payload, (str(key.vip), key.port))
        return await asyncio.wait_for(proto.replies.get(), timeout)
    finally:
        transport.close()


async def test_many_clients_get_answers_from_the_vip(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.udp_server(f"u{i}") for i in range(2)]
    key = udp_key()
    await forwarder.apply(state((key, pool)))
    clients = [await client(key) for _ in range(200)]
    try:
        for i, (transport, _) in enumerate(clients):
            transport.sendto(f"req{i}".encode(), (str(key.vip), key.port))
        replies = [await asyncio.wait_for(proto.replies.get(), 10) for _, proto in clients]
    finally:
        for transport, _ in clients:
            transport.close()
    for i, (data, addr) in enumerate(replies):
        assert addr == (str(key.vip), key.port)  # from the VIP:port the client used
        _, _, echoed = data.partition(b":")
        assert echoed == f"req{i}".encode()
    names = [data.partition(b":")[0] for data, _ in replies]
    assert names.count(b"u0") == names.count(b"u1") == 100  # sessions round-robin
    # one upstream socket per client: each backend saw 100 distinct source ports
    assert len(backends.udp_peers["u0"]) == len(backends.udp_peers["u1"]) == 100
    assert forwarder.stats.listeners[str(key)].udp_sessions_active == 200


async def test_a_client_keeps_its_session_and_backend(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.udp_server(f"u{i}") for i in range(3)]
    key = udp_key()
    await forwarder.apply(state((key, pool)))
    transport, proto = await client(key)
    try:
        seen = set()
        for i in range(5):
            transport.sendto(b"x%d" % i, (str(key.vip), key.port))
            data, _ = await asyncio.wait_for(proto.replies.get(), 5)
            seen.add(data.partition(b":")[0])
    finally:
        transport.close()
    assert len(seen) == 1
    assert forwarder.stats.listeners[str(key)].udp_sessions_active == 1


async def test_idle_sessions_expire(forwarder: Forwarder, backends: Backends) -> None:
    key = udp_key()
    opts = {key: ListenerOptions(udp_session_timeout=0.3)}
    await forwarder.apply(state((key, [await backends.udp_server("u0")]), options=opts))
    data, _ = await ask(key, b"hi")
    assert data == b"u0:hi"
    listener = forwarder.listeners[key]
    assert len(listener.sessions) == 1  # type: ignore[union-attr]
    for _ in range(100):
        if not listener.sessions:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    assert listener.sessions == {}  # type: ignore[union-attr]
    assert forwarder.stats.listeners[str(key)].udp_sessions_active == 0
    data, _ = await ask(key, b"again")  # a new session works after expiry
    assert data == b"u0:again"


async def test_session_bound_drops_new_clients(forwarder: Forwarder, backends: Backends) -> None:
    key = udp_key()
    opts = {key: ListenerOptions(udp_max_sessions=3)}
    await forwarder.apply(state((key, [await backends.udp_server("u0")]), options=opts))
    held = [await client(key) for _ in range(3)]
    try:
        for transport, proto in held:
            transport.sendto(b"a", (str(key.vip), key.port))
            await asyncio.wait_for(proto.replies.get(), 5)
        extra, extra_proto = await client(key)
        extra.sendto(b"b", (str(key.vip), key.port))
        await asyncio.sleep(0.3)
        assert extra_proto.replies.empty()  # dropped: no fourth session
        extra.close()
        # the existing sessions keep working
        transport, proto = held[0]
        transport.sendto(b"c", (str(key.vip), key.port))
        assert (await asyncio.wait_for(proto.replies.get(), 5))[0] == b"u0:c"
    finally:
        for transport, _ in held:
            transport.close()
    stats = forwarder.stats.listeners[str(key)]
    assert stats.udp_dropped == 1
    assert stats.udp_sessions_active == 3


async def test_unreachable_backend_ends_the_session(
    forwarder: Forwarder, backends: Backends
) -> None:
    """ICMP port unreachable closes the session; the next datagram picks again."""
    dead_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead_sock.bind(("127.0.0.1", 0))
    dead_port = dead_sock.getsockname()[1]
    dead_sock.close()
    dead = Backend(LOCAL, dead_port)
    alive = await backends.udp_server("alive")
    key = udp_key()
    await forwarder.apply(state((key, [dead, alive])))
    transport, proto = await client(key)
    try:
        answer = None
        for _ in range(5):
            transport.sendto(b"ping", (str(key.vip), key.port))
            try:
                answer = await asyncio.wait_for(proto.replies.get(), 0.5)
                break
            except TimeoutError:
                continue
    finally:
        transport.close()
    assert answer is not None and answer[0] == b"alive:ping"
    assert forwarder.stats.listeners[str(key)].backends[str(dead)].failed >= 1


async def test_ipv6_sessions_answer_from_the_vip(forwarder: Forwarder, backends: Backends) -> None:
    try:
        backend = await backends.udp_server("v6", host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    key = udp_key(host="::1")
    await forwarder.apply(state((key, [backend])))
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    transport, proto = await loop.create_datagram_endpoint(Client, sock=sock)
    try:
        transport.sendto(b"six", ("::1", key.port))
        data, addr = await asyncio.wait_for(proto.replies.get(), 5)
    finally:
        transport.close()
    assert data == b"v6:six"
    assert addr[:2] == ("::1", key.port)


async def test_source_ranges_drop_datagrams_of_other_clients(
    forwarder: Forwarder, backends: Backends
) -> None:
    key = udp_key()
    opts = {key: ListenerOptions(source_ranges=(ipaddress.ip_network("fd00::/8"),))}
    await forwarder.apply(state((key, [await backends.udp_server("u0")]), options=opts))
    with pytest.raises(TimeoutError):
        await ask(key, b"hi", timeout=0.5)
    assert forwarder.stats.listeners[str(key)].rejected_source == 1
    assert forwarder.listeners[key].sessions == {}  # type: ignore[union-attr]
