"""Forwarder.apply(): reconfiguration never drops open connections."""

from __future__ import annotations

import asyncio
import random

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.state import Backend, ListenerOptions

from .conftest import Backends, greet, state, tcp_key, udp_key, who


async def test_applying_the_same_state_twice_changes_nothing(
    forwarder: Forwarder, backends: Backends
) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(3)]
    key = tcp_key()
    desired = state((key, pool))
    await forwarder.apply(desired)
    listener = forwarder.listeners[key]
    server = listener.server  # type: ignore[union-attr]
    assert await who(key) == "b0"
    await forwarder.apply(state((key, list(pool))))  # equal, not identical
    assert forwarder.listeners[key] is listener
    assert listener.server is server  # type: ignore[union-attr]  # not rebound
    assert await who(key) == "b1"  # round-robin position kept


async def test_removed_backend_drains_and_added_backend_gets_traffic(
    forwarder: Forwarder, backends: Backends
) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    key = tcp_key()
    await forwarder.apply(state((key, [b0])))
    name, reader, writer = await greet(key)
    assert name == "b0"
    await forwarder.apply(state((key, [b1])))
    assert {await who(key) for _ in range(4)} == {"b1"}
    writer.write(b"still here")  # the connection to the removed backend lives on
    assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"
    writer.close()


async def test_removed_listener_stops_accepting_but_keeps_connections(
    forwarder: Forwarder, backends: Backends
) -> None:
    key = tcp_key()
    await forwarder.apply(state((key, [await backends.tcp("b0")])))
    _, reader, writer = await greet(key)
    await forwarder.apply(state())
    try:
        _, w2 = await asyncio.open_connection(str(key.vip), key.port)
        w2.close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    writer.close()


async def test_readded_listener_accepts_again(forwarder: Forwarder, backends: Backends) -> None:
    key = tcp_key()
    desired = state((key, [await backends.tcp("b0")]))
    await forwarder.apply(desired)
    await forwarder.apply(state())
    await forwarder.apply(desired)
    assert await who(key) == "b0"


async def test_removed_udp_listener_keeps_sessions_until_idle(
    forwarder: Forwarder, backends: Backends
) -> None:
    key = udp_key()
    opts = {key: ListenerOptions(udp_session_timeout=0.4)}
    await forwarder.apply(state((key, [await backends.udp_server("u0")]), options=opts))
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(str(key.vip), key.port))
    try:
        transport.sendto(b"a")
        assert await asyncio.wait_for(replies.get(), 5) == b"u0:a"
        listener = forwarder.listeners[key]
        await forwarder.apply(state())
        transport.sendto(b"b")  # the open session still works
        assert await asyncio.wait_for(replies.get(), 5) == b"u0:b"
        for _ in range(100):
            if listener.drained:
                break
            await asyncio.sleep(0.05)
        assert listener.drained  # closed once its last session expired
    finally:
        transport.close()


async def test_reload_under_load_drops_nothing(forwarder: Forwarder, backends: Backends) -> None:
    """Clients stream data while the backend set changes again and again."""
    pool = [await backends.tcp(f"b{i}") for i in range(4)]
    key, other = tcp_key(), tcp_key()
    rng = random.Random(7)

    def variant() -> list[Backend]:
        """Some of the backends, in some order, some not ready (at least one is)."""
        chosen = rng.sample(pool, rng.randint(1, 4))
        return [
            Backend(b.address, b.port, ready=i == 0 or rng.random() < 0.7)
            for i, b in enumerate(chosen)
        ]

    await forwarder.apply(state((key, pool)))
    done = 0

    async def one_client(i: int) -> None:
        nonlocal done
        _, reader, writer = await greet(key)
        for j in range(20):
            msg = f"client {i} message {j}\n".encode()
            writer.write(msg)
            assert await asyncio.wait_for(reader.readexactly(len(msg)), 10) == msg
            await asyncio.sleep(0.005)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        done += 1

    async def reconfigure() -> None:
        for n in range(15):
            entries = [(key, variant())]
            if n % 2:
                entries.append((other, variant()))  # listeners come and go too
            await forwarder.apply(state(*entries))
            await asyncio.sleep(0.02)

    clients = [asyncio.ensure_future(one_client(i)) for i in range(40)]
    await asyncio.gather(reconfigure(), *clients)
    assert done == 40
    assert forwarder.stats.listeners[str(key)].no_backend == 0
