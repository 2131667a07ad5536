"""Run the ironlb image with Debian's podman the way this machine needs it.

What was measured here (docs/design.md "Container image"): podman 4.3 needs
``--runtime runc`` (crun fails on the kernel's hybrid cgroups) and rlimits
lower than the host's (raising them is refused). A container never gets
podman's default bridge network, which would turn on IPv4 forwarding in the
root namespace: it joins a lab namespace (``--network ns:...``) or has none.

:func:`build` builds (or reuses) the image through ``make image``, the path a
user takes; :func:`run` runs one command to completion; :func:`detached`
keeps a long-running container (a speaker, a controller) for the length of a
``with`` block and removes it afterwards, also when the block fails.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/ironlb:dev"
BASE_OPTS = (
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
)
#: The speaker's confinement, as the chart runs it: root, two capabilities, no writes.
SPEAKER_OPTS = (
    "--user",
    "0",
    "--cap-drop",
    "all",
    "--cap-add",
    "NET_ADMIN,NET_RAW",
    "--read-only",
)


def build() -> str:
    """``make image`` in the repository; returns the image id it prints (64 hex digits).

    Raises ``AssertionError`` with the end of the build's output when it fails."""
    done = subprocess.run(
        ["nice", "-n", "10", "make", "-s", "image", f"WHEEL_PY={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = done.stdout.split()
    assert done.returncode == 0 and lines, (
        f"make image failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}"
    )
    return lines[-1]


def podman(
    *argv: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """One podman command; ``check`` raises ``AssertionError`` with its stderr on failure."""
    done = subprocess.run(
        ["podman", *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert done.returncode == 0, f"podman {' '.join(argv)}: {done.stderr.strip()}"
    return done


def run(
    *argv: str, network: str = "none", opts: Sequence[str] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``argv`` in a fresh container of :data:`IMAGE` (removed afterwards); not checked."""
    return podman(
        "run",
        "--rm",
        *BASE_OPTS,
        "--network",
        network,
        *opts,
        IMAGE,
        *argv,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def detached(
    *argv: str, netns: str, opts: Sequence[str] = (), mounts: Sequence[tuple[Path, str]] = ()
) -> Iterator[str]:
    """``argv`` in a detached container in the lab namespace ``netns``; yields its name.

    ``mounts`` are (host file, container path) pairs, mounted read-only. The
    container is removed (``podman rm -f``) when the block ends, however it ends."""
    name = f"ironlb-test-{secrets.token_hex(4)}"
    volumes = [a for host, inside in mounts for a in ("-v", f"{host}:{inside}:ro")]
    try:
        podman(
            "run",
            "-d",
            "--name",
            name,
            *BASE_OPTS,
            "--network",
            f"ns:/var/run/netns/{netns}",
            *volumes,
            *opts,
            IMAGE,
            *argv,
        )
        yield name
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def logs(name: str) -> str:
    """What the container wrote so far (stdout and stderr together)."""
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


def host_pid(name: str) -> int:
    """The host pid of the container's first process."""
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
