"""The ``lbctl`` entry point: argparse, kubeconfig flags, dispatch, error reporting.

Every command handler has the signature ``handler(cluster, args) -> int``;
an :class:`~ironlb.lbctl.client.LbctlError` becomes one ``lbctl: ...`` line on
stderr and its exit code (1 for API failures, 2 for invalid input). Commands
that need no cluster (``completion``, ``import`` without ``--apply``) set
``needs_cluster`` and get ``None``.

The same entry point is installed as ``kubectl-lb``, so ``kubectl lb ...``
works as a kubectl plugin. Shell completion comes from ``argcomplete``
(``lbctl completion bash|zsh|fish`` prints the script to source).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import argcomplete
from argcomplete.shell_integration import shellcode

from ironlb import __version__
from ironlb.lbctl import importer, pools, status
from ironlb.lbctl.client import LbctlError, connect

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "lbctl"
    parser = argparse.ArgumentParser(
        prog="kubectl lb" if invoked.startswith("kubectl-lb") else "lbctl",
        description="Manage ironlb address pools and inspect the install.",
    )
    parser.add_argument("--version", action="version", version=f"lbctl (ironlb) {__version__}")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pools.configure(sub)
    status.configure(sub)
    importer.configure(sub)
    completion = sub.add_parser("completion", help="print the shell completion script")
    completion.add_argument("shell", choices=list(SHELLS))
    completion.set_defaults(handler=completion_cmd, needs_cluster=lambda a: False)
    return parser


#: Shells ``lbctl completion`` writes a script for (argcomplete's names).
SHELLS = ("bash", "zsh", "fish")


def completion_cmd(cluster: object, args: argparse.Namespace) -> int:
    """Print the completion script for ``args.shell``: ``source <(lbctl completion bash)``."""
    print(shellcode(["lbctl", "kubectl-lb"], shell=args.shell), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # returns at once unless a shell is asking for completions
    args = parser.parse_args(argv)
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
