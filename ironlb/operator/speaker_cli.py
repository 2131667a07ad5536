"""Command-line adapter for ``ironlb speaker`` (arguments and start-up only).

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad arguments or no credentials,
1 when the speaker cannot start (no Node object, no heartbeat key, no
``CAP_NET_ADMIN``/``CAP_NET_RAW``, heartbeat port in use).
"""

from __future__ import annotations

import argparse
import os
import sys

from ironlb.common.logs import add_logging_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        help="this node's name as `kubectl get nodes` shows it (default: $NODE_NAME)",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE") or "ironlb-system",
        help="where the speaker Leases and the ironlb-heartbeat Secret live "
        "(default: $POD_NAMESPACE, else ironlb-system)",
    )
    parser.add_argument("--heartbeat-port", type=int, default=7473, help="UDP port (default 7473)")
    parser.add_argument(
        "--forwarding-mode",
        choices=("proxy", "kernel"),
        default="proxy",
        help="default data path for Services without ironlb.io/forwarding-mode (default proxy)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, after handing the VIPs over, let open connections finish for up to "
        "this long (default 30)",
    )
    parser.add_argument(
        "--interfaces",
        default="",
        help="comma-separated interfaces to announce on at all (default: every suitable one)",
    )
    parser.add_argument("--workers", type=int, default=1, help="proxy worker processes")
    parser.add_argument("--lease-duration", type=int, default=10, help="node Lease, seconds")
    parser.add_argument(
        "--load-balancer-class", default="ironlb.io/ironlb", help="spec.loadBalancerClass served"
    )
    parser.add_argument(
        "--ignore-unset-class",
        action="store_true",
        help="leave Services without spec.loadBalancerClass alone (while another "
        "implementation, e.g. MetalLB, still serves them; see docs/migrating-from-metallb.md)",
    )
    parser.add_argument("--metrics-address", default=None, metavar="HOST:PORT")
    add_logging_arguments(parser)


def _fail(message: str, code: int = 2) -> int:
    print(f"ironlb speaker: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from ironlb.common.ifnames import interface_name_problem

    if not args.node_name:
        return _fail("no node name: pass --node-name or set NODE_NAME (the downward API)")
    if not 0 < args.heartbeat_port < 65536:
        return _fail(f"--heartbeat-port must be 1-65535, got {args.heartbeat_port}")
    if args.lease_duration < 3:
        return _fail("--lease-duration must be at least 3 s")
    if not 0 <= args.drain_seconds < 86400:
        return _fail("--drain-seconds must be 0-86399")
    if args.workers < 1:
        return _fail("--workers must be >= 1")
    interfaces = tuple(n for n in args.interfaces.split(",") if n)
    for name in interfaces:
        problem = interface_name_problem(name)
        if problem is not None:
            return _fail(f"--interfaces: {name!r} {problem}")

    import asyncio
    import logging
    import signal

    import uvloop

    from ironlb.common.logs import setup_logging
    from ironlb.operator.kube_login import LoginFailed, login
    from ironlb.speaker.runtime import SpeakerConfig, SpeakerError, run_speaker

    setup_logging(args.log_format, args.log_level, process="speaker")
    if args.log_level != "debug":
        logging.getLogger("kopf").setLevel(logging.WARNING)
    try:
        connection = login()
    except LoginFailed as exc:
        return _fail(str(exc))
    logging.getLogger("ironlb.speaker").info(
        "ironlb speaker starting: node %s, namespace %s", args.node_name, args.namespace
    )
    config = SpeakerConfig(
        node=args.node_name,
        namespace=args.namespace,
        heartbeat_port=args.heartbeat_port,
        lease_duration=args.lease_duration,
        renew_period=max(1.0, args.lease_duration / 5),
        forwarding_mode=args.forwarding_mode,
        drain_seconds=args.drain_seconds,
        workers=args.workers,
        interfaces=interfaces,
        load_balancer_class=args.load_balancer_class,
        unset_class=not args.ignore_unset_class,
        log_format=args.log_format,
        log_level=args.log_level,
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_speaker(config, connection, stop=stop, metrics_address=args.metrics_address)
        except SpeakerError as exc:
            return _fail(str(exc), 1)
        return 0

    return uvloop.run(main())
