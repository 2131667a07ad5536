"""`ironlb lab apiserver` as a process: serves, writes a kubeconfig, exits 0 on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config

pytestmark = pytest.mark.cluster


def ironlb_command() -> list[str]:
    script = Path(sys.executable).parent / "ironlb"
    if script.exists():
        return [str(script)]
    found = shutil.which("ironlb")
    return [found] if found else [sys.executable, "-m", "ironlb.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no kubeconfig written"
        time.sleep(0.05)


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
        wait_for(kubeconfig, process)
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
