"""Running ``ironlb forward`` inside a lab host from the network tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ironlb.lab.netlab import Lab, LabHost

IRONLB = str(Path(sys.executable).with_name("ironlb"))


def start_forward(lab: Lab, host: LabHost, config: Path, *extra: str) -> subprocess.Popen[str]:
    """Start ``ironlb forward --config CONFIG --workers 1 [extra]`` on ``host``; its
    stderr is a text pipe (read it with ``communicate``), stdout is discarded."""
    return lab.popen(
        host,
        IRONLB,
        "forward",
        "--config",
        str(config),
        "--workers",
        "1",
        *extra,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def forward_without_capability(
    lab: Lab, host: LabHost, capability: str, config: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``ironlb forward`` on ``host`` with ``capability`` (e.g. ``net_raw``)
    dropped from its inheritable and bounding sets; returns when it exits."""
    return lab.run(
        host,
        "setpriv",
        f"--inh-caps=-{capability}",
        f"--bounding-set=-{capability}",
        IRONLB,
        "forward",
        "--config",
        str(config),
        "--workers",
        "1",
        check=False,
        timeout=30,
    )
