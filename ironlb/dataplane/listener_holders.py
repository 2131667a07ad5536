"""Who already holds a listener's address: refuse to share it with a stranger.

The workers bind every listener with ``SO_REUSEPORT`` so they can share it
(:func:`~ironlb.dataplane.forwarder.listeners.bind_socket`). The kernel lets
any process of the same user join such a group, so a second ``ironlb
forward`` on the same file binds fine, says "ready" and silently takes a
share of the connections while the first keeps serving. This module is
asked before the workers bind:

* :func:`is_held` binds a throw-away socket *without* ``SO_REUSEPORT``:
  ``EADDRINUSE`` means some socket holds the address and port (an
  overlapping wildcard one included). TCP probes set ``SO_REUSEADDR`` so
  that connections in ``TIME_WAIT`` from an earlier run do not count, and
  only a listening socket does; UDP probes set nothing, since two UDP
  sockets with ``SO_REUSEADDR`` may share a port.
* :func:`find_holder` names the holder with :func:`psutil.net_connections`
  (socket inode to pid, which needs root or the same user). A
  ``multiprocessing`` child (our own workers are spawned ones) is reported
  as its parent, the process to stop. A holder that is this process or
  one of its descendants is ours (at a reload, the listeners the workers
  already serve), never a stranger.
* :func:`held_listeners` checks many listeners; :func:`held_message` says it
  in one line.

Checking and binding are two steps: two instances started in the same
instant can both pass the check. It catches the common case (a second
start, a forgotten instance, another server on the port), not a race.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from ironlb.common.addresses import address_sort_key
from ironlb.dataplane.forwarder.listeners import listener_socket
from ironlb.dataplane.state import ListenerKey

if TYPE_CHECKING:
    from psutil._ntuples import sconn  # the stubs' name for net_connections' tuples


@dataclass(frozen=True)
class Holder:
    """The process holding a listener; ``pid`` None when it cannot be found."""

    pid: int | None = None
    command: str = ""

    def __str__(self) -> str:
        if self.pid is None:
            return "another process"
        return f"pid {self.pid} ({self.command})" if self.command else f"pid {self.pid}"


def is_held(key: ListenerKey) -> bool:
    """Whether some socket already holds ``key``'s address, port and protocol.

    Binds and closes a probe socket (``IP_FREEBIND``, so the address need not
    be on the host yet). Only ``EADDRINUSE`` counts; other bind errors
    (``EACCES`` for a low port, say) are left to the real bind to report.
    """
    # TCP: SO_REUSEADDR, so connections in TIME_WAIT do not count as a holder.
    with listener_socket(key, reuse_addr=key.protocol == "tcp", reuse_port=False) as probe:
        try:
            probe.bind((str(key.vip), key.port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def find_holder(key: ListenerKey, me: int | None = None) -> Holder | None:
    """The process whose socket holds ``key``, or ``None`` when only ours do.

    ``me`` (default: this process) and its descendants are ours and never
    named. A socket on the exact address is preferred to an overlapping
    wildcard one. Returns ``Holder()`` (no pid) when no socket it can see
    matches (another user's, without root).
    """
    conns = _connections(key.protocol)
    return _holder_among(key, conns, os.getpid() if me is None else me)


def held_listeners(keys: Iterable[ListenerKey], me: int | None = None) -> dict[ListenerKey, Holder]:
    """The listeners of ``keys`` held by a process that is not ours, with that process.

    Free listeners cost one probe bind each; the host's sockets are listed
    (:func:`psutil.net_connections`, about 0.3 s with 36,000 TCP sockets)
    once per protocol, and only when a probe found a listener held.
    """
    taken = [key for key in sorted(keys, key=_order) if is_held(key)]
    conns = {protocol: _connections(protocol) for protocol in {key.protocol for key in taken}}
    mine = os.getpid() if me is None else me
    held: dict[ListenerKey, Holder] = {}
    for key in taken:
        holder = _holder_among(key, conns[key.protocol], mine)
        if holder is not None:
            held[key] = holder
    return held


def _connections(protocol: str) -> list[sconn] | None:
    """The host's sockets of ``protocol`` (psutil's ``sconn`` tuples); None when unreadable."""
    try:
        return list(psutil.net_connections(kind=protocol))
    except (psutil.Error, OSError):
        return None


def _holder_among(key: ListenerKey, conns: list[sconn] | None, me: int) -> Holder | None:
    """:func:`find_holder` over an already taken list of sockets."""
    if conns is None:
        return Holder()
    candidates: list[tuple[int, int]] = []  # (rank, pid): exact address first
    for conn in conns:
        if not conn.laddr or conn.laddr.port != key.port:
            continue
        if key.protocol == "tcp" and conn.status != psutil.CONN_LISTEN:
            continue
        rank = _overlap(key, conn.laddr.ip, conn.family)
        if rank is not None:
            candidates.append((rank, -1 if conn.pid is None else conn.pid))
    ours = False
    for _, pid in sorted(candidates):
        if pid < 0:
            continue
        holder = _describe(pid, me)
        if holder is not None:
            return holder
        ours = True
    return None if ours else Holder()


def held_message(held: Mapping[ListenerKey, Holder]) -> str:
    """One line naming each held listener and its holder, e.g.
    ``listener tcp/198.18.0.200:8080 is already held by pid 1234 (ironlb forward): stop it first``.
    """
    by_holder: dict[Holder, list[ListenerKey]] = {}
    for key in sorted(held, key=_order):
        holder = held[key]
        by_holder.setdefault(holder, []).append(key)
    parts = []
    for holder, keys in by_holder.items():
        names = ", ".join(str(k) for k in keys)
        verb = "listener {} is" if len(keys) == 1 else "listeners {} are"
        parts.append(f"{verb.format(names)} already held by {holder}")
    return "; ".join(parts) + (": stop it first" if len(by_holder) == 1 else ": stop them first")


def _order(key: ListenerKey) -> tuple[tuple[int, int], str, int]:
    """Listeners of both families in one order (addresses of two families do not compare)."""
    return address_sort_key(key.vip), key.protocol, key.port


def _overlap(key: ListenerKey, address: str, family: int) -> int | None:
    """0 when a socket bound to ``address`` is on ``key``'s exact address, 1 when
    the two overlap through a wildcard, None when they do not overlap."""
    try:
        bound = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if bound == key.vip:
        return 0
    if bound.version == key.vip.version and (bound.is_unspecified or key.vip.is_unspecified):
        return 1
    # a dual-stack socket on [::] (no IPV6_V6ONLY) holds the IPv4 port too
    if family == socket.AF_INET6 and bound.is_unspecified and key.vip.version == 4:
        return 1
    return None


def _describe(pid: int, me: int) -> Holder | None:
    """The process to name for a socket of ``pid``; None when it is ``me`` or below it."""
    try:
        proc = psutil.Process(pid)
        lineage = [proc, *proc.parents()]
        if any(p.pid == me for p in lineage):
            return None
        while _is_multiprocessing_child(proc):
            parent = proc.parent()
            if parent is None:
                break
            proc = parent
        return Holder(proc.pid, _command(proc.cmdline()) or proc.name())
    except psutil.Error:
        return Holder(pid)


def _is_multiprocessing_child(proc: psutil.Process) -> bool:
    """A process started by :mod:`multiprocessing` (spawn or forkserver)."""
    return any(
        "--multiprocessing-fork" in arg or "multiprocessing.spawn" in arg for arg in proc.cmdline()
    )


def _command(argv: list[str]) -> str:
    """The program and its subcommand, e.g. ``ironlb forward``, or
    ``python3 -m ironlb.cli forward`` (the interpreter is kept for ``-m``)."""
    if not argv:
        return ""
    words = [os.path.basename(argv[0])]
    rest = argv[1:]
    if words[0].startswith("python") and rest:
        if rest[0] == "-m" and len(rest) > 1:
            words += rest[:2]
            rest = rest[2:]
        elif not rest[0].startswith("-"):
            words = [os.path.basename(rest[0])]
            rest = rest[1:]
    if rest and not rest[0].startswith("-"):
        words.append(rest[0])
    return " ".join(words)
