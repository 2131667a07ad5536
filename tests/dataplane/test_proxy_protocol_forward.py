"""The forwarder's PROXY header on loopback: sent once, first, on every backend
connection, on the attempt that follows a refused connect too, and never when off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.state import Backend, ListenerOptions, ProxyVersion

from .conftest import LOCAL, dead_backend, state, tcp_key


class Recorder:
    """A TCP backend that keeps the first bytes of each connection and answers 'ok'."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while b"hello" not in data:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        self.received.append(data)
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Backend(LOCAL, port)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    yield rec
    if rec.server is not None:
        rec.server.close()
        await rec.server.wait_closed()


async def _talk(port: int) -> tuple[tuple[str, int], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    me = writer.get_extra_info("sockname")
    writer.write(b"hello")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return (me[0], me[1]), answer


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_the_header_leads_every_backend_connection_and_survives_a_retry(
    forwarder: Forwarder, recorder: Recorder, version: ProxyVersion
) -> None:
    key = tcp_key()
    live = await recorder.start()
    # round-robin: every other client tries the refusing backend first, then the live one
    backends = [dead_backend(), live]
    opts = {key: ListenerOptions(proxy_protocol=version, retries=2)}
    await forwarder.apply(state((key, backends), options=opts))
    clients = [await _talk(key.port) for _ in range(6)]
    assert [answer for _, answer in clients] == [b"ok"] * 6
    assert forwarder.stats.listeners[str(key)].retries >= 1  # a refused connect was retried
    parser = ProxyProtocolV1() if version == "v1" else ProxyProtocolV2()
    assert len(recorder.received) == 6
    for (me, _), data in zip(clients, recorder.received, strict=True):
        end = data.index(b"\r\n") + 2 if version == "v1" else 16 + data[15] + (data[14] << 8)
        result = parser.unpack(data[:end])
        assert result.peername[:2] == me  # type: ignore[index]
        assert result.sockname[:2] == ("127.0.0.1", key.port)  # type: ignore[index]
        assert data[end:] == b"hello"  # once, first, then the client's bytes


async def test_no_header_when_off(forwarder: Forwarder, recorder: Recorder) -> None:
    key = tcp_key()
    await forwarder.apply(state((key, [await recorder.start()])))
    assert (await _talk(key.port))[1] == b"ok"
    assert recorder.received == [b"hello"]
