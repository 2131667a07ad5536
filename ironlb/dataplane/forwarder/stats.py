"""Plain counters the hot path bumps, and their picklable snapshot.

The per-connection path only adds to integer slots of these objects (no locks,
no label look-ups); Prometheus reads them at scrape time through
:mod:`ironlb.dataplane.forwarder.metrics`. A worker process sends
:meth:`StatsRegistry.snapshot` to the parent, which sums all workers.
"""

from __future__ import annotations

# Snapshot layout (kept as plain tuples/dicts so it pickles small and fast):
#   {listener: (ListenerCounters..., {backend: (BackendCounters...)})}
LISTENER_FIELDS = (
    "accepted",
    "active",
    "rejected_limit",
    "no_backend",
    "retries",
    "udp_sessions_active",
    "udp_dropped",
    "rejected_source",
    "fd_exhausted",
)
BACKEND_FIELDS = (
    "connections",
    "active",
    "failed",
    "bytes_to_backend",
    "bytes_to_client",
    "udp_sessions",
    "ejections",
)
Snapshot = dict[str, tuple[tuple[int, ...], dict[str, tuple[int, ...]]]]


class BackendStats:
    """Counters of one backend of one listener."""

    __slots__ = BACKEND_FIELDS

    def __init__(self) -> None:
        self.connections = 0
        self.active = 0
        self.failed = 0
        self.bytes_to_backend = 0
        self.bytes_to_client = 0
        self.udp_sessions = 0
        self.ejections = 0  # taken out by passive outlier detection (:mod:`.outlier`)

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in BACKEND_FIELDS)


class ListenerStats:
    """Counters of one listener, and of its backends by ``str(backend)``."""

    __slots__ = (*LISTENER_FIELDS, "backends")

    def __init__(self) -> None:
        self.accepted = 0
        self.active = 0
        self.rejected_limit = 0
        self.no_backend = 0
        self.retries = 0
        self.udp_sessions_active = 0
        self.udp_dropped = 0
        self.rejected_source = 0
        self.fd_exhausted = 0
        self.backends: dict[str, BackendStats] = {}

    def backend(self, name: str) -> BackendStats:
        stats = self.backends.get(name)
        if stats is None:
            stats = self.backends[name] = BackendStats()
        return stats

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in LISTENER_FIELDS)


class StatsRegistry:
    """All counters of one forwarder, by ``str(listener_key)``."""

    def __init__(self) -> None:
        self.listeners: dict[str, ListenerStats] = {}

    def listener(self, name: str) -> ListenerStats:
        stats = self.listeners.get(name)
        if stats is None:
            stats = self.listeners[name] = ListenerStats()
        return stats

    def snapshot(self) -> Snapshot:
        return {
            name: (ls.values(), {b: bs.values() for b, bs in ls.backends.items()})
            for name, ls in self.listeners.items()
        }


def add_snapshots(a: Snapshot, b: Snapshot) -> Snapshot:
    """Element-wise sum of two snapshots (gauges and counters alike)."""
    out: Snapshot = {name: (vals, dict(backends)) for name, (vals, backends) in a.items()}
    for name, (vals, backends) in b.items():
        if name not in out:
            out[name] = (vals, dict(backends))
            continue
        cur_vals, cur_backends = out[name]
        merged = {**cur_backends}
        for bname, bvals in backends.items():
            prev = merged.get(bname)
            merged[bname] = (
                bvals if prev is None else tuple(x + y for x, y in zip(prev, bvals, strict=True))
            )
        out[name] = (tuple(x + y for x, y in zip(cur_vals, vals, strict=True)), merged)
    return out


def retire(snapshot: Snapshot) -> Snapshot:
    """A dead worker's snapshot with its gauges zeroed (its counters stay counted)."""
    la = LISTENER_FIELDS.index("active")
    lu = LISTENER_FIELDS.index("udp_sessions_active")
    ba = BACKEND_FIELDS.index("active")
    out: Snapshot = {}
    for name, (vals, backends) in snapshot.items():
        lv = list(vals)
        lv[la] = lv[lu] = 0
        bout = {}
        for bname, bvals in backends.items():
            bv = list(bvals)
            bv[ba] = 0
            bout[bname] = tuple(bv)
        out[name] = (tuple(lv), bout)
    return out
