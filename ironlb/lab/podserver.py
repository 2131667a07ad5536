"""A tiny pod workload for the lab: every answer says who served it and whom it saw.

``python -m ironlb.lab.podserver --name NAME [--tcp PORT ...] [--udp PORT ...]
[--bind ADDR ...]`` listens on TCP 8080 and UDP 8053 (by default on 0.0.0.0
and ::, one socket per family, so IPv4 peers show as plain IPv4) and answers:

- TCP, HTTP: a request line starting with an HTTP method (``GET /...``) gets
  one valid HTTP/1.0 ``200`` response whose body is ``NAME PEER\\n``; then the
  server closes.
- TCP, anything else: ``NAME PEER\\n`` first, then an echo of every byte until
  the client closes; a client's half-close (``shutdown(SHUT_WR)``) is
  respected: what it sent is echoed, then the server closes its side.
- UDP: one datagram ``NAME PEER\\n`` back to each datagram.

``PEER`` is the peer address as the pod sees it, ``198.18.0.1:40000`` or
``[fd00:198:18::1]:40000``: that is how tests see whether a load balancer kept
the client address. Telling HTTP from plain needs the client's first bytes, so
a plain client that waits for the greeting gets it after ``--sniff`` seconds
(0.2); one that sends first gets it at once, ahead of its echo.

It prints one line ``ready NAME tcp=PORTS udp=PORTS`` to stdout once every
socket listens (callers wait for it), nothing else, and exits 0 on SIGTERM or
SIGINT. A socket that cannot be opened is one ``podserver: ...`` line on
stderr and exit status 1. Pure helpers (address formatting, request sniffing
and parsing, responses) come first, the asyncio protocols after them. uvloop
is used when importable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Literal, cast

DEFAULT_TCP = 8080
DEFAULT_UDP = 8053
DEFAULT_BINDS = ("0.0.0.0", "::")
DEFAULT_SNIFF = 0.2  # seconds a silent TCP client waits for the greeting
HTTP_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024


class PodServerError(Exception):
    """A podserver cannot start as asked (a port in use, a bad address)."""


# -- pure helpers ------------------------------------------------------------


def format_peer(addr: Any) -> str:
    """A socket address tuple as ``IP:PORT`` (IPv4) or ``[IP]:PORT`` (IPv6).

    IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are shown as IPv4.
    """
    host, port = str(addr[0]), int(addr[1])
    ip = ip_address(host)
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, IPv4Address):
        return f"{ip}:{port}"
    return f"[{ip}]:{port}"


def greeting(name: str, peer: str) -> bytes:
    """The answer body: ``NAME PEER\\n``."""
    return f"{name} {peer}\n".encode()


def sniff(head: bytes) -> Literal["http", "plain"] | None:
    """Whether a connection's first bytes start an HTTP request; None if too few to tell."""
    if not head:
        return None
    undecided = False
    for method in HTTP_METHODS:
        token = method + b" "
        if head.startswith(token):
            return "http"
        if token.startswith(head):
            undecided = True
    return None if undecided else "plain"


@dataclass(frozen=True)
class Request:
    """A complete HTTP request head: its method and the bytes it (and its body) takes."""

    method: str
    length: int  # head + body, in bytes


def parse_request(buf: bytes) -> Request | None:
    """The request at the start of ``buf``, or None while head or body are incomplete.

    The body length comes from ``Content-Length`` (no chunked bodies). Raises
    ValueError for a head longer than MAX_HEADER_BYTES, a bad Content-Length or
    a body larger than MAX_BODY_BYTES.
    """
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := buf.find(sep)) >= 0]
    if not ends:
        if len(buf) > MAX_HEADER_BYTES:
            raise ValueError("request head too large")
        return None
    at, sep_len = min(ends)
    if at > MAX_HEADER_BYTES:
        raise ValueError("request head too large")
    lines = buf[:at].decode("latin-1").splitlines()
    method = lines[0].split(" ", 1)[0]
    body = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            if not value.strip().isdigit():
                raise ValueError("bad Content-Length")
            body = int(value.strip())
            if body > MAX_BODY_BYTES:
                raise ValueError("request body too large")
    total = at + sep_len + body
    return Request(method=method, length=total) if len(buf) >= total else None


def http_response(body: bytes, *, status: str = "200 OK", head_only: bool = False) -> bytes:
    """An HTTP/1.0 response carrying ``body`` as text/plain, connection closing."""
    head = (
        f"HTTP/1.0 {status}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode()
    return head if head_only else head + body


# -- asyncio adapters --------------------------------------------------------


class PodTcp(asyncio.Protocol):
    """One TCP connection: HTTP answer, or greeting + echo (see the module docstring)."""

    def __init__(self, name: str, sniff_seconds: float) -> None:
        self._name = name
        self._sniff_seconds = sniff_seconds
        self._mode: Literal["sniffing", "plain", "http", "done"] = "sniffing"
        self._buf = b""
        self._answer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they quack alike.
        self._transport = cast(asyncio.Transport, transport)
        self._answer = greeting(self._name, format_peer(transport.get_extra_info("peername")))
        self._timer = asyncio.get_running_loop().call_later(self._sniff_seconds, self._go_plain)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._mode == "plain":
            self._transport.write(data)
            return
        if self._mode == "done":
            return
        self._buf += data
        if self._mode == "sniffing":
            kind = sniff(self._buf)
            if kind is None:
                return
            if kind == "plain":
                self._go_plain()
                return
            self._cancel_timer()
            self._mode = "http"
        self._try_answer_http()

    def eof_received(self) -> bool:
        if self._mode == "sniffing":
            self._go_plain()  # a silent client that half-closed still gets its greeting
        return False  # the transport closes once everything written is sent

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _go_plain(self) -> None:
        self._cancel_timer()
        if self._transport is None or self._mode != "sniffing":
            return
        self._mode = "plain"
        self._transport.write(self._answer + self._buf)
        self._buf = b""

    def _try_answer_http(self) -> None:
        assert self._transport is not None
        try:
            request = parse_request(self._buf)
        except ValueError as exc:
            reply = http_response(f"{exc}\n".encode(), status="400 Bad Request")
        else:
            if request is None:
                return
            reply = http_response(self._answer, head_only=request.method == "HEAD")
        self._mode = "done"
        self._buf = b""
        self._transport.write(reply)
        self._transport.close()


class PodUdp(asyncio.DatagramProtocol):
    """Answers every datagram with ``NAME PEER\\n``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(greeting(self._name, format_peer(addr)), addr)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable from a peer that left: nothing to do


def open_sockets(
    kind: int, ports: Sequence[int], binds: Sequence[str], *, optional_families: bool
) -> list[socket.socket]:
    """Bound sockets (listening, for TCP) for every (port, address) pair.

    IPv6 sockets are IPv6-only, so ``0.0.0.0`` and ``::`` share a port. Port 0
    picks a free port once and uses it for the other addresses too. With
    ``optional_families`` an address family the namespace lacks is skipped.
    Raises PodServerError naming the protocol, address and port.
    """
    proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
    made: list[socket.socket] = []
    try:
        for wanted in ports:
            port = wanted
            for addr in binds:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                shown = f"[{addr}]" if family == socket.AF_INET6 else addr
                try:
                    sock = socket.socket(family, kind)
                except OSError as exc:
                    if optional_families:
                        continue
                    raise PodServerError(f"cannot open {proto} {shown}: {exc.strerror}") from None
                made.append(sock)
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    if kind == socket.SOCK_STREAM:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((addr, port))
                    if kind == socket.SOCK_STREAM:
                        sock.listen(512)
                except OSError as exc:
                    raise PodServerError(
                        f"cannot listen on {proto} {shown}:{port}: {exc.strerror}"
                    ) from None
                sock.setblocking(False)
                port = sock.getsockname()[1]
    except BaseException:
        for sock in made:
            sock.close()
        raise
    return made


async def serve(
    name: str,
    tcp: Sequence[int],
    udp: Sequence[int],
    binds: Sequence[str],
    sniff_seconds: float = DEFAULT_SNIFF,
    optional_families: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT; prints the ready line once every socket listens.

    Raises PodServerError if a socket cannot be opened.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tcp_socks = open_sockets(socket.SOCK_STREAM, tcp, binds, optional_families=optional_families)
    try:
        udp_socks = open_sockets(socket.SOCK_DGRAM, udp, binds, optional_families=optional_families)
    except BaseException:
        for sock in tcp_socks:
            sock.close()
        raise
    servers = [
        await loop.create_server(lambda: PodTcp(name, sniff_seconds), sock=sock)
        for sock in tcp_socks
    ]
    datagrams = [
        (await loop.create_datagram_endpoint(lambda: PodUdp(name), sock=sock))[0]
        for sock in udp_socks
    ]
    print(f"ready {name} tcp={_ports(tcp_socks)} udp={_ports(udp_socks)}", flush=True)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for transport in datagrams:
            transport.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


def _ports(socks: Sequence[socket.socket]) -> str:
    ports = list(dict.fromkeys(int(s.getsockname()[1]) for s in socks))
    return ",".join(map(str, ports)) or "-"


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {text!r}")
    return int(text)


def _address(text: str) -> str:
    try:
        return str(ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"seconds must be 0..60, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ironlb.lab.podserver",
        description="Lab pod workload: answers NAME PEER over TCP, HTTP and UDP.",
    )
    parser.add_argument("--name", required=True, help="name in every answer (e.g. node2-pod1)")
    parser.add_argument("--tcp", type=_port, action="append", metavar="PORT", help="TCP port")
    parser.add_argument("--udp", type=_port, action="append", metavar="PORT", help="UDP port")
    parser.add_argument("--no-tcp", action="store_true", help="serve no TCP at all")
    parser.add_argument("--no-udp", action="store_true", help="serve no UDP at all")
    parser.add_argument(
        "--bind", type=_address, action="append", metavar="ADDR", help="default: 0.0.0.0 and ::"
    )
    parser.add_argument(
        "--sniff",
        type=_seconds,
        default=DEFAULT_SNIFF,
        metavar="SECONDS",
        help=f"wait for an HTTP request this long before greeting (default {DEFAULT_SNIFF})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pod server; 0 after SIGTERM/SIGINT, 1 if a socket fails, 2 for bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_tcp and args.tcp:
        parser.error("--tcp and --no-tcp exclude each other")
    if args.no_udp and args.udp:
        parser.error("--udp and --no-udp exclude each other")
    if not args.name.strip() or "\n" in args.name:
        parser.error("--name must be a non-empty single line")
    tcp: list[int] = [] if args.no_tcp else (args.tcp or [DEFAULT_TCP])
    udp: list[int] = [] if args.no_udp else (args.udp or [DEFAULT_UDP])
    binds: list[str] = list(dict.fromkeys(args.bind or DEFAULT_BINDS))
    coro = serve(args.name, tcp, udp, binds, args.sniff, optional_families=args.bind is None)
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(coro)
        else:
            uvloop.run(coro)
    except PodServerError as exc:
        print(f"podserver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
