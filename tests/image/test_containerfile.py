"""The Containerfile's defaults, checked without building (no root needed).

A `docker build` on another machine takes the defaults as written, so they
must agree with the project: the version label with ``ironlb.__version__``,
the base with the Debian release the lock file is tested with (bookworm's
Python 3.11), and the build context (``.dockerignore``) must hold what the
file copies.
"""

from __future__ import annotations

import re
from pathlib import Path

from ironlb import __version__

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Containerfile").read_text()


def arg_default(name: str) -> str:
    found: list[str] = re.findall(rf"^ARG {name}=(\S+)$", TEXT, flags=re.M)
    assert len(found) == 1, f"ARG {name}: {found}"
    return found[0]


def test_the_version_default_is_the_project_version() -> None:
    assert arg_default("VERSION") == __version__


def test_the_base_is_bookworm_slim_and_both_stages_use_it() -> None:
    assert arg_default("BASE") == "debian:bookworm-slim"
    assert re.findall(r"^FROM (\S+)", TEXT, flags=re.M) == ["${BASE}", "${BASE}"]
    lock_header = (ROOT / "requirements.lock").read_text().splitlines()[1]
    assert "Python 3.11" in lock_header  # bookworm's python3 is 3.11


def test_the_build_context_keeps_what_the_file_copies() -> None:
    keep = {
        line[1:]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {arg_default("WHEELS")} | set(re.findall(r"^COPY ([^-\s]\S*) /", TEXT, flags=re.M))
    copied.discard("${WHEELS}")
    assert copied == keep


def test_the_default_user_is_65532_and_the_default_command_is_the_help() -> None:
    assert re.findall(r"^USER (\S+)$", TEXT, flags=re.M) == ["65532:65532"]
    assert re.findall(r"^CMD (.+)$", TEXT, flags=re.M) == ['["ironlb", "--help"]']
