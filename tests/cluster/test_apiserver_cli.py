"""`ironlb lab apiserver` as a process: serves, writes a kubeconfig, exits 0 on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support import free_port, wait_for

pytestmark = pytest.mark.cluster


def ironlb_command() -> list[str]:
    script = Path(sys.executable).parent / "ironlb"
    if script.exists():
        return [str(script)]
    found = shutil.which("ironlb")
    return [found] if found else [sys.executable, "-m", "ironlb.cli"]


def wait_written(path: Path, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Until ``path`` exists; fails at once (with its output) if ``process`` exits first."""

    def written() -> bool:
        assert process.poll() is None, process.communicate()
        return path.exists()

    wait_for(written, timeout, what=f"{path} to be written")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signal(tmp_path: Path, signum: signal.Signals) -> None:
    kubeconfig = tmp_path / "kube" / "config"
    port = free_port()
    process = subprocess.Popen(
        [
            *ironlb_command(),
            "lab",
            "apiserver",
            "--port",
            str(port),
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_written(kubeconfig, process)
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        assert configuration.host == f"http://127.0.0.1:{port}"
        with client.ApiClient(configuration) as api:
            names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
        assert "default" in names
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert f"http://127.0.0.1:{port}" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_cli_port_in_use_fails_cleanly(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *ironlb_command(),
                "lab",
                "apiserver",
                "--port",
                str(port),
                "--kubeconfig",
                str(tmp_path / "kc"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "cannot serve" in result.stderr
    assert not (tmp_path / "kc").exists()
