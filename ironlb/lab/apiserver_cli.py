"""Command-line adapter for `ironlb lab apiserver` (arguments and start-up only)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    parser.add_argument(
        "--kubeconfig", metavar="FILE", help="write a kubeconfig for the server here once listening"
    )
    parser.add_argument(
        "--audit-log",
        metavar="FILE",
        help="append an audit.k8s.io/v1 Event per request to FILE (JSON lines: user, verb, "
        "resource, code)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from ironlb.lab.apiserver import LocalApiServer
    from ironlb.lab.apiserver.audit import AuditLog

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("ironlb.lab.apiserver")

    async def serve() -> None:
        audit = AuditLog(args.audit_log, keep=False) if args.audit_log else None
        server = LocalApiServer(args.host, args.port, audit=audit)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            if args.kubeconfig:
                server.write_kubeconfig(args.kubeconfig)
            log.info(
                "local Kubernetes API serving at %s%s",
                server.url,
                f" (kubeconfig {args.kubeconfig})" if args.kubeconfig else "",
            )
            await stop.wait()
        finally:
            await server.stop()
        log.info("local Kubernetes API stopped")

    try:
        asyncio.run(serve())
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0
