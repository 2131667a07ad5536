"""TCP forwarding through a real Forwarder on loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket

import pytest

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.forwarder.outlier import Outlier
from ironlb.dataplane.forwarder.tcp import TcpListener
from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

from .conftest import Backends, dead_backend, free_port, greet, state, tcp_key, who


async def test_round_robin_gives_each_backend_an_exact_share(
    forwarder: Forwarder, backends: Backends, loop_errors: list[dict[str, object]]
) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(3)]
    key = tcp_key()
    await forwarder.apply(state((key, pool)))
    names = [await who(key) for _ in range(30)]
    assert {n: names.count(n) for n in set(names)} == {"b0": 10, "b1": 10, "b2": 10}
    assert names[:3] == ["b0", "b1", "b2"]  # strict rotation, in order
    await asyncio.sleep(0.1)
    stats = forwarder.stats.listeners[str(key)]
    assert stats.accepted == 30
    assert {b: s.connections for b, s in stats.backends.items()} == {str(b): 10 for b in pool}
    assert not loop_errors


async def test_not_ready_backends_get_no_connections(
    forwarder: Forwarder, backends: Backends
) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    key = tcp_key()
    await forwarder.apply(state((key, [b0, Backend(b1.address, b1.port, ready=False)])))
    assert {await who(key) for _ in range(6)} == {"b0"}


async def test_dead_backend_is_skipped_and_no_client_fails(
    forwarder: Forwarder, backends: Backends
) -> None:
    alive = await backends.tcp("alive")
    dead = dead_backend()
    key = tcp_key()
    await forwarder.apply(state((key, [dead, alive])))
    names = await asyncio.gather(*(who(key) for _ in range(40)))
    assert set(names) == {"alive"}
    stats = forwarder.stats.listeners[str(key)]
    assert stats.backends[str(dead)].failed >= 1
    assert stats.backends[str(dead)].connections == 0
    assert stats.no_backend == 0


async def test_all_backends_dead_closes_the_client_at_once(forwarder: Forwarder) -> None:
    key = tcp_key()
    await forwarder.apply(state((key, [dead_backend(), dead_backend()])))
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    writer.write(b"hello")
    # closed, not left hanging: EOF (or a reset) well before any timeout
    try:
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        data = b""
    assert data == b""
    writer.close()
    assert forwarder.stats.listeners[str(key)].no_backend == 1


async def test_no_ready_backend_closes_the_client(forwarder: Forwarder, backends: Backends) -> None:
    b0 = await backends.tcp("b0")
    key = tcp_key()
    await forwarder.apply(state((key, [Backend(b0.address, b0.port, ready=False)])))
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert backends.counts == {}


async def test_connect_timeout_moves_on_to_the_next_backend(
    forwarder: Forwarder, backends: Backends, blackhole: Backend
) -> None:
    alive = await backends.tcp("alive")
    key = tcp_key()
    opts = {key: ListenerOptions(connect_timeout=0.3)}
    await forwarder.apply(state((key, [blackhole, alive]), options=opts))
    name, _, writer = await asyncio.wait_for(greet(key), 10)
    assert name == "alive"
    writer.close()
    stats = forwarder.stats.listeners[str(key)]
    assert stats.backends[str(blackhole)].failed == 1
    assert stats.retries == 1


async def test_half_close_keeps_the_other_direction_open(
    forwarder: Forwarder, backends: Backends
) -> None:
    key = tcp_key()
    await forwarder.apply(state((key, [await backends.tcp("b0")])))
    name, reader, writer = await greet(key)
    writer.write(b"x" * 100_000)
    writer.write_eof()  # client -> backend closed; backend -> client must stay open
    echoed = await asyncio.wait_for(reader.read(), 10)  # the echo, then the backend's EOF
    assert name == "b0"
    assert echoed == b"x" * 100_000
    writer.close()


async def test_backend_half_close_reaches_the_client(
    forwarder: Forwarder, loop_errors: list[dict[str, object]]
) -> None:
    """The backend sends its answer and FIN first; the client can still send."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner")
        writer.write_eof()
        got.set_result(await reader.read())
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        backend = Backend(ipaddress.ip_address("127.0.0.1"), server.sockets[0].getsockname()[1])
        key = tcp_key()
        await forwarder.apply(state((key, [backend])))
        reader, writer = await asyncio.open_connection(str(key.vip), key.port)
        assert await asyncio.wait_for(reader.read(), 10) == b"banner"
        writer.write(b"after backend EOF")
        writer.write_eof()
        assert await asyncio.wait_for(got, 10) == b"after backend EOF"
        writer.close()
    finally:
        server.close()
    assert not loop_errors


async def test_connection_limit_closes_extra_clients(
    forwarder: Forwarder, backends: Backends
) -> None:
    key = tcp_key()
    opts = {key: ListenerOptions(max_connections=3)}
    await forwarder.apply(state((key, [await backends.tcp("b0")]), options=opts))
    held = [await greet(key) for _ in range(3)]
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    try:
        extra = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        extra = b""
    assert extra == b""  # over the limit: closed without reaching a backend
    writer.close()
    assert backends.counts == {"b0": 3}
    assert forwarder.stats.listeners[str(key)].rejected_limit == 1
    for _, _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    assert await who(key) == "b0"  # below the limit again


async def test_idle_connections_are_closed(forwarder: Forwarder, backends: Backends) -> None:
    key = tcp_key()
    opts = {key: ListenerOptions(idle_timeout=0.4)}
    await forwarder.apply(state((key, [await backends.tcp("b0")]), options=opts))
    _, reader, writer = await greet(key)
    with contextlib.suppress(ConnectionResetError):  # closed by the proxy: EOF or reset
        assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    await asyncio.sleep(0.1)
    assert forwarder.stats.listeners[str(key)].active == 0


async def test_slow_reader_keeps_proxy_buffers_bounded(
    forwarder: Forwarder, loop_errors: list[dict[str, object]]
) -> None:
    """A backend pushes 64 MiB to a client that reads slowly: backpressure
    must stop the proxy from reading ahead, so its buffers stay small."""
    total = 64 * 1024 * 1024
    chunk = b"z" * 65536

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    key = tcp_key()
    backend = Backend(ipaddress.ip_address("127.0.0.1"), server.sockets[0].getsockname()[1])
    await forwarder.apply(state((key, [backend])))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (str(key.vip), key.port))
    listener = forwarder.listeners[key]
    assert isinstance(listener, TcpListener)
    received = 0
    peak = 0
    try:
        while received < total:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 30)
            if not data:
                break
            received += len(data)
            for conn in listener.conns:  # the proxy's buffer towards the client
                if conn.transport is not None:
                    peak = max(peak, conn.transport.get_write_buffer_size())
            if received < 4 * 1024 * 1024:
                await asyncio.sleep(0.002)  # slow at first: lets buffers fill if unbounded
    finally:
        sock.close()
        server.close()
    assert received == total
    # asyncio's default high-water mark is 64 KiB; one read (<= 256 KiB) may overshoot it.
    assert peak <= 1024 * 1024
    assert not loop_errors


async def test_ipv6_listener_and_backends(forwarder: Forwarder, backends: Backends) -> None:
    try:
        b0 = await backends.tcp("v6-b0", host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    key = tcp_key(host="::1")
    await forwarder.apply(state((key, [b0])))
    assert await who(key) == "v6-b0"


async def test_listener_binds_to_an_address_not_on_the_node(forwarder: Forwarder) -> None:
    """IP_FREEBIND: the listener exists before the VIP is added (no traffic sent)."""
    key = tcp_key(port=free_port(), host="198.18.255.254")
    errors = await forwarder.apply(state((key, [dead_backend()])))
    assert errors == {}
    assert forwarder.listeners[key].accepting


async def test_bytes_sent_before_a_failed_connect_reach_the_next_backend(
    forwarder: Forwarder, backends: Backends, blackhole: Backend
) -> None:
    """The client talks first; the first backend times out, the second gets
    everything (data and EOF) replayed."""
    key = tcp_key()
    opts = {key: ListenerOptions(connect_timeout=0.3)}
    await forwarder.apply(
        state((key, [blackhole, dead_backend(), await backends.tcp("b0")]), options=opts)
    )
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    payload = b"early bytes " * 1000
    writer.write(payload)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer == b"b0\n" + payload
    writer.close()
    stats = forwarder.stats.listeners[str(key)]
    assert stats.retries == 2
    assert sum(b.failed for b in stats.backends.values()) == 2


async def test_many_concurrent_clients_with_a_dead_backend(
    forwarder: Forwarder, backends: Backends, loop_errors: list[dict[str, object]]
) -> None:
    key = tcp_key()
    pool = [dead_backend(), await backends.tcp("b0"), dead_backend(), await backends.tcp("b1")]
    await forwarder.apply(state((key, pool)))

    async def exchange(i: int) -> bytes:
        reader, writer = await asyncio.open_connection(str(key.vip), key.port)
        writer.write(b"%d" % i)
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data

    answers = await asyncio.gather(*(exchange(i) for i in range(200)))
    for i, answer in enumerate(answers):
        name, _, echoed = answer.partition(b"\n")
        assert name in (b"b0", b"b1")
        assert echoed == b"%d" % i
    assert forwarder.stats.listeners[str(key)].no_backend == 0
    assert not loop_errors


async def test_byte_counters_cover_both_directions(
    forwarder: Forwarder, backends: Backends
) -> None:
    key = tcp_key()
    backend = await backends.tcp("b0")
    await forwarder.apply(state((key, [backend])))
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    writer.write(b"a" * 5000)  # sent before the upstream is known to be up
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 10) == b"b0\n" + b"a" * 5000
    writer.close()
    await asyncio.sleep(0.1)
    stats = forwarder.stats.listeners[str(key)].backends[str(backend)]
    assert (stats.bytes_to_backend, stats.bytes_to_client) == (5000, 5003)
    assert (stats.connections, stats.active) == (1, 0)


def open_descriptors() -> dict[str, int]:
    """This process's open descriptors by kind (``socket``, ``anon_inode``, ...)."""
    kinds: dict[str, int] = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            kind = os.readlink(f"/proc/self/fd/{fd}").split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def close_backend_sides(backends: Backends) -> None:
    """Close the test backends' ends, which stay open half-closed; the proxy closes its own."""
    await asyncio.sleep(0.2)
    for conn in list(backends.conns):
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0.2)


async def exchange(key: ListenerKey, data: bytes) -> bytes:
    """Send ``data`` and EOF through the forwarder; all the backend answered until its EOF."""
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    writer.write(data)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_upstream_descriptors_are_closed_once_and_not_leaked(
    forwarder: Forwarder, backends: Backends, loop_errors: list[dict[str, object]]
) -> None:
    """Upstream sockets are handed to uvloop as bare descriptors: none may leak.

    Failed connects (a refused one ends its transport) and established ones
    both return the process to its descriptor count; a descriptor closed twice
    would break a later connection that got the same number.
    """
    key = tcp_key()
    pool = [dead_backend(), await backends.tcp("b0")]
    await forwarder.apply(state((key, pool)))
    assert await exchange(key, b"x") == b"b0\nx"  # warm-up: loop resources exist
    await close_backend_sides(backends)
    before = open_descriptors()
    for round_ in range(3):
        for target in forwarder.listeners[key].targets.values():
            target.outlier = Outlier()  # let every round try the dead backend again
        answers = await asyncio.gather(*(exchange(key, b"%d" % i) for i in range(50)))
        assert answers == [b"b0\n%d" % i for i in range(50)], round_
    await close_backend_sides(backends)
    assert open_descriptors() == before
    assert not loop_errors


async def test_source_ranges_refuse_other_clients_and_options_apply_declaratively(
    forwarder: Forwarder, backends: Backends
) -> None:
    b0 = await backends.tcp("b0")
    key = tcp_key()
    elsewhere = {key: ListenerOptions(source_ranges=(ipaddress.ip_network("198.18.0.0/24"),))}
    await forwarder.apply(state((key, [b0]), options=elsewhere))
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    try:
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        data = b""
    assert data == b""  # 127.0.0.1 is not in 198.18.0.0/24: closed at once
    writer.close()
    assert forwarder.stats.listeners[str(key)].rejected_source == 1
    assert backends.counts == {}
    here = {key: ListenerOptions(source_ranges=(ipaddress.ip_network("127.0.0.0/8"),))}
    await forwarder.apply(state((key, [b0]), options=here))  # same backends, new options
    assert await who(key) == "b0"
    await forwarder.apply(state((key, [b0])))  # options back to the defaults: everyone
    assert await who(key) == "b0"
    assert forwarder.listeners[key].options == ListenerOptions()
