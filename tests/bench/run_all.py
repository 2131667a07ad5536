"""``make bench``: run every benchmark and write ``docs/benchmarks.md``.

Each benchmark is its own module, run as a subprocess so that one crashing
does not take the others with it; each writes a markdown section to the file
given by ``--out``. This script stitches the sections together under a header
that records the command, the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# (module, section title or None when the module writes its own --out
# section, arguments for a full run, arguments for --quick). Modules with a
# title print their markdown on stdout.
BENCHMARKS: list[tuple[str, str | None, list[str], list[str]]] = [
    (
        "tests.bench.bench_allocator",
        "Pure allocator on a /16: ironlb vs a naive lowest-free scan",
        [],
        ["--sizes", "10000", "--naive-budget", "5"],
    ),
    (
        "tests.bench.bench_controller",
        "Controller through the local Kubernetes API",
        ["--services", "10000"],
        ["--services", "1000"],
    ),
    ("tests.bench.forwarder_bench", None, [], ["--quick"]),
    # Through the lab (client -> node -> backend namespaces); it replaced the
    # loopback kernel-mode benchmark, whose NAT'd and direct connections clashed
    # on 127.0.0.1 (issue 12). About 11 minutes in full.
    ("tests.bench.lab_bench", None, [], ["--quick"]),
    (
        "tests.bench.speaker_bench",
        "Speaker in the lab: failover, rolling restart, planning at scale",
        [],
        ["--trials", "3", "--services", "500", "--changes", "5", "--rounds", "1", "--seconds", "3"],
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke check)")
    parser.add_argument("--only", action="append", default=[], help="module name substring")
    parser.add_argument(
        "--out",
        default=None,
        help="where to write (default: docs/benchmarks.md for a full run; a --quick smoke "
        "run writes to a temporary file, never over the committed numbers)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        if args.quick:
            args.out = str(Path(tempfile.gettempdir()) / "ironlb-bench-quick.md")
        else:
            args.out = str(REPO / "docs" / "benchmarks.md")

    sections: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ironlb-bench-") as tmp:
        for module, title, full_args, quick_args in BENCHMARKS:
            if args.only and not any(part in module for part in args.only):
                continue
            section = Path(tmp) / f"{module}.md"
            cmd = [sys.executable, "-m", module]
            cmd += quick_args if args.quick else full_args
            if title is None:
                cmd += ["--out", str(section)]
            print(f"== {' '.join(cmd[1:])}", flush=True)
            result = subprocess.run(
                cmd, cwd=REPO, check=False, stdout=subprocess.PIPE if title else None, text=True
            )
            if title is not None and result.returncode == 0:
                command = " ".join(["python", *cmd[1:]])
                section.write_text(f"## {title}\n\n`{command}`\n\n{result.stdout}\n")
            if result.returncode != 0 or not section.exists():
                failures.append(module)
                sections.append(f"## {module}\n\nFAILED (exit {result.returncode}).\n")
                continue
            sections.append(section.read_text())

    command = "make bench" if not args.quick else "make bench BENCH_ARGS=--quick"
    header = (
        "# Benchmarks\n\n"
        f"Produced by `{command}` on {datetime.date.today().isoformat()}: "
        f"{os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}.\nThe machine has 2 noisy cores; every number below "
        "is a ratio against a peer run side by side in the same run, never a bare timing.\n\n"
    )
    Path(args.out).write_text(header + "\n".join(sections))
    print(f"wrote {args.out}")
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
