"""A Service's per-Service proxy options: session affinity and timeouts (pure logic).

With ``ipMode: Proxy`` kube-proxy leaves the VIP to ironlb, so two things it
did for a Service become ours, and :func:`service_options` reads them:

* ``spec.sessionAffinity`` (``None`` or ``ClientIP``) with
  ``spec.sessionAffinityConfig.clientIP.timeoutSeconds`` (core/v1
  ``ClientIPConfig``: default 10800, valid ``0 < t <= 86400``);
* the annotations ``ironlb.io/idle-timeout`` and ``ironlb.io/connect-timeout``,
  the ``idle_timeout`` / ``connect_timeout`` of ``ironlb forward``, with the
  same defaults (:data:`~ironlb.dataplane.state.DEFAULT_OPTIONS`).

Every bad value becomes one problem naming the field or annotation, and that
option keeps its default: a typo must never drop the Service. Kept apart from
:mod:`ironlb.speaker.plan` (which only calls it) so the rules are small and
testable alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ironlb.dataplane.state import AFFINITY_TIMEOUT_DEFAULT, AFFINITY_TIMEOUT_MAX, DEFAULT_OPTIONS

__all__ = [
    "CONNECT_TIMEOUT",
    "IDLE_TIMEOUT",
    "ServiceOptions",
    "parse_duration",
    "service_options",
]

#: Annotation: seconds a proxied connection may be idle (``ironlb forward``'s ``idle_timeout``).
IDLE_TIMEOUT = "ironlb.io/idle-timeout"
#: Annotation: seconds a backend connect may take (``ironlb forward``'s ``connect_timeout``).
CONNECT_TIMEOUT = "ironlb.io/connect-timeout"

_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>ms|s|m|h)?")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class ServiceOptions:
    """What :func:`service_options` read: times in seconds, ``affinity_timeout``
    ``None`` without affinity; ``problems`` are ``(reason, message)`` pairs."""

    idle_timeout: float
    connect_timeout: float
    affinity_timeout: float | None
    problems: tuple[tuple[str, str], ...]


def parse_duration(text: str) -> float | None:
    """``"30"``, ``"2.5"``, ``"30s"``, ``"500ms"``, ``"5m"``, ``"1h"`` -> seconds (> 0).

    A plain number is seconds, as in ``ironlb forward``'s config; the unit
    suffixes are the common ones of Go durations (one number, one unit).
    ``None`` for anything else, zero, or a value that is not finite.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    value = float(match["number"]) * _UNITS[match["unit"]]
    if not math.isfinite(value) or value <= 0:
        return None
    return value


def _timeout(
    annotations: Mapping[str, Any], name: str, default: float, problems: list[tuple[str, str]]
) -> float:
    raw = annotations.get(name)
    if raw is None or raw == "":
        return default
    value = parse_duration(raw) if isinstance(raw, str) else None
    if value is None:
        reason = "InvalidIdleTimeout" if name == IDLE_TIMEOUT else "InvalidConnectTimeout"
        problems.append(
            (
                reason,
                f"annotation {name}: {raw!r} is not a duration > 0 such as 30, 2.5s, 500ms "
                f"or 5m; using the default {default:g}s",
            )
        )
        return default
    return value


def _affinity(spec: Mapping[str, Any], problems: list[tuple[str, str]]) -> float | None:
    """``spec.sessionAffinity`` (+ config) -> the pin timeout in seconds, or ``None``."""
    kind = spec.get("sessionAffinity")
    if kind is None or kind == "" or kind == "None":
        return None
    if kind != "ClientIP":
        problems.append(
            (
                "InvalidSessionAffinity",
                f"spec.sessionAffinity: {kind!r} is not None or ClientIP; serving without affinity",
            )
        )
        return None
    config = spec.get("sessionAffinityConfig")
    client = config.get("clientIP") if isinstance(config, Mapping) else None
    raw = client.get("timeoutSeconds") if isinstance(client, Mapping) else None
    if raw is None:
        return float(AFFINITY_TIMEOUT_DEFAULT)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= AFFINITY_TIMEOUT_MAX:
        problems.append(
            (
                "InvalidSessionAffinity",
                f"spec.sessionAffinityConfig.clientIP.timeoutSeconds: {raw!r} is not an integer "
                f"in 1..{AFFINITY_TIMEOUT_MAX}; using {AFFINITY_TIMEOUT_DEFAULT}",
            )
        )
        return float(AFFINITY_TIMEOUT_DEFAULT)
    return float(raw)


def service_options(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> ServiceOptions:
    """Read a Service's ``spec`` and ``metadata.annotations`` (API dicts); never raises."""
    problems: list[tuple[str, str]] = []
    idle = _timeout(annotations, IDLE_TIMEOUT, DEFAULT_OPTIONS.idle_timeout, problems)
    connect = _timeout(annotations, CONNECT_TIMEOUT, DEFAULT_OPTIONS.connect_timeout, problems)
    affinity = _affinity(spec, problems)
    return ServiceOptions(idle, connect, affinity, tuple(problems))
