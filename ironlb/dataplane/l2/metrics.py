"""Prometheus metrics of the L2 announcer.

Per VIP and address family: requests (ARP who-has / Neighbor Solicitations)
received for it, replies sent, gratuitous announcements sent (gratuitous ARP
requests, unsolicited Neighbor Advertisements). Requests for addresses the
node does not own are counted under ``vip="other"`` so that a busy LAN
cannot blow up the label set. A gauge tells how many interfaces are served.

The metrics are registered once per ``CollectorRegistry`` (the global one
by default); pass a private registry to keep them apart (tests).
"""

from __future__ import annotations

import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

OTHER = "other"


class L2Metrics:
    """The announcer's counters, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("family", "vip")
        self.requests = Counter(
            "ironlb_l2_requests_received",
            "ARP requests / Neighbor Solicitations received, by target VIP",
            labels,
            registry=registry,
        )
        self.replies = Counter(
            "ironlb_l2_replies_sent",
            "ARP replies / solicited Neighbor Advertisements sent",
            labels,
            registry=registry,
        )
        self.gratuitous = Counter(
            "ironlb_l2_gratuitous_sent",
            "Gratuitous ARP requests / unsolicited Neighbor Advertisements sent",
            labels,
            registry=registry,
        )
        self.send_errors = Counter(
            "ironlb_l2_send_errors",
            "Frames the announcer failed to send",
            ("interface",),
            registry=registry,
        )
        self.interfaces = Gauge(
            "ironlb_l2_interfaces",
            "Interfaces the announcer answers on",
            registry=registry,
        )


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, L2Metrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None) -> L2Metrics:
    """The metrics on ``registry`` (created once per registry, shared by every
    announcer using it); ``None`` means prometheus-client's global registry."""
    registry = REGISTRY if registry is None else registry
    metrics = _by_registry.get(registry)
    if metrics is None:
        metrics = _by_registry[registry] = L2Metrics(registry)
    return metrics
