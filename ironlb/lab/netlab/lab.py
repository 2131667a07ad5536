"""The namespace lab: a client, nodes and backends on one bridged LAN.

Everything lives in network namespaces named ``<prefix>-...``; the root
namespace is never touched. The bridge sits in its own ``<prefix>-sw``
namespace; each host namespace holds ``lo`` and ``eth0`` (one end of a veth
pair whose other end is a port of the bridge). Links, addresses and sysctls are
set with pyroute2 from inside each namespace (:func:`in_netns`), commands run
with ``ip netns exec``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any, Literal, overload

from pyroute2 import IPRoute

from ironlb.lab.netlab import nsutil
from ironlb.lab.netlab.plan import (
    BRIDGE_NAME,
    LAN4,
    LAN6,
    LabError,
    LabHost,
    plan_hosts,
    random_prefix,
    switch_netns,
    validate_prefix,
    vip_address,
)

IFA_F_NODAD = 0x02
DEFAULT_TIMEOUT = 30.0


class Lab:
    """A LAN of network namespaces; use as a context manager or call up()/down()."""

    def __init__(self, nodes: int = 2, backends: int = 1, prefix: str | None = None) -> None:
        self.prefix = validate_prefix(prefix) if prefix is not None else random_prefix()
        self.hosts: list[LabHost] = plan_hosts(self.prefix, nodes, backends)
        self.client: LabHost = self.hosts[0]
        self.nodes: list[LabHost] = [h for h in self.hosts if h.role == "node"]
        self.backends: list[LabHost] = [h for h in self.hosts if h.role == "backend"]
        self.switch_netns = switch_netns(self.prefix)
        self._procs: list[subprocess.Popen[Any]] = []
        self._owns_prefix = False

    # -- lifecycle -------------------------------------------------------

    def up(self) -> None:
        """Build the LAN. Raises :class:`LabError` if the prefix is already in use."""
        in_use = nsutil.list_netns(self.prefix)
        if in_use:
            raise LabError(
                f"lab prefix {self.prefix!r} is in use (namespaces: {', '.join(in_use)}); "
                f"remove them with `ironlb lab net down --prefix {self.prefix}`"
            )
        self._owns_prefix = True
        try:
            _in_fresh_thread(self._build)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Kill tracked and leftover processes, remove every namespace of this prefix.

        A lab whose up() was refused (prefix in use) removes nothing.
        """
        procs, self._procs = self._procs, []
        for proc in procs:
            _stop(proc)
        if self._owns_prefix:
            cleanup_stale(self.prefix)
            self._owns_prefix = False

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- using the lab ---------------------------------------------------

    def host(self, name: str) -> LabHost:
        """The host with role name ``name`` ("client", "node1", ...)."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no lab host {name!r}; have {[h.name for h in self.hosts]}")

    def run(
        self,
        host: LabHost,
        *argv: str,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host's namespace; output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", host.netns, *argv],
            check=check,
            timeout=timeout,
            capture_output=True,
            text=True,
        )

    def popen(self, host: LabHost, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host's namespace; it is killed on :meth:`down`.

        It gets its own session (process group) so that down() reaches its
        children too; pass ``start_new_session=False`` to opt out.
        """
        kw.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, *argv], **kw
        )
        self._procs.append(proc)
        return proc

    @overload
    def vip(self, index: int, family: Literal[4] = 4) -> IPv4Address: ...
    @overload
    def vip(self, index: int, family: Literal[6]) -> IPv6Address: ...
    @overload
    def vip(self, index: int, family: int) -> IPv4Address | IPv6Address: ...
    def vip(self, index: int, family: int = 4) -> IPv4Address | IPv6Address:
        """The ``index``-th (0-based) VIP address: 198.18.0.200+ or fd00:198:18::200+."""
        return vip_address(index, family)

    def in_netns(self, host: LabHost) -> contextlib.AbstractContextManager[None]:
        """Enter the host's namespace in THIS thread for the ``with`` body."""
        return nsutil.in_netns(host.netns)

    # -- building --------------------------------------------------------

    def _build(self) -> None:
        self._build_switch()
        for host in self.hosts:
            self._build_host(host)

    def _build_switch(self) -> None:
        nsutil.create_netns(self.switch_netns)
        with nsutil.in_netns(self.switch_netns), IPRoute() as ipr:
            # The switch takes no part in IP: keep it silent on the LAN.
            nsutil.write_sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            nsutil.write_sysctl("net.ipv6.conf.default.disable_ipv6", 1)
            # Snooping off: flood all multicast, so NDP solicitations for VIPs
            # (which no host joined the group of) reach every port.
            ipr.link("add", ifname=BRIDGE_NAME, kind="bridge", br_mcast_snooping=0)
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            ipr.link("set", index=_index(ipr, BRIDGE_NAME), state="up")

    def _build_host(self, host: LabHost) -> None:
        nsutil.create_netns(host.netns)
        with nsutil.in_netns(host.netns), IPRoute() as ipr:
            for scope in ("all", "default"):
                nsutil.write_sysctl(f"net.ipv6.conf.{scope}.accept_dad", 0)
            sw_fd = os.open(nsutil.NETNS_RUN_DIR / self.switch_netns, os.O_RDONLY)
            try:
                ipr.link(
                    "add",
                    ifname=host.ifname,
                    kind="veth",
                    address=host.mac,
                    peer={"ifname": host.name, "net_ns_fd": sw_fd},
                )
            finally:
                os.close(sw_fd)
            nsutil.write_sysctl(f"net.ipv6.conf.{host.ifname}.accept_dad", 0)
            if host.role == "node":
                for scope in ("all", host.ifname):
                    nsutil.write_sysctl(f"net.ipv4.conf.{scope}.arp_ignore", 1)
                    nsutil.write_sysctl(f"net.ipv4.conf.{scope}.arp_announce", 2)
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            idx = _index(ipr, host.ifname)
            ipr.addr("add", index=idx, address=str(host.ipv4), prefixlen=LAN4.prefixlen)
            ipr.addr(
                "add",
                index=idx,
                address=str(host.ipv6),
                prefixlen=LAN6.prefixlen,
                flags=IFA_F_NODAD,
            )
            ipr.link("set", index=idx, state="up")
        with nsutil.in_netns(self.switch_netns), IPRoute() as ipr:
            port = _index(ipr, host.name)
            ipr.link("set", index=port, master=_index(ipr, BRIDGE_NAME), state="up")


def _in_fresh_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a new thread and re-raise its error here.

    The sync pyroute2 IPRoute runs its own event loop, which fails on a thread
    that already runs one (an async test calling up()); a fresh thread has none,
    and its setns() calls cannot disturb the caller's namespace either.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, name="ironlb-lab-build")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"interface {ifname!r} not found")
    return int(found[0])


def _stop(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


def cleanup_stale(prefix: str) -> list[str]:
    """Remove every namespace named ``<prefix>-*`` and kill the processes left in it.

    For tearing down after a crash (or a CLI ``up``). Returns the removed names.
    """
    validate_prefix(prefix)
    names = nsutil.list_netns(prefix)
    # Hosts first, the switch last: hosts hold the processes.
    names.sort(key=lambda n: n == switch_netns(prefix))
    for name in names:
        nsutil.kill_netns_pids(name)
        nsutil.remove_netns(name)
    return names


@contextlib.contextmanager
def lab(nodes: int = 2, backends: int = 1, prefix: str | None = None) -> Iterator[Lab]:
    """``with lab() as l:`` — a Lab that is up inside the block and removed after."""
    the_lab = Lab(nodes=nodes, backends=backends, prefix=prefix)
    with the_lab:
        yield the_lab
