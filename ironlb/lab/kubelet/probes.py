"""Running readiness probes from a lab node's network namespace.

The kubelet probes a Pod from its node, and a lab Pod's address is reachable
only inside the lab's namespaces, while the lab kubelet's event loop runs in
the root namespace. A socket keeps the namespace it was created in, so
:class:`NetnsSockets` creates sockets on one worker thread that entered the
node's namespace for good, and the probes use them on the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address

from pyroute2 import netns as pr_netns

from ironlb.lab.kubelet.lifecycle import Probe
from ironlb.lab.netlab.nsutil import NETNS_RUN_DIR


def _enter(netns: str) -> None:
    fd = os.open(NETNS_RUN_DIR / netns, os.O_RDONLY)
    try:
        pr_netns.setns(fd)
    finally:
        os.close(fd)


class NetnsSockets:
    """A factory of non-blocking sockets that live in network namespace ``netns``.

    :meth:`close` when done (the worker thread stays in that namespace until then).
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"netns-{netns}",
            initializer=_enter,
            initargs=(netns,),
        )

    async def socket(self, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self._pool, socket.socket, family, kind)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def check(probe: Probe, address: str, sockets: NetnsSockets) -> bool:
    """One probe against ``probe.host`` or ``address``: True if it passes within its timeout.

    ``tcp`` passes when a connection is accepted; ``http`` when a ``GET
    probe.path`` is answered with a status from 200 to 399 (Kubernetes' rule).
    Probes of kind ``alive`` are not checked here (the process is watched).
    """
    host = probe.host or address
    family = socket.AF_INET6 if ip_address(host).version == 6 else socket.AF_INET
    loop = asyncio.get_running_loop()
    sock = await sockets.socket(family)
    try:
        async with asyncio.timeout(probe.timeout):
            await loop.sock_connect(sock, (host, probe.port))
            if probe.kind != "http":
                return True
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                shown = f"[{host}]" if family == socket.AF_INET6 else host
                writer.write(
                    f"GET {probe.path} HTTP/1.0\r\nHost: {shown}:{probe.port}\r\n"
                    "User-Agent: kube-probe/lab\r\n\r\n".encode()
                )
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
            parts = line.split()
            return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError):
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.close()
