"""The demo's client loop against a real podserver on loopback: answers, gaps, refusals.

No root needed: the probe and the lab podserver run as plain subprocesses on
127.0.0.1; the gap is made by stopping the podserver for a while and starting
it again on the same port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.demo_probe import Tally, parse_answer, via_node
from tests.support import free_port

TREE = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(TREE))


@contextmanager
def podserver(name: str, port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ironlb.lab.podserver",
            "--name",
            name,
            "--tcp",
            str(port),
            "--udp",
            str(free_port(kind=2)),
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"ready {name}")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def probe(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ironlb.lab.demo_probe",
            "127.0.0.1",
            str(port),
            "--interval",
            "0.02",
            "--timeout",
            "0.2",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate("", timeout=10)  # closing stdin stops the loop
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def test_a_steady_server_answers_every_request_with_small_gaps() -> None:
    port = free_port()
    with podserver("pod-a", port):
        loop = probe(port)
        try:
            time.sleep(0.6)
        finally:
            result = finish(loop)
    assert result["failed"] == 0
    assert result["answered"] == result["requests"]
    assert isinstance(result["requests"], int) and result["requests"] >= 10
    assert result["pods"] == {"pod-a": result["answered"]}
    assert result["timeline"] == [
        {
            "via": "127.0.0.1",
            "from_ms": 0.0,
            "to_ms": result["timeline"][0]["to_ms"],
            "n": result["answered"],
        }
    ]
    assert isinstance(result["longest_gap_ms"], float) and result["longest_gap_ms"] < 200


def test_a_server_down_for_half_a_second_shows_as_the_gap_and_a_failed_run() -> None:
    port = free_port()
    with podserver("pod-a", port):
        loop = probe(port)
        time.sleep(0.4)
    try:
        down = time.monotonic()
        time.sleep(0.5)
        with podserver("pod-b", port):
            up = time.monotonic()
            time.sleep(0.4)
            result = finish(loop)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    runs = [(r["via"], r["n"]) for r in result["timeline"]]
    assert [via for via, _ in runs] == ["127.0.0.1", "failed", "127.0.0.1"], runs
    assert result["failed"] == runs[1][1] > 0
    assert set(result["pods"]) == {"pod-a", "pod-b"}
    gap = result["longest_gap_ms"]
    assert isinstance(gap, float)
    assert (up - down) * 1000 - 50 < gap < (up - down) * 1000 + 1000


def test_bad_arguments_are_refused_in_one_line() -> None:
    for args in (["--interval", "0"], ["--timeout", "-1"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ironlb.lab.demo_probe", "127.0.0.1", "80", *args],
            capture_output=True,
            text=True,
            env=ENV,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        assert proc.returncode == 2
        assert proc.stderr.splitlines()[-1] == (
            "demo_probe: error: --interval and --timeout must be positive"
        )
        assert proc.stdout == ""


@pytest.mark.parametrize(
    ("peer", "node"),
    [
        ("198.18.0.13:40000", "node3"),  # the proxy on node3 connected from its LAN address
        ("198.19.2.1:5000", "node2"),  # a pod on node2 itself sees its gateway
        ("198.18.0.1:1234", "198.18.0.1"),  # the client (no node in between)
        ("198.19.2.11:80", "198.19.2.11"),  # a pod address is not a node
        ("[fd00:198:18::13]:80", "[fd00:198:18::13]"),
        ("", "?"),
    ],
)
def test_via_node_reads_the_lab_layout(peer: str, node: str) -> None:
    assert via_node(peer) == node


def test_parse_answer_takes_only_a_200_with_a_body() -> None:
    ok = b"HTTP/1.0 200 OK\r\nContent-Length: 22\r\n\r\nweb-1 198.18.0.13:4000\n"
    assert parse_answer(ok) == ("web-1", "198.18.0.13:4000")
    assert parse_answer(b"HTTP/1.0 503 Service Unavailable\r\n\r\nweb-1 x\n") is None
    assert parse_answer(b"web-1 198.18.0.13:4000\n") is None  # not HTTP
    assert parse_answer(b"HTTP/1.0 200 OK\r\n\r\n") is None  # no body
    assert parse_answer(b"") is None


def test_tally_merges_runs_and_measures_gaps_between_answers() -> None:
    tally = Tally()
    for now, pod, via in [
        (10.0, "a", "node1"),
        (10.1, "b", "node1"),
        (10.2, None, ""),
        (10.3, None, ""),
        (10.7, "c", "node2"),
    ]:
        tally.record(now, pod, via)
    summary = tally.summary()
    assert summary["longest_gap_ms"] == 600.0
    assert summary["timeline"] == [
        {"via": "node1", "from_ms": 0.0, "to_ms": 100.0, "n": 2},
        {"via": "failed", "from_ms": 200.0, "to_ms": 300.0, "n": 2},
        {"via": "node2", "from_ms": 700.0, "to_ms": 700.0, "n": 1},
    ]
    assert (summary["requests"], summary["answered"], summary["failed"]) == (5, 3, 2)
