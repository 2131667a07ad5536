"""Run whichever ``arping`` the host has: Debian's ``arping`` (Thomas Habets) or iputils'.

``make test`` installs Debian's ``arping`` only when no ``arping`` is on the
PATH, because the two packages conflict and a user may rely on
``iputils-arping``. The flavours differ in flags (Habets: ``-i IFACE``, ``-C N``
to stop after N replies; iputils: ``-I IFACE``, ``-f`` to stop after the first)
and in output (Habets: ``60 bytes from aa:bb:... (IP)``; iputils: ``Unicast
reply from IP [AA:BB:...]``). :func:`arping_args` builds the command line and
:func:`reply_macs` reads the answering MACs from either.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

__all__ = ["arping_args", "arping_flavour", "reply_macs"]

_MAC = re.compile(r"(?<![0-9a-f:])([0-9a-f]{2}(?::[0-9a-f]{2}){5})(?![0-9a-f:])")


@functools.cache
def arping_flavour() -> str:
    """``"habets"`` or ``"iputils"``; raises ``FileNotFoundError`` when there is no arping."""
    if shutil.which("arping") is None:
        raise FileNotFoundError("no arping on PATH (make sys-deps installs Debian's arping)")
    out = subprocess.run(["arping", "--help"], capture_output=True, text=True, check=False)
    return "habets" if "Habets" in out.stdout + out.stderr else "iputils"


def arping_args(
    target: str, *, iface: str = "eth0", count: int = 2, deadline: float = 3, first: bool = False
) -> list[str]:
    """The argv for ``count`` ARP requests to ``target`` on ``iface``, giving up after
    ``deadline`` seconds; with ``first`` it exits (0) at the first reply."""
    if arping_flavour() == "habets":
        args = ["arping", "-c", str(count), "-w", str(deadline), "-i", iface]
        return [*args, *(["-C", "1"] if first else []), target]
    args = ["arping", "-c", str(count), "-w", str(int(deadline + 0.999)), "-I", iface]
    return [*args, *(["-f"] if first else []), target]


def reply_macs(stdout: str) -> list[str]:
    """The distinct MACs (lower case, sorted) that answered, from arping's output."""
    macs = set()
    for line in stdout.lower().splitlines():
        if "from" in line:
            macs.update(_MAC.findall(line))
    return sorted(macs)
