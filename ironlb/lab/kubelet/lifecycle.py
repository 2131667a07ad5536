"""The lab kubelet's pure rules for a running Pod: readiness probes, restart back-off, status.

Kept apart from the processes so each rule is a tested function:

- :func:`readiness_probe`: what "ready" means for a container. Its
  ``readinessProbe`` (``tcpSocket`` or ``httpGet``, named ports resolved from
  ``ports``) if given, else a TCP connect to the first TCP ``containerPort``,
  else "the process is alive". ``failureThreshold``/``successThreshold``
  count as in Kubernetes (defaults 3 and 1), ``initialDelaySeconds`` is
  honoured, but the lab probes at most every :data:`MAX_PROBE_PERIOD` s
  (Kubernetes: ``periodSeconds``, default 10), so a lab Pod turns ready
  fast. A process that exits is not ready at once, without waiting for a probe.
- :class:`Backoff`: Kubernetes restarts a crashed container at once, then
  after 10 s, doubling to 5 min, and forgets the crashes once the container
  ran 10 min (twice the cap). The lab keeps the doubling and the reset rule
  but starts at :data:`LAB_BACKOFF_INITIAL` and caps at
  :data:`LAB_BACKOFF_CAP` by default.
- :func:`pod_status`: the ``status`` the kubelet writes (``phase``,
  ``podIP``/``podIPs``, ``hostIP``, the ``PodScheduled``/``Initialized``/
  ``ContainersReady``/``Ready`` conditions, ``containerStatuses`` with
  ``restartCount`` and ``containerID`` ``lab://<pid>``), with each
  condition's ``lastTransitionTime`` kept while its value stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_PROBE_PERIOD = 0.25  # seconds between lab probes, at most
PROBE_TIMEOUT = 1.0  # seconds, the Kubernetes default timeoutSeconds
LAB_BACKOFF_INITIAL = 1.0  # seconds (Kubernetes: 10)
LAB_BACKOFF_CAP = 30.0  # seconds (Kubernetes: 300)

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Probe:
    """How to tell a container is ready: ``kind`` is "tcp", "http" or "alive".

    ``host`` None means the pod's own address (the kubelet's default);
    ``period``/``initial_delay``/``timeout`` are seconds.
    """

    kind: str
    port: int = 0
    path: str = "/"
    host: str | None = None
    period: float = MAX_PROBE_PERIOD
    initial_delay: float = 0.0
    timeout: float = PROBE_TIMEOUT
    failure_threshold: int = 3
    success_threshold: int = 1


class ProbeError(ValueError):
    """A readinessProbe the lab cannot run (exec, grpc, an unknown named port)."""


def _port(value: Any, ports: Sequence[Obj]) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    for port in ports:
        if port.get("name") == text:
            return int(port["containerPort"])
    raise ProbeError(f"readinessProbe names port {text!r}, which the container does not declare")


def readiness_probe(container: Obj) -> Probe:
    """The container's readiness rule (see the module docstring). Raises :class:`ProbeError`."""
    ports: Sequence[Obj] = container.get("ports") or []
    spec = container.get("readinessProbe")
    if not spec:
        tcp = [p for p in ports if str(p.get("protocol", "TCP")) == "TCP"]
        if tcp:
            return Probe("tcp", port=int(tcp[0]["containerPort"]))
        return Probe("alive")
    if "tcpSocket" in spec:
        sock = spec["tcpSocket"]
        kind, port, path, host = "tcp", _port(sock.get("port"), ports), "/", sock.get("host")
    elif "httpGet" in spec:
        get = spec["httpGet"]
        if str(get.get("scheme", "HTTP")).upper() != "HTTP":
            raise ProbeError("readinessProbe httpGet: the lab probes plain HTTP only")
        kind, port, host = "http", _port(get.get("port"), ports), get.get("host")
        path = str(get.get("path") or "/")
    else:
        raise ProbeError(f"readinessProbe {sorted(spec)}: the lab runs tcpSocket and httpGet only")
    return Probe(
        kind,
        port=port,
        path=path,
        host=host,
        period=min(float(spec.get("periodSeconds", 10)), MAX_PROBE_PERIOD),
        initial_delay=float(spec.get("initialDelaySeconds", 0)),
        timeout=float(spec.get("timeoutSeconds", 1)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
        success_threshold=int(spec.get("successThreshold", 1)),
    )
    raise ProbeError(f"readinessProbe {sorted(spec)}: the lab runs tcpSocket and httpGet only")


class ProbeCounter:
    """Turns probe results into readiness with Kubernetes' thresholds; starts not ready."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.ready = False
        self._run = 0  # consecutive results that disagree with ``ready``

    def record(self, ok: bool) -> bool:
        """One probe result; returns the (possibly changed) readiness."""
        if ok == self.ready:
            self._run = 0
            return self.ready
        self._run += 1
        needed = self.probe.success_threshold if ok else self.probe.failure_threshold
        if self._run >= needed:
            self.ready = ok
            self._run = 0
        return self.ready

    def reset(self) -> None:
        """The process died: not ready, counting starts over."""
        self.ready = False
        self._run = 0


class Backoff:
    """Delay before the next restart of a container (seconds), as the kubelet counts it.

    ``started(now)`` when the process starts, ``next_delay(now)`` when it exits:
    0 for the first crash, then ``initial``, doubling, capped at ``cap``; a
    run that lasted ``2 * cap`` or more forgets the earlier crashes.
    """

    def __init__(self, initial: float = LAB_BACKOFF_INITIAL, cap: float = LAB_BACKOFF_CAP) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"back-off needs 0 < initial <= cap, got {initial} and {cap}")
        self.initial = initial
        self.cap = cap
        self.crashes = 0
        self._started = 0.0

    def started(self, now: float) -> None:
        self._started = now

    def next_delay(self, now: float) -> float:
        if now - self._started >= 2 * self.cap:
            self.crashes = 0
        self.crashes += 1
        if self.crashes == 1:
            return 0.0
        return float(min(self.cap, self.initial * 2 ** (self.crashes - 2)))


@dataclass(frozen=True)
class ContainerView:
    """One container as the status reports it.

    ``state`` is "running", "waiting" or "terminated"; ``reason``/``message``
    go with waiting/terminated; ``exit_code`` with terminated;
    ``last_exit_code`` is the previous run's (``lastState.terminated``).
    """

    name: str
    image: str
    state: str
    ready: bool
    restart_count: int
    pid: int | None = None
    started_at: str | None = None
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    last_exit_code: int | None = None


def _condition(kind: str, value: bool, now: str, before: Obj) -> dict[str, Any]:
    """One condition; its transition time stays when its value did not change."""
    status = "True" if value else "False"
    old = next((c for c in before.get("conditions") or [] if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or now,
    }


def _container_status(view: ContainerView) -> dict[str, Any]:
    state: dict[str, Any]
    if view.state == "running":
        state = {"running": {"startedAt": view.started_at}}
    elif view.state == "terminated":
        state = {
            "terminated": {
                "exitCode": view.exit_code,
                "reason": view.reason or "Error",
                **({"message": view.message} if view.message else {}),
            }
        }
    else:
        state = {
            "waiting": {
                "reason": view.reason or "ContainerCreating",
                **({"message": view.message} if view.message else {}),
            }
        }
    last: dict[str, Any] = {}
    if view.last_exit_code is not None and view.state != "terminated":
        reason = "Completed" if view.last_exit_code == 0 else "Error"
        last = {"terminated": {"exitCode": view.last_exit_code, "reason": reason}}
    return {
        "name": view.name,
        "image": view.image,
        "imageID": "",
        "containerID": f"lab://{view.pid}" if view.pid else "",
        "ready": view.ready,
        "started": view.state == "running",
        "restartCount": view.restart_count,
        "state": state,
        "lastState": last,
    }


def pod_status(
    before: Obj,
    *,
    now: str,
    start_time: str,
    host_ips: Sequence[str],
    pod_ips: Sequence[str],
    containers: Sequence[ContainerView],
    phase: str = "Running",
) -> dict[str, Any]:
    """The Pod ``status`` to write; ``before`` is the current status (for transition times).

    ``pod_ips`` in the order Kubernetes lists them (IPv4 first here, as the
    plan does); timestamps are RFC 3339 strings.
    """
    ready = bool(containers) and all(c.ready for c in containers)
    return {
        "phase": phase,
        "hostIP": host_ips[0] if host_ips else None,
        "hostIPs": [{"ip": ip} for ip in host_ips],
        "podIP": pod_ips[0] if pod_ips else None,
        "podIPs": [{"ip": ip} for ip in pod_ips],
        "startTime": before.get("startTime") or start_time,
        "conditions": [
            _condition("PodScheduled", True, now, before),
            _condition("Initialized", True, now, before),
            _condition("ContainersReady", ready, now, before),
            _condition("Ready", ready, now, before),
        ],
        "containerStatuses": [_container_status(c) for c in containers],
    }
