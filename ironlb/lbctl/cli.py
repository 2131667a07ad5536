"""The ``lbctl`` entry point: argparse, kubeconfig flags, dispatch, error reporting.

Every command handler has the signature ``handler(cluster, args) -> int``;
an :class:`~ironlb.lbctl.client.LbctlError` becomes one ``lbctl: ...`` line on
stderr and its exit code (1 for API failures, 2 for invalid input).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ironlb.lbctl import importer, pools, status
from ironlb.lbctl.client import LbctlError, connect

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lbctl", description="Manage ironlb address pools and inspect the install."
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pools.configure(sub)
    status.configure(sub)
    importer.configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        needs_cluster = getattr(args, "needs_cluster", None)
        if needs_cluster is not None and not needs_cluster(args):
            code: int = args.handler(None, args)  # works offline (e.g. import without --apply)
        else:
            cluster = connect(args.kubeconfig, args.context)
            try:
                code = args.handler(cluster, args)
            finally:
                cluster.close()
    except LbctlError as exc:
        print(f"lbctl: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code
