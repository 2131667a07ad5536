"""ClientIP session affinity and per-listener timeouts through a real Forwarder on loopback.

Clients are told apart by their source address: every 127.0.0.0/8 address is
local, so a client socket bound to 127.0.1.N is client N.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from ironlb.dataplane.forwarder.affinity import rank
from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

from .conftest import Backends, state, tcp_key, udp_key
from .test_udp import Client

AFFINE = ListenerOptions(affinity_timeout=60.0)


def client_ip(n: int) -> str:
    return f"127.0.1.{n}"


async def who_from(key: ListenerKey, source: str) -> str:
    """The backend name a connection from ``source`` reaches."""
    reader, writer = await asyncio.open_connection(str(key.vip), key.port, local_addr=(source, 0))
    try:
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()


async def homes(key: ListenerKey, clients: list[str], per_client: int = 1) -> dict[str, set[str]]:
    """Per client, the set of backends its ``per_client`` connections reached."""
    seen: dict[str, set[str]] = {c: set() for c in clients}
    for _ in range(per_client):
        for c in clients:
            seen[c].add(await who_from(key, c))
    return seen


def only(seen: dict[str, set[str]]) -> dict[str, str]:
    assert all(len(names) == 1 for names in seen.values()), seen
    return {c: next(iter(names)) for c, names in seen.items()}


async def test_each_client_reaches_one_backend_over_50_connections(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(4)]
    key, plain = tcp_key(), tcp_key()
    await forwarder.apply(state((key, pool), (plain, pool), options={key: AFFINE}))
    clients = [client_ip(n) for n in range(1, 11)]
    home = only(await homes(key, clients, per_client=50))  # 500 connections
    assert len(set(home.values())) >= 2  # clients are spread, not all on one backend
    # a client without affinity: round-robin reaches every backend
    everyone = {f"b{i}" for i in range(4)}
    assert (await homes(plain, clients[:1], per_client=4))[clients[0]] == everyone
    assert forwarder.stats.listeners[str(key)].no_backend == 0


async def test_only_the_clients_of_a_removed_or_unready_backend_move(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(4)]
    key = tcp_key()
    await forwarder.apply(state((key, pool), options={key: AFFINE}))
    clients = [client_ip(n) for n in range(1, 41)]
    before = only(await homes(key, clients))
    gone = before[clients[0]]
    index = int(gone[1:])
    left = [b for i, b in enumerate(pool) if i != index]
    unready = Backend(pool[index].address, pool[index].port, ready=False)
    for change in (left, [*left, unready]):
        await forwarder.apply(state((key, change), options={key: AFFINE}))
        after = only(await homes(key, clients, per_client=3))
        moved = {c for c in clients if after[c] != before[c]}
        assert moved == {c for c in clients if before[c] == gone}
        assert gone not in after.values()
        await forwarder.apply(state((key, pool), options={key: AFFINE}))
        # the backend is back: the moved clients stay pinned where they went
        assert only(await homes(key, clients)) == after
        # affinity off and on again: a new pin table, so every client is back home
        await forwarder.apply(state((key, pool)))
        await forwarder.apply(state((key, pool), options={key: AFFINE}))
        assert only(await homes(key, clients)) == before


async def test_a_pin_expires_after_the_timeout(forwarder: Forwarder, backends: Backends) -> None:
    first, second = await backends.tcp("first"), await backends.tcp("second")
    key = tcp_key()
    opts = {key: ListenerOptions(affinity_timeout=1.0)}
    # a client whose rendezvous choice among both is "second"
    names = [str(first).encode(), str(second).encode()]
    client = next(
        c
        for c in (client_ip(n) for n in range(1, 200))
        if rank(socket.inet_aton(c), names, lambda n: n)[0] == names[1]
    )
    await forwarder.apply(state((key, [first]), options=opts))
    assert await who_from(key, client) == "first"
    await forwarder.apply(state((key, [first, second]), options=opts))
    start = time.monotonic()
    for _ in range(6):  # used every 0.3 s: the pin lives on
        assert await who_from(key, client) == "first"
        await asyncio.sleep(0.3)
    assert time.monotonic() - start > 1.5  # longer than the timeout in all
    await asyncio.sleep(1.3)  # unused for longer than the timeout
    assert await who_from(key, client) == "second"
    assert await who_from(key, client) == "second"


async def test_a_dead_pinned_backend_is_passed_over_and_the_client_still_served(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(3)]
    key = tcp_key()
    await forwarder.apply(state((key, pool), options={key: AFFINE}))
    clients = [client_ip(n) for n in range(1, 21)]
    before = only(await homes(key, clients))
    gone = before[clients[0]]
    await backends.stop(gone)  # still listed as ready: connects are refused
    after = only(await homes(key, clients, per_client=2))
    for c in clients:
        if before[c] == gone:
            assert after[c] != gone  # retried on the next backend in its order
        else:
            assert after[c] == before[c]
    assert forwarder.stats.listeners[str(key)].no_backend == 0


async def test_udp_sessions_of_a_client_reach_one_backend(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.udp_server(f"u{i}") for i in range(3)]
    key = udp_key()
    await forwarder.apply(state((key, pool), options={key: AFFINE}))
    loop = asyncio.get_running_loop()
    seen: dict[str, set[bytes]] = {}
    for n in range(1, 9):
        source = client_ip(n)
        for _ in range(10):  # a new source port each time: a new session
            transport, proto = await loop.create_datagram_endpoint(Client, local_addr=(source, 0))
            try:
                transport.sendto(b"hi", (str(key.vip), key.port))
                data, _ = await asyncio.wait_for(proto.replies.get(), 5)
            finally:
                transport.close()
            seen.setdefault(source, set()).add(data.partition(b":")[0])
    assert all(len(names) == 1 for names in seen.values()), seen
    assert len(set().union(*seen.values())) >= 2
    assert forwarder.stats.listeners[str(key)].udp_sessions_active == 80


async def test_idle_and_connect_timeouts_apply_per_listener(
    forwarder: Forwarder, backends: Backends, blackhole: Backend
) -> None:
    b0 = await backends.tcp("b0")
    short, long = tcp_key(), tcp_key()
    opts = {
        short: ListenerOptions(idle_timeout=0.4, connect_timeout=0.3),
        long: ListenerOptions(idle_timeout=30.0, connect_timeout=30.0),
    }
    await forwarder.apply(state((short, [blackhole, b0]), (long, [b0]), options=opts))
    # connect: the blackholed backend is given up after 0.3 s and the next one used
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(str(short.vip), short.port)
    assert await asyncio.wait_for(reader.readline(), 10) == b"b0\n"
    assert time.monotonic() - start < 3
    # idle: the short listener's connection is closed, the long one's is not
    lreader, lwriter = await asyncio.open_connection(str(long.vip), long.port)
    assert await lreader.readline() == b"b0\n"
    start = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 10) == b""
    assert 0.3 < time.monotonic() - start < 3
    writer.close()
    lwriter.write(b"still here")
    assert await asyncio.wait_for(lreader.readexactly(10), 5) == b"still here"
    lwriter.close()
    stats = forwarder.stats.listeners[str(short)]
    assert stats.backends[str(blackhole)].failed == 1


async def test_a_udp_client_of_a_stopped_backend_moves_to_its_next_ranked_one(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.udp_server(f"u{i}") for i in range(3)]
    names = {str(b).encode(): f"u{i}" for i, b in enumerate(pool)}
    key = udp_key()
    await forwarder.apply(state((key, pool), options={key: AFFINE}))
    clients = [client_ip(n) for n in range(1, 13)]
    order = {c: [names[n] for n in rank(socket.inet_aton(c), list(names), bytes)] for c in clients}
    dead = order[clients[0]][0]
    backends.udp[int(dead[1:])].close()  # its port answers ICMP port unreachable
    loop = asyncio.get_running_loop()
    for c in clients:
        transport, proto = await loop.create_datagram_endpoint(Client, local_addr=(c, 0))
        try:
            for _ in range(3):  # a client retries; after an ICMP error the proxy resends itself
                transport.sendto(b"q", (str(key.vip), key.port))
                with contextlib.suppress(TimeoutError):
                    data, _ = await asyncio.wait_for(proto.replies.get(), 1.0)
                    break
            else:
                raise AssertionError(f"{c}: no answer")
        finally:
            transport.close()
        expected = order[c][1] if order[c][0] == dead else order[c][0]
        assert data.partition(b":")[0].decode() == expected, (c, order[c])
