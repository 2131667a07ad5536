"""Network-namespace primitives for the lab: create, enter, sweep and remove.

Thin wrappers over :mod:`pyroute2.netns` (create/remove/list, ``setns``) plus
the few things it has no call for: entering a namespace for the current thread
only and restoring it afterwards (``pyroute2.netns.pushns`` keeps a
process-global stack, which is unsafe with threads), per-namespace sysctl
writes, and killing the processes left inside a namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import netns as pr_netns

NETNS_RUN_DIR = Path("/run/netns")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with THIS thread inside netns ``name``; restore afterwards.

    Sockets (including netlink sockets) created in the body belong to that
    namespace for their whole life, and ``/proc/sys/net`` reads and writes in
    the body address that namespace's sysctls.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_RUN_DIR / name, os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise FileNotFoundError(f"network namespace {name!r} does not exist") from None
    try:
        pr_netns.setns(target)
        try:
            yield
        finally:
            pr_netns.setns(own)
    finally:
        os.close(target)
        os.close(own)


def sysctl_path(key: str) -> Path:
    """``net.ipv4.conf.all.arp_ignore`` -> ``/proc/sys/net/ipv4/conf/all/arp_ignore``."""
    parts = key.split(".")
    if "/" in key or not all(parts):
        raise ValueError(f"bad sysctl key {key!r}")
    return Path("/proc/sys", *parts)


def write_sysctl(key: str, value: int | str) -> None:
    """Write a sysctl of the CURRENT thread's network namespace (call inside in_netns)."""
    sysctl_path(key).write_text(f"{value}\n")


def read_sysctl(key: str) -> str:
    return sysctl_path(key).read_text().strip()


def list_netns(prefix: str | None = None) -> list[str]:
    """Named network namespaces, optionally only those named ``<prefix>-...``."""
    names = sorted(pr_netns.listnetns())
    if prefix is None:
        return names
    return [n for n in names if n.startswith(prefix + "-")]


def create_netns(name: str) -> None:
    if name in pr_netns.listnetns():
        raise FileExistsError(f"network namespace {name!r} already exists")
    pr_netns.create(name)


def netns_pids(name: str) -> list[int]:
    """Pids of processes whose network namespace is ``name`` (like ``ip netns pids``).

    The calling process is never listed, even if one of its threads is inside.
    """
    pids = pr_netns.ns_pids().get(name, [])
    return sorted(int(p) for p in pids if int(p) != os.getpid())


def kill_netns_pids(name: str, grace: float = 1.0) -> list[int]:
    """SIGTERM every process in netns ``name``, SIGKILL the ones still there after ``grace``."""
    pids = netns_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.02)
    for pid in netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still "exists" until reaped; treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def remove_netns(name: str) -> None:
    """Unmount and delete netns ``name`` (a no-op if it is already gone)."""
    if name in pr_netns.listnetns():
        pr_netns.remove(name)
