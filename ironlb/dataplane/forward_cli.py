"""Command-line adapter for ``ironlb forward`` (arguments and start-up only).

Exit codes: 0 after SIGTERM/SIGINT; 2 for a bad config, bad arguments, or an
address another process holds (a listener, the metrics address); 1 when a
listener cannot be bound at start for another reason.
"""

from __future__ import annotations

import argparse
import os
import sys

from ironlb.common.logs import add_logging_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="YAML file with listeners")
    parser.add_argument(
        "--workers",
        "-w",
        type=int,
        default=0,
        help="worker processes sharing the listeners (default: one per core)",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        default=None,
        help="serve Prometheus metrics here, e.g. 127.0.0.1:9100 (default: off)",
    )
    add_logging_arguments(parser)
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="on SIGTERM, and for a listener a reload removes with its announced VIP, "
        "let open connections finish for up to S seconds after the VIP stopped being "
        "announced, then close them and unbind the VIP (default: 0; a released VIP "
        "stays bound at least 5 s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only validate the config file and exit"
    )


def run(args: argparse.Namespace) -> int:
    from ironlb.common.logs import setup_logging
    from ironlb.dataplane.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ironlb forward: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK ({len(config.listeners)} listener(s))")
        return 0
    if not 0 <= args.drain_seconds < 86400:
        print("ironlb forward: --drain-seconds must be 0-86399", file=sys.stderr)
        return 2
    if args.workers < 0:
        print("ironlb forward: --workers must be >= 0", file=sys.stderr)
        return 2
    if args.metrics_address is not None:
        _, sep, port = args.metrics_address.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            bad = args.metrics_address
            print(
                f"ironlb forward: --metrics-address must be HOST:PORT, got {bad!r}", file=sys.stderr
            )
            return 2
    setup_logging(args.log_format, args.log_level, process="control")

    import uvloop

    from ironlb.dataplane.forward_service import ForwardService
    from ironlb.dataplane.settings import DataPlaneSettings

    settings = DataPlaneSettings(
        workers=args.workers or len(os.sched_getaffinity(0)),
        log_format=args.log_format,
        log_level=args.log_level,
        drain_seconds=args.drain_seconds,
    )
    service = ForwardService(
        args.config,
        config,
        settings,
        metrics_address=args.metrics_address,
        drain_seconds=args.drain_seconds,
    )
    return uvloop.run(service.run())
