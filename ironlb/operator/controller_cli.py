"""Command-line adapter for ``ironlb controller`` (arguments and start-up only).

Logs in like kubectl does: the in-cluster service account when present, else
``KUBECONFIG`` / ``~/.kube/config``. Everything else is in
:mod:`ironlb.operator.controller_runtime`.
"""

from __future__ import annotations

import argparse
import os
import socket

from ironlb.common.logs import add_logging_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--load-balancer-class",
        default="ironlb.io/ironlb",
        help="spec.loadBalancerClass handled besides unset (default: %(default)s)",
    )
    parser.add_argument(
        "--ignore-unset-class",
        action="store_true",
        help="leave Services without spec.loadBalancerClass alone (while another "
        "implementation, e.g. MetalLB, still serves them; see docs/migrating-from-metallb.md)",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE") or "ironlb-system",
        help="namespace of the election Lease (default: $POD_NAMESPACE or %(default)s)",
    )
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        help="holder identity in the Lease (default: $POD_NAME or hostname-pid)",
    )
    parser.add_argument(
        "--lease-duration", type=int, default=15, help="Lease duration in seconds (default: 15)"
    )
    parser.add_argument(
        "--renew-period", type=float, default=2.0, help="seconds between Lease renewals"
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        default=None,
        help="serve the IPAddressPool validating webhook on this port (default: off)",
    )
    parser.add_argument("--webhook-host", default="0.0.0.0", help="webhook listen address")
    parser.add_argument("--webhook-cert", default=None, help="TLS certificate (PEM) for webhook")
    parser.add_argument("--webhook-key", default=None, help="TLS key (PEM); no cert: plain HTTP")
    parser.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and the /healthz, /readyz probes here (default: off)",
    )
    add_logging_arguments(parser, verbose_alias=True)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    import sys

    import kopf

    from ironlb.operator.controller_runtime import (
        ControllerConfig,
        ControllerStartError,
        run_controller,
    )

    if args.lease_duration < 3:
        print("ironlb controller: --lease-duration must be at least 3 s", file=sys.stderr)
        return 2
    if args.renew_period <= 0 or args.renew_period * 2 >= args.lease_duration:
        print(
            "ironlb controller: --renew-period must be positive and under half the lease",
            file=sys.stderr,
        )
        return 2
    if bool(args.webhook_cert) != bool(args.webhook_key):
        print("ironlb controller: --webhook-cert and --webhook-key go together", file=sys.stderr)
        return 2
    if args.metrics_address is not None:
        from ironlb.operator.health_server import parse_address

        try:
            parse_address(args.metrics_address)
        except ValueError as exc:
            print(f"ironlb controller: --metrics-address {exc}", file=sys.stderr)
            return 2
    from ironlb.common.logs import setup_logging

    setup_logging(args.log_format, args.log_level, process="controller")
    if args.log_level != "debug":
        # kopf logs every handled event at INFO: 10,000 Services, 30,000 lines.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    from ironlb.operator.kube_login import LoginFailed, login

    try:
        connection = login()
    except LoginFailed as exc:
        print(f"ironlb controller: {exc}", file=sys.stderr)
        return 2
    config = ControllerConfig(
        load_balancer_class=args.load_balancer_class,
        unset_class=not args.ignore_unset_class,
        namespace=args.namespace,
        identity=args.identity,
        lease_duration=args.lease_duration,
        renew_period=args.renew_period,
        webhook_port=args.webhook_port,
        webhook_host=args.webhook_host,
        webhook_cert=args.webhook_cert,
        webhook_key=args.webhook_key,
        metrics_address=args.metrics_address,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_controller(config, connection, stop=stop)

    try:
        asyncio.run(main())
    except (kopf.LoginError, ControllerStartError) as exc:
        print(f"ironlb controller: {exc}", file=sys.stderr)
        return 1
    return 0
