"""Transport protocols: what Kubernetes names, and what the data plane serves.

Kubernetes ports carry ``TCP``, ``UDP`` or ``SCTP`` (``ServicePort.protocol``,
default ``TCP``). The data plane forwards TCP and UDP; an SCTP port is known
and reported, never silently dropped.
"""

from __future__ import annotations

from typing import Literal

#: ``ServicePort.protocol`` values (core/v1), in Kubernetes' spelling.
KUBERNETES_PROTOCOLS: tuple[str, ...] = ("TCP", "UDP", "SCTP")

#: What the data plane forwards, in its own (lower-case) spelling.
Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")


def served_protocol(kubernetes_name: str) -> Protocol | None:
    """``"TCP"`` -> ``"tcp"``, ``"UDP"`` -> ``"udp"``; ``None`` for a protocol we do not serve."""
    if kubernetes_name == "TCP":
        return "tcp"
    if kubernetes_name == "UDP":
        return "udp"
    return None
