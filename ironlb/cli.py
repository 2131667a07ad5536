"""The ``ironlb`` command: one entry point, a subcommand per process.

Each subcommand lives in a small ``*_cli`` module that exposes
``configure(parser)`` and ``run(args) -> int`` and imports nothing heavy at
module level, so ``ironlb forward`` never loads kopf and ``ironlb --help`` is
fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from ironlb import __version__


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help); nested dicts are command groups.
COMMANDS: dict[str, tuple[str, str] | dict[str, tuple[str, str]]] = {
    "controller": ("ironlb.operator.controller_cli", "run the IP allocation controller"),
    "speaker": ("ironlb.operator.speaker_cli", "run the per-node speaker"),
    "forward": ("ironlb.dataplane.forward_cli", "run the standalone data plane"),
    "lab": {
        "apiserver": ("ironlb.lab.apiserver_cli", "serve a local Kubernetes API"),
        "controllers": (
            "ironlb.lab.workloads_cli",
            "run the lab's Deployment/DaemonSet/scheduler/EndpointSlice controllers",
        ),
        "net": ("ironlb.lab.net_cli", "build or remove a network-namespace LAN"),
        "cluster": (
            "ironlb.lab.cluster_cli",
            "run or remove a whole lab cluster (API, LAN, kubelets)",
        ),
    },
}


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    module_name: str,
    help_text: str,
) -> None:
    module = cast(CommandModule, importlib.import_module(module_name))
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    module.configure(parser)
    parser.set_defaults(_run=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ironlb", description="Bare-metal Layer-4 LoadBalancer for Kubernetes"
    )
    parser.add_argument("--version", action="version", version=f"ironlb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        if isinstance(entry, tuple):
            _add(commands, name, *entry)
            continue
        group = commands.add_parser(name, help=f"{name} commands")
        group_commands = group.add_subparsers(dest=f"{name}_command", required=True)
        for sub_name, sub_entry in entry.items():
            _add(group_commands, sub_name, *sub_entry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
