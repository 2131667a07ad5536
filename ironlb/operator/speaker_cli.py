"""Command-line adapter for ``ironlb speaker`` (not built yet: it says so)."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    print(
        "ironlb speaker: not implemented yet (next milestone: membership, per-VIP election, "
        "failover, endpoints into the forwarder). For one host today, run "
        "'ironlb forward --config FILE' with an 'announce' section.",
        file=sys.stderr,
    )
    return 2
