"""Command-line adapter for `ironlb ... net` (arguments and start-up only)."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    print("ironlb net: not available in this build yet", file=sys.stderr)
    return 2
