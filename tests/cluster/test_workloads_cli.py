"""`ironlb lab controllers` as a process: registers nodes, runs until SIGTERM, and refuses
bad arguments with one line."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from ironlb.lab.apiserver import ServerThread
from tests.cluster.test_apiserver_cli import ironlb_command
from tests.cluster.workload_helpers import Json
from tests.support import wait_for

pytestmark = pytest.mark.cluster


def _controllers(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ironlb_command(), "lab", "controllers", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_cli_registers_nodes_makes_pods_and_stops_on_sigterm(
    api_thread: ServerThread, api_thread_kubeconfig: Path
) -> None:
    api = Json(api_thread.url)
    process = _controllers("--kubeconfig", str(api_thread_kubeconfig), "--nodes", "2")
    try:
        wait_for(
            lambda: (
                [n["metadata"]["name"] for n in api.items("/api/v1/nodes")] == ["node1", "node2"]
            ),
            what="node1 and node2 registered",
        )
        api.call(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "x"}]},
                    },
                },
            },
        )
        pods = wait_for(
            lambda: (
                [p for p in api.pods("web-") if p["spec"].get("nodeName")][1:] and api.pods("web-")
            ),
            what="2 scheduled pods",
        )
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node2"]
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "lab controllers running (nodes: node1 node2)" in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--nodes", "0"], 2, "--nodes must be 1..89, got 0"),
        (["--nodes-from-prefix", "nolab"], 2, "no namespaces nolab-nodeN: is the lab up?"),
        (["--nodes-from-prefix", "Bad-Prefix"], 2, "invalid lab prefix 'Bad-Prefix'"),
    ],
)
def test_cli_refuses_bad_node_arguments(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    process = _controllers("--kubeconfig", str(tmp_path / "unused"), *args)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == code
    assert err.count("\n") == 1 and message in err, err


def test_cli_refuses_a_missing_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    process = _controllers("--kubeconfig", str(missing))
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert err == (
        f"ironlb lab controllers: cannot read the kubeconfig {missing}: No such file or directory\n"
    )


def test_cli_refuses_a_kubeconfig_without_server(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
    )
    process = _controllers("--kubeconfig", str(broken))
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert err == f"ironlb lab controllers: the kubeconfig {broken}: context 'x' names no server\n"


def test_cli_exits_with_one_line_when_the_api_is_unreachable(tmp_path: Path) -> None:
    from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
    from tests.support import free_port

    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, f"http://127.0.0.1:{free_port()}")
    process = _controllers("--kubeconfig", str(kubeconfig), "--nodes", "1")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("ironlb lab controllers: POST /api/v1/nodes: "), err
    assert "Traceback" not in err
