"""Prometheus exposition of the forwarder counters (served by the parent).

Workers never touch prometheus-client on the hot path: they bump plain
integers (:mod:`~ironlb.dataplane.forwarder.stats`) and send snapshots to the
parent once a second. The parent's :class:`ForwarderCollector` sums the
snapshots of all workers (plus the final counts of workers that died, so
counters never go backwards) when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ironlb.dataplane.forwarder.stats import BACKEND_FIELDS, LISTENER_FIELDS, Snapshot

# field -> (metric name, help, is_counter, extra labels)
_LISTENER_METRICS: dict[str, tuple[str, str, bool, dict[str, str]]] = {
    "accepted": ("ironlb_forward_accepted_connections", "Client connections accepted", True, {}),
    "active": ("ironlb_forward_active_connections", "Client connections open", False, {}),
    "rejected_limit": (
        "ironlb_forward_rejected_connections",
        "Client connections closed at once",
        True,
        {"reason": "limit"},
    ),
    "no_backend": (
        "ironlb_forward_rejected_connections",
        "Client connections closed at once",
        True,
        {"reason": "no_backend"},
    ),
    "retries": ("ironlb_forward_retries", "Connects retried on another backend", True, {}),
    "udp_sessions_active": ("ironlb_forward_udp_sessions_active", "UDP sessions open", False, {}),
    "udp_dropped": ("ironlb_forward_udp_dropped_datagrams", "UDP datagrams dropped", True, {}),
    "rejected_source": (
        "ironlb_forward_rejected_sources",
        "Connections or datagrams refused by the listener's source ranges",
        True,
        {},
    ),
    "fd_exhausted": (
        "ironlb_forward_fd_exhausted",
        "Client connections closed (TCP) or datagrams dropped (UDP) for want of a file "
        "descriptor (RLIMIT_NOFILE)",
        True,
        {},
    ),
}
_BACKEND_METRICS: dict[str, tuple[str, str, bool, dict[str, str]]] = {
    "connections": (
        "ironlb_forward_backend_connections",
        "Connections made to a backend",
        True,
        {},
    ),
    "active": (
        "ironlb_forward_backend_active_connections",
        "Open connections to a backend",
        False,
        {},
    ),
    "failed": ("ironlb_forward_backend_connect_failures", "Failed connects to a backend", True, {}),
    "bytes_to_backend": (
        "ironlb_forward_bytes",
        "Bytes forwarded",
        True,
        {"direction": "to_backend"},
    ),
    "bytes_to_client": (
        "ironlb_forward_bytes",
        "Bytes forwarded",
        True,
        {"direction": "to_client"},
    ),
    "udp_sessions": ("ironlb_forward_backend_udp_sessions", "UDP sessions created", True, {}),
    "ejections": (
        "ironlb_forward_backend_ejections",
        "Times a backend was taken out by passive failure detection (failed flows in a row)",
        True,
        {},
    ),
}


# Fields that mean nothing for the other protocol (left out of the output).
_UDP_ONLY = frozenset({"udp_sessions_active", "udp_dropped", "udp_sessions"})
_TCP_ONLY = frozenset({"accepted", "active", "rejected_limit", "retries", "connections"})


class ForwarderCollector(Collector):
    """Turns the summed worker snapshot (and backend health) into metrics."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        backend_up: Callable[[], dict[tuple[str, str], bool]],
        workers: Callable[[], int],
        reloads: Callable[[], dict[str, int]],
    ) -> None:
        self._snapshot = snapshot
        self._backend_up = backend_up
        self._workers = workers
        self._reloads = reloads

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

        def family(
            spec: tuple[str, str, bool, dict[str, str]], labels: list[str]
        ) -> CounterMetricFamily | GaugeMetricFamily:
            name, doc, counter, extra = spec
            fam = families.get(name)
            if fam is None:
                cls = CounterMetricFamily if counter else GaugeMetricFamily
                fam = families[name] = cls(name, doc, labels=[*labels, *extra])
            return fam

        for listener, (lvals, backends) in sorted(snap.items()):
            skip = _UDP_ONLY if listener.startswith("tcp/") else _TCP_ONLY
            for fname, value in zip(LISTENER_FIELDS, lvals, strict=True):
                if fname in skip:
                    continue
                spec = _LISTENER_METRICS[fname]
                family(spec, ["listener"]).add_metric([listener, *spec[3].values()], value)
            for backend, bvals in sorted(backends.items()):
                for fname, value in zip(BACKEND_FIELDS, bvals, strict=True):
                    if fname in skip:
                        continue
                    spec = _BACKEND_METRICS[fname]
                    fam = family(spec, ["listener", "backend"])
                    fam.add_metric([listener, backend, *spec[3].values()], value)
        yield from families.values()
        up = GaugeMetricFamily(
            "ironlb_forward_backend_up",
            "1 when a backend is in the rotation (ready and passing health checks)",
            labels=["listener", "backend"],
        )
        for (listener, backend), is_up in sorted(self._backend_up().items()):
            up.add_metric([listener, backend], 1.0 if is_up else 0.0)
        yield up
        yield GaugeMetricFamily(
            "ironlb_forward_workers", "Worker processes running", value=self._workers()
        )
        reloads = CounterMetricFamily(
            "ironlb_forward_config_reloads", "Config reloads (SIGHUP)", labels=["result"]
        )
        for result, count in sorted(self._reloads().items()):
            reloads.add_metric([result], count)
        yield reloads


def serve_metrics(
    address: str, collector: Collector, registry: CollectorRegistry | None = None
) -> None:
    """Serve ``/metrics`` on ``HOST:PORT`` from a background thread.

    ``registry`` may already hold other collectors (the announcer's).
    """
    host, _, port = address.rpartition(":")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
