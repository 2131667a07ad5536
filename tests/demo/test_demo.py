"""``make demo`` end to end: ``python -m ironlb.lab.demo`` as a user runs it, then nothing left.

Each test runs the real demo as a subprocess (root: it builds the lab's
network namespaces) with its own prefix and state directory, reads what it
printed, and checks the machine afterwards: no ``<prefix>-*`` namespace, no
process working in the state directory or naming the prefix, the root
namespace's nftables tables and addresses as they were. Whatever happens, the
``finally`` blocks kill the demo and remove its namespaces.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironlb.lab.netlab.lab import cleanup_stale
from ironlb.lab.netlab.nsutil import list_netns

pytestmark = pytest.mark.root

TREE = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240  # seconds; the demo takes about 20 s here
MAC = r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}"


def _ours_in_root() -> list[str]:
    """nftables tables named ironlb and lab addresses (198.18/198.19) in the root namespace.

    Only what the demo could leave: other programs on this machine may change
    the root namespace meanwhile.
    """
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    return [t for t in tables.stdout.splitlines() if "ironlb" in t] + [
        a for a in addrs.stdout.splitlines() if re.search(r"inet 198\.1[89]\.", a)
    ]


def _processes_of(prefix: str, state: Path) -> list[str]:
    """Processes whose cwd is under ``state`` or whose command line names ``prefix-``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if f"{prefix}-" in cmdline or cwd.startswith(str(state)):
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


@pytest.fixture
def run_ids(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fresh prefix and state directory; the namespaces are removed afterwards, always."""
    prefix = "ilbdemo" + secrets.token_hex(2)
    yield prefix, tmp_path / "state"
    cleanup_stale(prefix)


def _demo(prefix: str, state: Path, session: bool = False) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(TREE), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "ironlb.lab.demo", "--prefix", prefix, "--dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=TREE,
        start_new_session=session,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def _section(output: str, number: int) -> str:
    """The lines the demo printed under ``=== N.`` up to the next step."""
    match = re.search(rf"^=== {number}\..*?(?=^=== \d+\.)", output, re.M | re.S)
    assert match, f"no step {number} in the output:\n{output}"
    return match.group(0)


def _assert_nothing_left(prefix: str, state: Path, before: list[str]) -> None:
    assert list_netns(prefix) == []
    assert _processes_of(prefix, state) == []
    assert _ours_in_root() == before


def test_the_demo_shows_round_robin_arp_and_failover_then_leaves_nothing(
    run_ids: tuple[str, Path],
) -> None:
    prefix, state = run_ids
    before = _ours_in_root()
    started = time.monotonic()
    proc = _demo(prefix, state)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        _stop(proc)
    took = time.monotonic() - started
    assert proc.returncode == 0, output
    assert took < 120, f"the demo took {took:.0f} s"
    # Step 2: the chart, with each lab override explained on its own line.
    install = _section(output, 2)
    assert "$ helm install ironlb charts/ironlb" in install
    assert re.search(r"^ironlb: revision 1, deployed, chart ironlb-", install, re.M)
    for key in ("image.repository=ironlb", "image.tag=dev", "webhook.enabled=false"):
        assert re.search(rf"^    {re.escape(key)}: \S", install, re.M), key
    # Step 3: the Service got an address from the pool, shown by kubectl.
    service = _section(output, 3)
    assert re.search(r"^web\s+LoadBalancer\s+\S+\s+198\.18\.0\.20\d\s", service, re.M), service
    # Step 4: six curls, answered round-robin by three distinct pods; one MAC on ARP.
    traffic = _section(output, 4)
    answers = re.findall(r"^(web-[a-z0-9]+-[a-z0-9]+) \S+:\d+$", traffic, re.M)
    assert len(answers) == 6, traffic
    assert len(set(answers)) == 3
    assert answers[:3] == answers[3:], f"not round-robin: {answers}"
    macs = set(re.findall(rf"bytes from ({MAC})", traffic))
    assert len(macs) == 1, traffic
    announcer = re.search(
        rf"one MAC answers ARP for \S+: {MAC}, the LAN interface of (node\d)", traffic
    )
    assert announcer, traffic
    # Step 5: the kill, answers through another node afterwards, a measured gap.
    failover = _section(output, 5)
    assert f"the speaker process on {announcer.group(1)}" in failover
    vias = re.findall(r"request\(s\) answered through (node\d)", failover)
    assert vias[0] == announcer.group(1), failover
    assert any(v != announcer.group(1) for v in vias[1:]), failover
    gap = re.search(r"the longest gap between two answers was (\d+) ms", failover)
    assert gap, failover
    assert 0 < int(gap.group(1)) < 10_000
    assert "$ lbctl status" in failover
    assert "$ lbctl services" in failover
    assert re.search(r"^default\s+web\s+198\.18\.0\.20\d\s+demo\s+node\d", failover, re.M)
    # Step 6: torn down, and the demo's own look at what is left finds nothing.
    teardown = output[output.index("=== 6. Tearing down") :]
    assert teardown.count("(nothing)") == 3, teardown
    assert "processes of the lab left: none" in teardown
    assert f"--> nothing is left: no {prefix}-* namespace" in teardown
    _assert_nothing_left(prefix, state, before)


@pytest.mark.parametrize(
    ("sig", "group", "at", "code"),
    [
        # Ctrl-C: a terminal signals the whole foreground process group (the demo and
        # the command it runs); here once the chart's pods run.
        (signal.SIGINT, True, "=== 3.", 130),
        # SIGTERM to the demo alone, while the client loop runs in the client host.
        (signal.SIGTERM, False, "=== 5.", 143),
    ],
)
def test_a_signal_in_the_middle_tears_everything_down(
    run_ids: tuple[str, Path], sig: signal.Signals, group: bool, at: str, code: int
) -> None:
    prefix, state = run_ids
    before = _ours_in_root()
    proc = _demo(prefix, state, session=True)
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + RUN_TIMEOUT
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(at) or time.monotonic() > deadline:
                break
        assert seen and seen[-1].startswith(at), "".join(seen)
        assert list_netns(prefix) != []
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=90)
    finally:
        _stop(proc)
    assert proc.returncode == code, "".join(seen) + rest
    assert f"got {sig.name}: stopping and tearing down" in rest
    assert "=== 6. Tearing down" in rest
    _assert_nothing_left(prefix, state, before)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--prefix", "Bad-1"],
            {},
            "demo failed: invalid lab prefix 'Bad-1': use 1-24 lower-case letters and digits, "
            "no '-'",
        ),
        (
            [],
            {"PATH": "/nonexistent"},
            "demo failed: missing command kubectl: install kubectl (1.32 is tested) on PATH; "
            "curl: apt-get install curl (make demo does); arping: apt-get install arping "
            "(make demo does); ip: apt-get install iproute2 (make demo does)",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_starts(
    args: list[str], env: dict[str, str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ironlb.lab.demo", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(TREE), **env),
        cwd=TREE,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == message
    # Nothing printed on stdout: step 0 (the lab cluster) never started.
    assert proc.stdout == ""
