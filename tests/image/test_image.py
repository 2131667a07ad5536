"""The built image: both entry points, the labels, who runs, and what is not in it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ironlb import __version__

from . import podman

# slow: a cold `make image` (debootstrap, wheels, two apt runs) takes over a minute.
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]


def test_make_image_prints_the_id_and_a_second_run_reuses_base_and_layers(image: str) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", image), image
    tags = podman.podman("image", "inspect", "--format", "{{json .RepoTags}}", image).stdout
    assert {"localhost/ironlb:dev", f"localhost/ironlb:{__version__}"} <= set(json.loads(tags))
    base = podman.podman(
        "image", "inspect", "--format", "{{.Id}}", "localhost/ironlb-base:bookworm"
    )
    assert podman.build() == image  # nothing changed: the same image, the base cached
    again = podman.podman(
        "image", "inspect", "--format", "{{.Id}}", "localhost/ironlb-base:bookworm"
    )
    assert again.stdout == base.stdout


def test_both_entry_points_report_the_project_version(image: str) -> None:
    out = podman.run("ironlb", "--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"ironlb {__version__}"), out.stderr
    out = podman.run("lbctl", "--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"lbctl (ironlb) {__version__}"), out.stderr


def test_default_command_is_the_help_and_the_labels_name_version_source_licence(
    image: str,
) -> None:
    out = podman.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ironlb"), out.stdout
    assert "speaker" in out.stdout and "controller" in out.stdout
    labels = json.loads(
        podman.podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout
    )
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"]
    # The commit built from, also when every layer came from the cache.
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=podman.ROOT, capture_output=True, text=True, check=True
    )
    assert labels["org.opencontainers.image.revision"] == head.stdout.strip()


def test_the_default_user_is_ironlb_65532_and_the_speaker_user_is_root(image: str) -> None:
    out = podman.run("sh", "-c", "id -u; id -g; id -un")
    assert out.stdout.split() == ["65532", "65532", "ironlb"], out.stdout + out.stderr
    out = podman.run("id", "-u", opts=podman.SPEAKER_OPTS)
    assert out.stdout.strip() == "0", out.stderr
    # Confined as the speaker is: its capability sets hold exactly NET_ADMIN and NET_RAW.
    out = podman.run("sh", "-c", "grep ^CapEff /proc/self/status", opts=podman.SPEAKER_OPTS)
    caps = int(out.stdout.split()[1], 16)
    assert caps == (1 << 12) | (1 << 13), out.stdout  # CAP_NET_ADMIN=12, CAP_NET_RAW=13
    out = podman.run("touch", "/opt/ironlb/x", opts=podman.SPEAKER_OPTS)
    assert out.returncode != 0 and "Read-only file system" in out.stderr, out


def test_no_compiler_no_pip_no_caches_and_libnftables_loads(image: str) -> None:
    probe = (
        "import ctypes, importlib.util, os, shutil;"
        "print(json.dumps({"
        "'compilers': [c for c in ('cc', 'gcc', 'clang', 'make') if shutil.which(c)],"
        "'pip': importlib.util.find_spec('pip') is not None,"
        "'caches': [p for p in ('/root/.cache', '/wheels', '/var/lib/apt/lists/partial')"
        " if os.path.exists(p)] + os.listdir('/var/lib/apt/lists'),"
        "'nft': bool(ctypes.CDLL('libnftables.so.1').nft_ctx_new)}))"
    )
    out = podman.run("python3", "-c", "import json;" + probe)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"compilers": [], "pip": False, "caches": [], "nft": True}
