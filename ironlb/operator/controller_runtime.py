"""Wire the controller together and run it: kopf operator + lease election + writers.

:func:`run_controller` is what ``ironlb controller`` runs and what the tests
run in-process: it opens the API client, starts kopf (watches and the
admission webhook, on every replica) and the Lease election, whose winner
activates the :class:`~ironlb.operator.controller.AllocationController`.
Setting ``stop`` ends everything and releases the Lease if held. With a
``metrics_address`` it also serves ``/metrics``, ``/healthz`` and ``/readyz``
there (:mod:`ironlb.operator.health_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass

import kopf

from ironlb.common.signals import reclaim_stop_signals
from ironlb.operator.controller import AllocationController
from ironlb.operator.controller_metrics import ControllerMetrics
from ironlb.operator.health_server import HealthServer
from ironlb.operator.k8s_adapter import KubeApi
from ironlb.operator.kopf_handlers import build_registry
from ironlb.operator.lease_elector import LeaseElector
from ironlb.operator.service_request import DEFAULT_LOAD_BALANCER_CLASS

__all__ = [
    "ControllerConfig",
    "ControllerStartError",
    "default_identity",
    "default_namespace",
    "run_controller",
]

log = logging.getLogger("ironlb.controller")

LEASE_NAME = "ironlb-controller"


def default_namespace() -> str:
    return os.environ.get("POD_NAMESPACE") or "ironlb-system"


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ControllerConfig:
    load_balancer_class: str = DEFAULT_LOAD_BALANCER_CLASS
    unset_class: bool = True  # also serve Services without spec.loadBalancerClass
    namespace: str = "ironlb-system"
    identity: str = "ironlb-controller"
    lease_duration: int = 15
    renew_period: float = 2.0
    webhook_port: int | None = None  # None: no admission webhook
    webhook_host: str = "0.0.0.0"
    webhook_cert: str | None = None  # PEM files; without them the webhook is plain HTTP
    webhook_key: str | None = None
    pool_status_interval: float = 0.5
    metrics_address: str | None = None  # HOST:PORT for /metrics, /healthz, /readyz


class ControllerStartError(Exception):
    """The controller cannot start (e.g. the metrics address is taken); one line."""


def _settings(config: ControllerConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # our Events are posted by EventRecorder, leader only
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    if config.webhook_port is not None:
        insecure = not (config.webhook_cert and config.webhook_key)
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_host,
            port=config.webhook_port,
            insecure=insecure,
            certfile=config.webhook_cert,
            pkeyfile=config.webhook_key,
        )
        settings.admission.managed = None  # the Helm chart owns the webhook configuration
    return settings


async def run_controller(
    config: ControllerConfig,
    connection: kopf.ConnectionInfo,
    *,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    controller_box: list[AllocationController] | None = None,
) -> None:
    """Run until ``stop`` is set. ``started`` is set once kopf is watching.

    ``controller_box`` (tests, benchmarks) receives the controller instance.
    Raises :class:`ControllerStartError` when the metrics address cannot be bound.
    """
    metrics = ControllerMetrics()
    async with KubeApi(connection) as api:
        controller = AllocationController(
            api,
            load_balancer_class=config.load_balancer_class,
            unset_class=config.unset_class,
            instance=config.identity,
            pool_status_interval=config.pool_status_interval,
            lease_valid=lambda: elector.valid,
            on_allocated=metrics.allocated,
            on_failed=metrics.failed,
        )
        if controller_box is not None:
            controller_box.append(controller)
        elector = LeaseElector(
            api,
            namespace=config.namespace,
            name=LEASE_NAME,
            identity=config.identity,
            lease_duration=config.lease_duration,
            retry_period=config.renew_period,
            on_started=controller.activate,
            on_stopped=controller.deactivate,
        )
        metrics.watch_state(lambda: controller.allocator, lambda: elector.leading)
        kopf_stop = asyncio.Event()
        ready = started if started is not None else asyncio.Event()

        def not_ready() -> str | None:
            if not ready.is_set():
                return "not logged in to the API and watching yet"
            if elector.leading:
                if not elector.valid:
                    return "the Lease is not renewed"
                return None if controller.ready else "leader, rebuilding the state"
            return None if elector.following else "cannot read or hold the Lease"

        health = None
        if config.metrics_address is not None:
            health = HealthServer(config.metrics_address, metrics.registry, not_ready)
            try:
                await health.start()
            except OSError as exc:
                raise ControllerStartError(
                    f"cannot serve metrics on {config.metrics_address}: "
                    + (os.strerror(exc.errno) if exc.errno else str(exc))
                ) from None
            log.info("metrics and health on http://%s/", config.metrics_address)
        operator = asyncio.create_task(
            kopf.operator(
                registry=build_registry(
                    controller,
                    api,
                    connection,
                    webhook=config.webhook_port is not None,
                    metrics=metrics,
                ),
                settings=_settings(config),
                standalone=True,
                clusterwide=True,
                stop_flag=kopf_stop,
                ready_flag=ready,
            ),
            name="ironlb-kopf",
        )
        election = asyncio.create_task(elector.run(), name="ironlb-election")
        signals = asyncio.create_task(reclaim_stop_signals(ready, stop))
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {operator, election, waiter}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done & {operator, election}:
                task.result()  # surface a crash
        finally:
            waiter.cancel()
            signals.cancel()
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election  # releases the Lease and deactivates the controller
            kopf_stop.set()
            if not operator.done():
                try:
                    async with asyncio.timeout(30):
                        await operator
                except (TimeoutError, asyncio.CancelledError):
                    operator.cancel()
            if controller.leading:
                await controller.deactivate()
            if health is not None:
                await health.stop()
