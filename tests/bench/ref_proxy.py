"""Reference peer for the forwarder benchmark: a minimal uvloop TCP proxy (~60 lines).

Not part of ironlb. It is the floor of what a Python/uvloop L4 proxy costs (round-robin,
no health checks, no timeouts, no metrics), so the benchmark can show how much ironlb's
extra machinery adds on top. Usage:
``python -m tests.bench.ref_proxy --workers N PORT=HOST:P,HOST:P [PORT=...]``.

Half-close is forwarded with ``write_eof()``, but once both directions have seen EOF the pair
is closed instead: with uvloop 0.23.0, ``write_eof()`` on both transports of a pair under
``Connection: close`` load aborted the process ("double free or corruption").
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
from typing import cast

import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport, owner: Client) -> None:
        self.client = client
        self.owner = owner
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.owner.eof:  # both directions done: close (see module docstring)
            self.client.close()
            return False
        self.client.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()

    def pause_writing(self) -> None:  # backend slow: stop reading the client
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()


class Client(asyncio.Protocol):
    def __init__(self, backends: itertools.cycle[tuple[str, int]]) -> None:
        self.backends = backends
        self.up: asyncio.Transport | None = None
        self.early: list[bytes] = []  # uvloop may deliver data before pause_reading bites
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = cast(asyncio.Transport, transport)
        self.tr.pause_reading()
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        host, port = next(self.backends)
        loop = asyncio.get_running_loop()
        try:
            up, _ = await loop.create_connection(lambda: Upstream(self.tr, self), host, port)
        except OSError:
            self.tr.close()
            return
        if self.tr.is_closing():  # client left while we connected
            up.close()
            return
        self.up = up
        if self.early:
            up.write(b"".join(self.early))
        if self.eof:
            up.write_eof()
        self.tr.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.early.append(data)
        else:
            self.up.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.up is not None:
            if cast(Upstream, self.up.get_protocol()).eof:
                self.up.close()
                return False
            self.up.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()

    def pause_writing(self) -> None:  # client slow: stop reading the backend
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()


async def serve(listeners: list[tuple[int, list[tuple[str, int]]]]) -> None:
    loop = asyncio.get_running_loop()
    for port, backends in listeners:
        factory = functools.partial(Client, itertools.cycle(backends))
        await loop.create_server(factory, "127.0.0.1", port, reuse_port=True, backlog=4096)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("listen", nargs="+", help="PORT=HOST:PORT,HOST:PORT")
    args = parser.parse_args()
    listeners = []
    for spec in args.listen:
        port, _, rest = spec.partition("=")
        backends = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in rest.split(",")]
        listeners.append((int(port), backends))
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    uvloop.run(serve(listeners))


if __name__ == "__main__":
    main()
