"""Make the lab's Kubernetes API reachable from inside the lab's network namespaces.

The local API server listens on ``127.0.0.1`` of the root namespace, where the
tests and kubectl run; a speaker runs inside a node namespace (``ip netns
exec``), whose ``127.0.0.1`` is its own. Routing the two together would mean
changing the root namespace, which the lab never does. Instead a socket keeps
the namespace it was created in: :class:`ApiBridge` creates a listening
socket on ``127.0.0.1:<port>`` *inside* each host namespace (from a thread
that entered it) and serves it from a root-namespace event loop, relaying
every connection to the API server. The speaker's kubeconfig then says
``http://127.0.0.1:<port>``, which is true inside its namespace.

:meth:`ApiBridge.cut` drops one host's bridge (its listener and open
connections): the lab's way of cutting a node off from the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

from ironlb.lab.netlab import nsutil

_CHUNK = 65536


def _listen_in(netns: str, port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:port inside ``netns``."""
    made: list[socket.socket] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            with nsutil.in_netns(netns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(128)
                sock.setblocking(False)
                made.append(sock)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"api-bridge-{netns}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return made[0]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class ApiBridge:
    """Relays ``127.0.0.1:port`` of lab namespaces to the API server at ``upstream``.

    Use on a running event loop in the root namespace: ``await add(netns)``
    per host, ``await close()`` at the end.
    """

    def __init__(self, upstream: tuple[str, int], port: int = 6443) -> None:
        self.upstream = upstream
        self.port = port
        self._servers: dict[str, asyncio.Server] = {}
        self._conns: dict[str, set[asyncio.StreamWriter]] = {}

    @property
    def url(self) -> str:
        """The API server's address as seen from inside a bridged namespace."""
        return f"http://127.0.0.1:{self.port}"

    async def add(self, netns: str) -> None:
        """Serve the bridge inside ``netns`` (again, after :meth:`cut`)."""
        if netns in self._servers:
            return
        sock = _listen_in(netns, self.port)
        conns: set[asyncio.StreamWriter] = set()
        self._conns[netns] = conns

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conns.add(writer)
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                writer.close()
                conns.discard(writer)
                return
            conns.add(up_writer)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                for w in (writer, up_writer):
                    conns.discard(w)
                    w.close()

        self._servers[netns] = await asyncio.start_server(relay, sock=sock)

    async def cut(self, netns: str) -> None:
        """Stop the bridge of ``netns``: no new connections, open ones reset."""
        server = self._servers.pop(netns, None)
        if server is not None:
            server.close()
        for writer in self._conns.pop(netns, set()):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def close(self) -> None:
        """Stop every bridge."""
        for netns in list(self._servers):
            await self.cut(netns)
