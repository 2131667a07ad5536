"""``ironlb controller``, ``speaker`` and ``forward`` take the same logging flags and
write the same JSON keys (issue 8: they used to differ in both)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port

pytestmark = [pytest.mark.cluster]

IRONLB = [sys.executable, "-m", "ironlb.cli"]
KEYS = ["ts", "level", "logger", "process", "msg"]


def ironlb_lines(
    args: list[str], kubeconfig: Path, log: Path, *, until: str, timeout: float = 60
) -> list[str]:
    """Run ``ironlb *args`` until a stderr line contains ``until`` (or it exits); its lines."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("NODE_NAME", None)
    with log.open("w") as out:
        proc = subprocess.Popen([*IRONLB, *args], stderr=out, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert until in text, text
    return text.splitlines()


def json_records(lines: list[str]) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, lines
    return records


def forward_config(tmp_path: Path) -> Path:
    config = tmp_path / "lb.yaml"
    port = free_port()
    config.write_text(
        f"listeners:\n  - address: 127.0.0.1\n    port: {port}\n"
        f"    backends: [127.0.0.1:{free_port()}]\n"
    )
    return config


def cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Per CLI: its arguments and a line it logs early."""
    return {
        # No ironlb-system namespace in a fresh API: the elector says so (an error line).
        "controller": (["controller", "--identity", "c1"], "does not exist"),
        # No heartbeat Secret: the speaker logs that it starts, then refuses in one line.
        "speaker": (["speaker", "--node-name", "n1"], "ironlb speaker starting"),
        "forward": (
            ["forward", "--config", str(forward_config(tmp_path)), "--workers", "1"],
            "all workers are serving",
        ),
    }


@pytest.mark.timeout(180)
def test_every_cli_writes_the_same_json_keys(api_thread_kubeconfig: Path, tmp_path: Path) -> None:
    seen: dict[str, list[str]] = {}
    for name, (args, needle) in cases(tmp_path).items():
        lines = ironlb_lines(
            [*args, "--log-format", "json", "--log-level", "info"],
            api_thread_kubeconfig,
            tmp_path / f"{name}.log",
            until=needle,
        )
        records = json_records(lines)
        ours = [r for r in records if r["logger"].startswith("ironlb")]
        assert ours, records
        for record in records:
            assert list(record)[:5] == KEYS, record
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
            assert record["level"] in ("debug", "info", "warning", "error", "critical")
        seen[name] = list(ours[0])[:5]
    assert seen == {name: KEYS for name in ("controller", "speaker", "forward")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "flags",
    [
        ["--log-format", "text", "--log-level", "debug"],
        ["--log-format", "plain", "--verbose"],  # the controller's old spelling still works
    ],
)
def test_controller_text_lines_and_level(
    api_thread_kubeconfig: Path, tmp_path: Path, flags: list[str]
) -> None:
    lines = ironlb_lines(
        ["controller", "--identity", "c1", *flags],
        api_thread_kubeconfig,
        tmp_path / "controller.log",
        until="does not exist",
    )
    line = next(line for line in lines if "does not exist" in line)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.match(stamp + r" ERROR ironlb\.\S+ \[controller\]: ", line), line
    assert any(" DEBUG " in line for line in lines), lines  # debug level took effect


def test_a_bad_log_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for cli in ("controller", "speaker", "forward"):
        out = subprocess.run(
            [*IRONLB, cli, "--log-level", "loud"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2, (cli, out.stderr)
        assert "--log-level" in out.stderr.strip().splitlines()[-1]
        assert "Traceback" not in out.stderr
