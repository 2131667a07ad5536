"""``ironlb speaker`` refuses to start with one clear line when something is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

IRONLB = [sys.executable, "-m", "ironlb.cli"]


def run(*args: str, kubeconfig: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("NODE_NAME", None)
    return subprocess.run(
        [*IRONLB, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_missing_node_name_and_kubeconfig_are_one_line_errors(tmp_path: Path) -> None:
    out = run("speaker", kubeconfig=str(tmp_path / "none"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "ironlb speaker: no node name: pass --node-name or set NODE_NAME (the downward API)"
    ]
    out = run("speaker", "--node-name", "node1", kubeconfig=str(tmp_path / "none"))
    assert out.returncode == 2
    assert out.stderr.strip().endswith("No such file or directory")
    assert len(out.stderr.strip().splitlines()) == 1
    out = run("controller", kubeconfig=str(tmp_path / "none"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_missing_secret_names_it_and_how_to_create_it(api_thread_kubeconfig: Path) -> None:
    out = run("speaker", "--node-name", "node1", kubeconfig=str(api_thread_kubeconfig))
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ironlb speaker: Secret ironlb-system/ironlb-heartbeat not found")
    assert "kubectl -n ironlb-system create secret generic ironlb-heartbeat" in last
