"""Helpers for the L2 announcer network tests (ARP, NDP, gratuitous ARP).

- :class:`RunnerProc`: an announcer process (``tests.net.l2_runner``) in a lab
  host, driven line by line.
- :class:`AnnouncerThread`: an announcer in this process, on its own event loop
  in a thread that entered the host's namespace (for reading its state and
  metrics directly).
- :func:`probe_arp` / :func:`probe_ns`: send one request from a host with a raw
  socket and collect every reply in a window (like tcpdump would see them);
  requests are built and replies parsed with scapy, independently of the code
  under test.
- :class:`NeighWatch`: rtnetlink neighbour events in a host's namespace, to see
  the moment a client's cache entry changes.
- :func:`extra_veth`: a second link between two lab hosts (the lab gives one
  ``eth0`` per host).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTM_NEWNEIGH, RTMGRP_NEIGH
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from ironlb.dataplane.l2 import Announcer
from ironlb.dataplane.l2.ndp import multicast_mac, solicited_node_address
from ironlb.lab.netlab import Lab, LabHost
from tests.support import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
T = TypeVar("T")
# A probe waits this long for answers (an unanswered probe waits it out), and
# PROBE_SETTLE after the first answer for a possible second one.
PROBE_WINDOW = 1.0
PROBE_SETTLE = 0.3


# -- announcer as a process --------------------------------------------------


class RunnerProc:
    """``python -m tests.net.l2_runner`` in ``host``'s namespace."""

    def __init__(self, lab: Lab, host: LabHost, *args: str, timeout: float = 20.0) -> None:
        self.host = host
        self.timeout = timeout
        self.proc = lab.popen(
            host,
            sys.executable,
            "-m",
            "tests.net.l2_runner",
            *args,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        self.ready = self._next()
        assert self.ready["event"] == "ready", self.ready

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def _next(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"announcer silent for {self.timeout}s:\n{self.stderr}") from None
        if line is None:
            self.proc.wait(5)
            raise AssertionError(f"announcer exited ({self.proc.returncode}):\n{self.stderr}")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._next()

    def own(self, *vips: IPv4Address | IPv6Address) -> dict[str, Any]:
        return self._ok(self.command("own " + " ".join(map(str, vips))))

    def release(self, *vips: IPv4Address | IPv6Address) -> dict[str, Any]:
        return self._ok(self.command("release " + " ".join(map(str, vips))))

    def metrics(self) -> str:
        return str(self._ok(self.command("metrics"))["text"])

    @staticmethod
    def _ok(reply: dict[str, Any]) -> dict[str, Any]:
        assert reply["event"] == "ok", reply
        return reply

    def kill(self) -> None:
        """SIGKILL: the announcer gets no chance to clean up."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Close stdin (a clean stop) and wait."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
            self.proc.wait(10)


@contextlib.contextmanager
def runner(lab: Lab, host: LabHost, *args: str) -> Iterator[RunnerProc]:
    proc = RunnerProc(lab, host, *args)
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.stop()


def vip_args(*vips: IPv4Address | IPv6Address) -> list[str]:
    return [arg for vip in vips for arg in ("--vip", str(vip))]


# -- announcer in this process -----------------------------------------------


class AnnouncerThread:
    """An :class:`Announcer` on a fresh event loop in a thread inside ``host``'s
    namespace. Use :meth:`call` to run code on that loop."""

    def __init__(self, lab: Lab, host: LabHost, **kwargs: Any) -> None:
        self.registry = CollectorRegistry()
        self._kwargs = {"registry": self.registry, **kwargs}
        self._lab = lab
        self._host = host
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.announcer: Announcer | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> AnnouncerThread:
        self._thread.start()
        if not self._ready.wait(20):
            raise AssertionError("announcer thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "announcer thread did not stop"

    def _main(self) -> None:
        with self._lab.in_netns(self._host):
            asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.announcer = Announcer(**self._kwargs)
            await self.announcer.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.announcer.stop()

    def call(self, fn: Callable[[Announcer], T]) -> T:
        """Run ``fn(announcer)`` on the announcer's loop and return its result."""
        assert self.loop is not None and self.announcer is not None
        announcer = self.announcer

        async def run() -> T:
            return fn(announcer)

        return self.run(run())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


# -- probing from a host -----------------------------------------------------


def raw_socket(lab: Lab, host: LabHost, ethertype: int, ifname: str = "eth0") -> socket.socket:
    """A raw socket bound to ``ifname`` of ``host`` (made inside its namespace)."""
    with lab.in_netns(host):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((ifname, ethertype))
    return sock


def host_mac(lab: Lab, host: LabHost, ifname: str = "eth0") -> str:
    with lab.in_netns(host), IPRoute() as ipr:
        (link,) = ipr.get_links(ifname=ifname)
        return str(link.get_attr("IFLA_ADDRESS"))


def collect(
    sock: socket.socket,
    window: float,
    keep: Callable[[bytes], bool],
    *,
    settle: float | None = None,
) -> list[bytes]:
    """Frames read from ``sock`` for ``window`` seconds for which ``keep`` is
    true; with ``settle``, stop that long after the first one (enough to see
    a duplicate answer, without waiting out the whole window)."""
    frames: list[bytes] = []
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame, address = sock.recvfrom(2048)
        except TimeoutError:
            break
        if address[2] != socket.PACKET_OUTGOING and keep(frame):
            if not frames and settle is not None:
                deadline = min(deadline, time.monotonic() + settle)
            frames.append(frame)
    return frames


def arp_request(src_mac: str, src_ip: str, target: str, dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes(Ether(src=src_mac, dst=dst) / ARP(op=1, hwsrc=src_mac, psrc=src_ip, pdst=target))


def is_arp_reply_for(target: str) -> Callable[[bytes], bool]:
    def keep(frame: bytes) -> bool:
        pkt = Ether(frame)
        return ARP in pkt and pkt[ARP].op == 2 and pkt[ARP].psrc == target

    return keep


def probe_arp(
    lab: Lab,
    host: LabHost,
    target: IPv4Address,
    *,
    ifname: str = "eth0",
    sender_ip: str | None = None,
    dst: str = "ff:ff:ff:ff:ff:ff",
    window: float = PROBE_WINDOW,
) -> list[str]:
    """Send one who-has for ``target`` from ``host`` (broadcast unless ``dst``);
    the MACs that answered within ``window`` seconds."""
    sock = raw_socket(lab, host, ETH_P_ARP, ifname)
    try:
        mac = host_mac(lab, host, ifname)
        sender = sender_ip or str(host.ipv4)
        sock.send(arp_request(mac, sender, str(target), dst))
        replies = collect(sock, window, is_arp_reply_for(str(target)), settle=PROBE_SETTLE)
    finally:
        sock.close()
    return [Ether(frame)[ARP].hwsrc for frame in replies]


def ns_frame(
    src_mac: str, source: str, target: IPv6Address, *, slla: bool = True, dst: str | None = None
) -> bytes:
    group = solicited_node_address(target)
    pkt = Ether(src=src_mac, dst=multicast_mac(group).hex(":")) / IPv6(
        src=source, dst=dst or str(group), hlim=255
    )
    pkt = pkt / ICMPv6ND_NS(tgt=str(target))
    if slla:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
    return bytes(pkt)


def is_na_for(target: str, *, solicited: bool = True) -> Callable[[bytes], bool]:
    """Advertisements for ``target``; only solicited ones unless told otherwise
    (unsolicited ones are takeover announcements, not answers)."""

    def keep(frame: bytes) -> bool:
        pkt = Ether(frame)
        return (
            ICMPv6ND_NA in pkt
            and pkt[ICMPv6ND_NA].tgt == target
            and (pkt[ICMPv6ND_NA].S == 1 or not solicited)
        )

    return keep


def probe_ns(
    lab: Lab,
    host: LabHost,
    target: IPv6Address,
    *,
    source: str | None = None,
    window: float = PROBE_WINDOW,
) -> list[Any]:
    """Send one Neighbor Solicitation for ``target`` from ``host``; the NAs
    received (scapy packets)."""
    sock = raw_socket(lab, host, ETH_P_IPV6)
    try:
        mac = host_mac(lab, host)
        src = str(host.ipv6) if source is None else source
        dad = src == "::"
        sock.send(ns_frame(mac, src, target, slla=not dad))
        # A DAD probe is answered unsolicited-style (S=0, to all-nodes).
        keep = is_na_for(str(target), solicited=not dad)
        replies = collect(sock, window, keep, settle=PROBE_SETTLE)
    finally:
        sock.close()
    return [Ether(frame) for frame in replies]


def na_lladdr(pkt: Any) -> str:
    return str(pkt[ICMPv6NDOptDstLLAddr].lladdr)


# -- neighbour cache of a host -----------------------------------------------


def neigh_lladdr(lab: Lab, host: LabHost, ip: IPv4Address | IPv6Address) -> str | None:
    """The MAC ``host`` has cached for ``ip`` on eth0 (``ip -j neigh``), or None."""
    out = lab.run(host, "ip", "-j", "neigh", "show", "to", str(ip), "dev", host.ifname).stdout
    for entry in json.loads(out or "[]"):
        if ip_address(entry["dst"]) == ip and "lladdr" in entry:
            return str(entry["lladdr"])
    return None


class NeighWatch:
    """Neighbour-table events of ``host``'s namespace (rtnetlink ``RTMGRP_NEIGH``)."""

    def __init__(self, lab: Lab, host: LabHost) -> None:
        with lab.in_netns(host):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_NEIGH))
        self._marshal = MarshalRtnl()

    def close(self) -> None:
        self._sock.close()

    def wait_lladdr(self, ip: IPv4Address | IPv6Address, mac: str, timeout: float) -> float:
        """Wait until the entry for ``ip`` gets ``mac``; the wall-clock time it did."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                break
            now = time.time()
            for msg in self._marshal.parse(data):
                if msg["header"]["type"] != RTM_NEWNEIGH:
                    continue
                dst = msg.get_attr("NDA_DST")
                lladdr = msg.get_attr("NDA_LLADDR")
                if dst and ip_address(dst) == ip and lladdr and lladdr.lower() == mac.lower():
                    return now
        raise AssertionError(f"neighbour entry for {ip} never became {mac} within {timeout}s")


# -- extra links -------------------------------------------------------------


@contextlib.contextmanager
def extra_veth(
    lab: Lab,
    a: LabHost,
    a_name: str,
    b: LabHost,
    b_name: str,
    *,
    up: bool = True,
    a_addr: str | None = None,
    b_addr: str | None = None,
) -> Iterator[None]:
    """A veth pair ``a:a_name`` <-> ``b:b_name`` (addresses given as CIDR), removed
    afterwards (also on failure)."""
    b_fd = os.open(f"/run/netns/{b.netns}", os.O_RDONLY)
    try:
        with lab.in_netns(a), IPRoute() as ipr:
            ipr.link("add", ifname=a_name, kind="veth", peer={"ifname": b_name, "net_ns_fd": b_fd})
    finally:
        os.close(b_fd)
    try:
        for host, name, addr in ((a, a_name, a_addr), (b, b_name, b_addr)):
            lab.run(host, "sysctl", "-qw", f"net.ipv6.conf.{name}.accept_dad=0")
            if addr:
                lab.run(host, "ip", "addr", "add", addr, "dev", name)
            if up:
                lab.run(host, "ip", "link", "set", name, "up")
        yield
    finally:
        lab.run(a, "ip", "link", "del", a_name, check=False)


# -- small servers -------------------------------------------------------------

SERVER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen()
print("listening", flush=True)
conn, _ = srv.accept()
conn.sendall(sys.argv[3].encode())
conn.close()
"""

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:
    print(s.recv(100).decode())
"""


def tcp_roundtrip(
    lab: Lab, server: LabHost, client: LabHost, vip: IPv4Address | IPv6Address, port: int = 8080
) -> str:
    """Listen on ``vip:port`` in ``server``, connect from ``client``; what it read."""
    proc = lab.popen(
        server,
        sys.executable,
        "-c",
        SERVER,
        str(vip),
        str(port),
        server.name,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        out = lab.run(client, sys.executable, "-c", CLIENT, str(vip), str(port))
        return out.stdout.strip()
    finally:
        proc.kill()
        proc.wait(5)


def packet_sockets(lab: Lab, host: LabHost) -> int:
    """How many AF_PACKET sockets exist in ``host``'s namespace."""
    lines = lab.run(host, "cat", "/proc/net/packet").stdout.splitlines()
    return len(lines) - 1


def link_multicast(lab: Lab, host: LabHost, ifname: str = "eth0") -> list[str]:
    """The link-layer multicast addresses ``ifname`` of ``host`` accepts."""
    out = lab.run(host, "ip", "maddr", "show", "dev", ifname).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("link")]
