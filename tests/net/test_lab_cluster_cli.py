"""``ironlb lab cluster up --detach`` / ``down`` as a user runs them, kubectl included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironlb.lab.netlab.nsutil import list_netns
from ironlb.lab.netlab.plan import random_prefix
from tests.support import wait_for

pytestmark = pytest.mark.root

CLI = [sys.executable, "-m", "ironlb.cli", "lab", "cluster"]
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {
        "nodeName": "node2",
        "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}],
    },
}


def _cli(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[str]:
    name = random_prefix()
    try:
        yield name
    finally:
        _cli("down", "--prefix", name, "--dir", str(tmp_path / "state"))
        assert list_netns(name) == []


def _kubectl(kubeconfig: str, *argv: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def _up(prefix: str, state: Path) -> dict[str, object]:
    res = _cli("up", "--detach", "--nodes", "2", "--prefix", prefix, "--dir", str(state))
    assert res.returncode == 0, res.stderr
    assert f"export KUBECONFIG={state}/kubeconfig" in res.stdout
    assert f"ip netns exec {prefix}-client curl" in res.stdout
    assert f"ironlb lab cluster down --prefix {prefix} --dir {state}" in res.stdout
    found: dict[str, object] = json.loads((state / "state.json").read_text())
    return found


def _web_pid(kubeconfig: str) -> tuple[int, str]:
    """Create the web Pod with kubectl; wait until Ready; its pid and address."""
    _kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(POD))

    def ready() -> tuple[int, str] | None:
        out = _kubectl(kubeconfig, "get", "pod", "web", "-o", "json")
        status = json.loads(out).get("status") or {}
        ok = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        if not ok:
            return None
        cid = status["containerStatuses"][0]["containerID"]
        return int(cid.removeprefix("lab://")), status["podIP"]

    found = wait_for(ready, timeout=30, what="web pod Ready")
    assert found is not None
    return found


def test_up_detached_serves_pods_and_down_leaves_nothing(prefix: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    info = _up(prefix, state)
    kubeconfig = str(info["kubeconfig"])
    supervisor = int(str(info["pid"]))
    nodes = _kubectl(kubeconfig, "get", "nodes", "-o", "name").split()
    assert nodes == ["node/node1", "node/node2"]
    pod_pid, pod_ip = _web_pid(kubeconfig)
    curl = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            f"{prefix}-client",
            "curl",
            "-s",
            "-m",
            "5",
            f"http://{pod_ip}:8080/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert curl.stdout.startswith("web 198.18.0.1:"), curl
    # A second `up` with the same prefix is refused and changes nothing.
    again = _cli("up", "--detach", "--prefix", prefix, "--dir", str(tmp_path / "other"))
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"ironlb lab cluster: lab prefix {prefix!r} is in use (namespaces: "
        f"{', '.join(list_netns(prefix))}); remove them with "
        f"`ironlb lab cluster down --prefix {prefix}`"
    )
    assert _alive(supervisor) and _alive(pod_pid)

    res = _cli("down", "--prefix", prefix, "--dir", str(state))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"stopped pid {supervisor}, ")
    assert list_netns(prefix) == []
    assert not _alive(supervisor) and not _alive(pod_pid)
    assert not state.exists()


def test_down_cleans_up_after_a_crashed_up(prefix: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    info = _up(prefix, state)
    supervisor = int(str(info["pid"]))
    pod_pid, _ = _web_pid(str(info["kubeconfig"]))
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not _alive(supervisor), what="supervisor gone")
    assert _alive(pod_pid) and list_netns(prefix)  # left behind by the crash

    res = _cli("down", "--prefix", prefix, "--dir", str(state))
    assert res.returncode == 0, res.stderr
    assert list_netns(prefix) == []
    assert not _alive(pod_pid)
    assert not state.exists()


def test_cluster_refusals_are_one_line() -> None:
    bad = _cli("up", "--prefix", "Bad-Prefix")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("ironlb lab cluster: invalid lab prefix 'Bad-Prefix'")
    nodes = _cli("up", "--nodes", "0", "--prefix", random_prefix())
    assert (nodes.returncode, nodes.stderr.strip()) == (
        2,
        "ironlb lab cluster: nodes must be 1..89, got 0",
    )


def test_down_never_signals_a_pid_that_is_no_longer_the_cluster(
    prefix: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # A stale state file whose pid now belongs to another process (this test's).
    forged = {"prefix": prefix, "pid": os.getpid(), "start_ticks": 1}
    (state / "state.json").write_text(json.dumps(forged))
    res = _cli("down", "--prefix", prefix, "--dir", str(state))
    assert (res.returncode, res.stdout.strip()) == (0, "removed 0 namespace(s): -")
    assert not state.exists()
