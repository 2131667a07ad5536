"""The ``lbctl`` entry point."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    print("lbctl: not available in this build yet", file=sys.stderr)
    return 2
