"""VIP binding: keep exactly the wanted VIPs as host addresses on ``lo`` (pyroute2).

A VIP is a ``/32`` (``/128``) on ``lo`` of the node, so the local stack accepts
and sources traffic for it, while ``arp_ignore=1`` / ``arp_announce=2`` keep the
kernel from answering ARP for it on the LAN (the elected speaker answers
instead). IPv6 needs no sysctl: the kernel answers a neighbour solicitation
only for addresses on the receiving interface, never for ones on ``lo``
(measured in the lab); IPv6 VIPs are added with ``IFA_F_NODAD``.

Every address the binder adds is marked with the address protocol field
``IFA_PROTO = IRONLB_ADDR_PROTO`` (kernel >= 6.1) and, for IPv4, the label
``lo:ilb``. The kernel is the only state: a new binder (e.g. after a crash)
sees the marked addresses as its own, so ``sync`` of a smaller set removes the
stale ones, and it never touches an unmarked address, even one equal to a VIP.

The binder works in the network namespace of the thread that constructs it
(netlink socket and ARP sysctls alike), from whichever thread or event loop
it is later called.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable, Iterable, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from ironlb.common.addresses import IPAddress, vip_problem

_T = TypeVar("_T")

log = logging.getLogger(__name__)

#: IFA_PROTO value marking ironlb's addresses (0x49, ASCII "I"). The kernel
#: itself uses 1-3 (IFAPROT_KERNEL_LO/_RA/_LL); 0 is "unspecified".
IRONLB_ADDR_PROTO: Final = 0x49
LABEL_SUFFIX: Final = "ilb"
IFA_F_NODAD: Final = 0x02
IFNAMSIZ: Final = 16
#: The least values that stop the kernel answering/announcing ARP for VIPs on lo.
#: The kernel applies max(conf/all, conf/<dev>), so setting conf/all covers every
#: interface; a stricter value already there is left alone.
ARP_SYSCTL_MINIMUMS: Final = {"arp_ignore": 1, "arp_announce": 2}
SYSCTL_CONF_DIR: Final = Path("/proc/sys/net/ipv4/conf")


class VipError(RuntimeError):
    """A VIP is unusable or the kernel refused a change."""


@dataclass(frozen=True)
class BindChanges:
    """What one operation changed on the interface."""

    added: frozenset[IPAddress] = field(default_factory=frozenset)
    removed: frozenset[IPAddress] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


# -- pure helpers -------------------------------------------------------------


def parse_vip(value: str | IPAddress) -> IPAddress:
    """A unicast address fit to be a VIP, or :class:`VipError` saying why not."""
    if isinstance(value, str):
        try:
            addr: IPAddress = ip_address(value.strip())
        except ValueError:
            raise VipError(f"not an IP address: {value!r}") from None
    else:
        addr = value
    problem = vip_problem(addr)
    if problem is not None:
        raise VipError(f"{addr} is {problem} and cannot be a VIP")
    return addr


def host_prefixlen(addr: IPAddress) -> int:
    """32 for IPv4, 128 for IPv6: a VIP covers exactly its own address."""
    return addr.max_prefixlen


def ipv4_label(ifname: str) -> str | None:
    """``lo`` -> ``lo:ilb``; None if the label would not fit IFNAMSIZ."""
    label = f"{ifname}:{LABEL_SUFFIX}"
    return label if len(label) < IFNAMSIZ else None


def is_marked(proto: int | None, label: str | None, ifname: str) -> bool:
    """Whether an address (its IFA_PROTO and IFA_LABEL) was added by ironlb."""
    if proto == IRONLB_ADDR_PROTO:
        return True
    wanted = ipv4_label(ifname)
    return wanted is not None and label == wanted


def plan_sync(current: Set[IPAddress], desired: Set[IPAddress]) -> BindChanges:
    """What to add and remove to go from ``current`` to ``desired``."""
    return BindChanges(
        added=frozenset(desired) - frozenset(current),
        removed=frozenset(current) - frozenset(desired),
    )


def arp_sysctl_updates(current: dict[str, int]) -> dict[str, int]:
    """The sysctls (of ARP_SYSCTL_MINIMUMS) that must be raised, with their new values."""
    return {k: v for k, v in ARP_SYSCTL_MINIMUMS.items() if current.get(k, 0) < v}


# -- the binder ---------------------------------------------------------------


def ensure_arp_sysctls(conf_dir: Path = SYSCTL_CONF_DIR) -> dict[str, int]:
    """Raise conf/all arp_ignore/arp_announce to 1/2 in the CALLING thread's netns.

    Returns what was written (empty if the values were already strict enough).
    """
    current = {k: int((conf_dir / "all" / k).read_text()) for k in ARP_SYSCTL_MINIMUMS}
    updates = arp_sysctl_updates(current)
    for key, value in updates.items():
        (conf_dir / "all" / key).write_text(f"{value}\n")
        log.info("set net.ipv4.conf.all.%s=%d (was %d)", key, value, current[key])
    return updates


def _enter_netns(ns_fd: int) -> None:
    """Move the calling thread into the network namespace ``ns_fd`` refers to.

    A thread already there stays put without calling ``setns``: setns(2)
    needs ``CAP_SYS_ADMIN`` even for the namespace one is in, and a speaker
    in a container has only ``NET_ADMIN`` and ``NET_RAW``.
    """
    target = os.fstat(ns_fd)
    current = os.stat("/proc/thread-self/ns/net")
    if (target.st_dev, target.st_ino) == (current.st_dev, current.st_ino):
        return
    pr_netns.setns(ns_fd)


class VipBinder:
    """Adds and removes ironlb-marked host addresses on one interface (default ``lo``).

    All netlink and sysctl work runs on one private worker thread that sits in
    the network namespace of the thread that built the binder. So the plain
    methods may be called from any thread, also from inside a running asyncio
    or uvloop event loop (they block for a netlink round trip, well under a
    millisecond); the ``*_async`` variants await the worker instead.
    (pyroute2's ``AsyncIPRoute`` cannot be used directly: uvloop, which kopf
    and the forwarder run on, refuses netlink sockets.)
    """

    def __init__(self, ifname: str = "lo", *, arp_sysctls: bool = True) -> None:
        self.ifname = ifname
        self._ipr: IPRoute | None = None
        self._index = 0
        self._closed = False
        ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            self._worker = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="ironlb-vip",
                initializer=_enter_netns,
                initargs=(ns_fd,),
            )
            try:
                self._call(self._setup, arp_sysctls)
            except BaseException:
                self.close()
                raise
        finally:
            os.close(ns_fd)  # the worker entered the namespace in _call above

    # -- plumbing --------------------------------------------------------

    def _submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        if self._closed:
            raise VipError("VIP binder is closed")
        return self._worker.submit(fn, *args)

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return self._submit(fn, *args).result()

    async def _acall(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.wrap_future(self._submit(fn, *args))

    def _setup(self, arp_sysctls: bool) -> None:
        self._ipr = IPRoute()
        found = self._ipr.link_lookup(ifname=self.ifname)
        if not found:
            raise VipError(f"interface {self.ifname!r} not found")
        self._index = int(found[0])
        if arp_sysctls:
            ensure_arp_sysctls()

    def _teardown(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def close(self) -> None:
        """Close the netlink socket and the worker; the addresses stay (see release_all)."""
        if self._closed:
            return
        try:
            self._call(self._teardown)
        finally:
            self._closed = True
            self._worker.shutdown(wait=True)

    def __enter__(self) -> VipBinder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _nl(self) -> IPRoute:
        assert self._ipr is not None, "used before _setup or after _teardown"
        return self._ipr

    # -- work done on the worker thread -----------------------------------

    def _addresses(self) -> list[tuple[IPAddress, bool]]:
        """Host-prefix addresses on the interface, each with "is it ours"."""
        result = []
        for msg in self._nl.get_addr(index=self._index):
            raw = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if raw is None:
                continue
            addr = ip_address(raw)
            if msg.get("prefixlen") != host_prefixlen(addr):
                continue
            ours = is_marked(msg.get_attr("IFA_PROTO"), msg.get_attr("IFA_LABEL"), self.ifname)
            result.append((addr, ours))
        return result

    def _owned(self) -> set[IPAddress]:
        return {addr for addr, ours in self._addresses() if ours}

    def _bind(self, addr: IPAddress) -> bool:
        request: dict[str, Any] = {
            "index": self._index,
            "address": str(addr),
            "prefixlen": host_prefixlen(addr),
            "proto": IRONLB_ADDR_PROTO,
        }
        if isinstance(addr, IPv4Address):
            label = ipv4_label(self.ifname)
            if label is not None:
                request["label"] = label
        else:
            request["flags"] = IFA_F_NODAD
        try:
            self._nl.addr("add", **request)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                if addr not in self._owned():
                    log.warning("%s is on %s but not ironlb's: leaving it", addr, self.ifname)
                return False
            raise VipError(f"cannot add {addr} to {self.ifname}: {exc}") from exc
        log.info("bound %s on %s", addr, self.ifname)
        return True

    def _unbind(self, addr: IPAddress) -> bool:
        if addr not in self._owned():
            return False
        try:
            self._nl.addr("del", index=self._index, address=str(addr), prefixlen=addr.max_prefixlen)
        except NetlinkError as exc:
            if exc.code == errno.EADDRNOTAVAIL:  # removed meanwhile
                return False
            raise VipError(f"cannot remove {addr} from {self.ifname}: {exc}") from exc
        log.info("unbound %s from %s", addr, self.ifname)
        return True

    def _sync(self, desired: set[IPAddress]) -> BindChanges:
        plan = plan_sync(self._owned(), desired)
        added = frozenset(a for a in sorted(plan.added, key=_order) if self._bind(a))
        removed = frozenset(a for a in sorted(plan.removed, key=_order) if self._unbind(a))
        return BindChanges(added=added, removed=removed)

    # -- public API --------------------------------------------------------

    def owned(self) -> set[IPAddress]:
        """The VIPs on the interface that carry ironlb's mark (read from the kernel)."""
        return self._call(self._owned)

    def bind(self, vip: str | IPAddress) -> bool:
        """Add ``vip``; True if added now, False if it was already there.

        An unmarked copy already on the interface is left as it is (and stays
        unowned): the VIP works, and ironlb will not remove what it did not add.
        """
        return self._call(self._bind, parse_vip(vip))

    def unbind(self, vip: str | IPAddress) -> bool:
        """Remove ``vip`` if it is ours; True if removed now. Unmarked copies stay."""
        return self._call(self._unbind, parse_vip(vip))

    def sync(self, vips: Iterable[str | IPAddress]) -> BindChanges:
        """Make the owned VIPs exactly ``vips``; returns what actually changed.

        Every VIP is checked before anything changes, so bad input changes nothing.
        """
        return self._call(self._sync, {parse_vip(v) for v in vips})

    def release_all(self) -> BindChanges:
        """Remove every ironlb-marked VIP from the interface (also ones a crashed run left)."""
        return self._call(self._sync, set())

    def ensure_arp_sysctls(self) -> dict[str, int]:
        """:func:`ensure_arp_sysctls` in the binder's namespace."""
        return self._call(ensure_arp_sysctls)

    async def owned_async(self) -> set[IPAddress]:
        return await self._acall(self._owned)

    async def bind_async(self, vip: str | IPAddress) -> bool:
        return await self._acall(self._bind, parse_vip(vip))

    async def unbind_async(self, vip: str | IPAddress) -> bool:
        return await self._acall(self._unbind, parse_vip(vip))

    async def sync_async(self, vips: Iterable[str | IPAddress]) -> BindChanges:
        return await self._acall(self._sync, {parse_vip(v) for v in vips})

    async def release_all_async(self) -> BindChanges:
        return await self._acall(self._sync, set())


def _order(addr: IPAddress) -> tuple[int, int]:
    return (addr.version, int(addr))
