"""The controller's Prometheus metrics (prometheus-client, like the speaker and forward).

Counters and the handler-latency histogram are bumped where things happen;
the address gauges and the leader gauge are read from the live state when
Prometheus scrapes (:class:`_StateCollector`), so they can never drift from
what the allocator holds. Scrapes are answered on the controller's event loop
(:mod:`ironlb.operator.health_server`), so reading the allocator never races
its updates.

Names follow MetalLB's where it has one (``addresses_total``,
``addresses_in_use_total`` per pool), so existing dashboards translate:

- ``ironlb_allocator_addresses_total{pool,family}``: addresses the pool
  offers (gauge; ``family`` is ``ipv4`` or ``ipv6``);
- ``ironlb_allocator_addresses_in_use_total{pool,family}``: distinct
  addresses assigned (gauge);
- ``ironlb_controller_allocations_total{pool}``: Services given (new) IPs;
- ``ironlb_controller_allocation_failures_total{reason}``: refusals, counted
  once per Service and distinct reason/message, as the ``AllocationFailed``
  Events are (``reason``: the allocator's, e.g. ``NoAvailableIPs``,
  or ``InvalidRequest`` for a Service that asks for something malformed);
- ``ironlb_controller_leader``: 1 while this replica holds the Lease;
- ``ironlb_controller_handler_duration_seconds{resource}``: time spent in
  one watch event's handler (``services``, ``pools``, ``namespaces``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ironlb.operator.allocator import AllocationError, Allocator

__all__ = ["ControllerMetrics"]

# Watch handlers take microseconds to tens of milliseconds; the rebuild-blocked
# first events may wait seconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _StateCollector(Collector):
    def __init__(self, allocator: Callable[[], Allocator], leader: Callable[[], bool]) -> None:
        self._allocator = allocator
        self._leader = leader

    def collect(self) -> Iterator[Metric]:
        total = GaugeMetricFamily(
            "ironlb_allocator_addresses_total",
            "Addresses an IPAddressPool offers",
            labels=["pool", "family"],
        )
        in_use = GaugeMetricFamily(
            "ironlb_allocator_addresses_in_use_total",
            "Distinct addresses of an IPAddressPool assigned to Services",
            labels=["pool", "family"],
        )
        allocator = self._allocator()
        for pool in sorted(p.name for p in allocator.pools()):
            try:
                usage = allocator.usage(pool)
            except AllocationError:
                continue
            for family, used, free in (
                ("ipv4", usage.assigned_ipv4, usage.available_ipv4),
                ("ipv6", usage.assigned_ipv6, usage.available_ipv6),
            ):
                total.add_metric([pool, family], float(used + free))
                in_use.add_metric([pool, family], float(used))
        yield total
        yield in_use
        yield GaugeMetricFamily(
            "ironlb_controller_leader",
            "1 while this replica holds the controller Lease",
            value=1.0 if self._leader() else 0.0,
        )


class ControllerMetrics:
    """One registry with the controller's metrics (see the module docstring).

    ``allocator`` and ``leader`` are read at scrape time: the controller's
    current :class:`Allocator` (it is replaced on every term) and whether
    this replica leads.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self._allocations = Counter(
            "ironlb_controller_allocations",
            "Services given new addresses",
            ["pool"],
            registry=self.registry,
        )
        self._failures = Counter(
            "ironlb_controller_allocation_failures",
            "Allocation refusals (once per Service and distinct reason), by reason",
            ["reason"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "ironlb_controller_handler_duration_seconds",
            "Time spent handling one watch event",
            ["resource"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def watch_state(self, allocator: Callable[[], Allocator], leader: Callable[[], bool]) -> None:
        """Report the address gauges from ``allocator()`` and the leader gauge from ``leader()``."""
        self.registry.register(_StateCollector(allocator, leader))

    def allocated(self, pool: str) -> None:
        self._allocations.labels(pool=pool).inc()

    def failed(self, reason: str) -> None:
        self._failures.labels(reason=reason).inc()

    def handled(self, resource: str, seconds: float) -> None:
        self._latency.labels(resource=resource).observe(seconds)
