"""The lab benchmark's pure part: counters, windows, the goal check and the markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench._procs import CLK_TCK
from tests.bench._report import Results, Sample
from tests.bench.lab_bench import (
    AXES,
    SUSTAINED,
    TargetInfo,
    closer_note,
    judge,
    machine_busy_seconds,
    parse_proc_counters,
    render,
    window_rates,
)

TARGETS = [
    TargetInfo("direct", "direct", False),
    TargetInfo("haproxy", "HAProxy", True),
    TargetInfo("proxy", "ironlb proxy", True),
    TargetInfo("kernel", "ironlb kernel", False),
]


def _results(kernel_worst_window: float) -> Results:
    """HAProxy and kernel mode on every axis; kernel ahead except where told."""
    res = Results()
    for name, scale in (("direct", 2.0), ("haproxy", 1.0), ("proxy", 0.7), ("kernel", 1.5)):
        res.add(name, "close", Sample(10_000 * scale, p99_ms=2.0, machine_us_per_op=100 / scale))
        res.add(name, "keepalive", Sample(50_000 * scale, p99_ms=1.0))
        res.add(name, "bulk1", Sample(5.0 * scale))
        res.add(name, "bulk4", Sample(6.0 * scale))
        worst = kernel_worst_window if name == "kernel" else 9_000 * scale
        res.add(name, SUSTAINED, Sample(worst, syn_retrans_per_k=12.5, paws_tw_per_k=3.0))
    for name, tw in (("direct", 1.0), ("haproxy", 140.0), ("proxy", 710.0), ("kernel", 5.0)):
        res.samples[(name, "close")][0].time_wait_per_k = tw
    res.samples[("haproxy", "close")][0].cpu_us_per_op = 40.0
    res.samples[("proxy", "close")][0].cpu_us_per_op = 80.0
    return res


def test_proc_counters_parse_this_machines_snmp_file() -> None:
    tcp = parse_proc_counters(Path("/proc/net/snmp").read_text(), "Tcp")
    assert {"ActiveOpens", "AttemptFails", "CurrEstab"} <= set(tcp)
    assert all(isinstance(v, int) for v in tcp.values())


def test_proc_counters_refuse_a_missing_group() -> None:
    with pytest.raises(ValueError, match="no TcpExt counters"):
        parse_proc_counters("Tcp: ActiveOpens\nTcp: 3\n", "TcpExt")


def test_machine_busy_leaves_idle_and_iowait_out() -> None:
    # user nice system idle iowait irq softirq steal
    line = f"cpu  {CLK_TCK} 0 {CLK_TCK} 999999 5000 0 {CLK_TCK} 0 0 0\ncpu0 1 2 3\n"
    assert machine_busy_seconds(line) == pytest.approx(3.0)
    assert machine_busy_seconds(Path("/proc/stat").read_text()) > 0
    with pytest.raises(ValueError, match="not /proc/stat"):
        machine_busy_seconds("intr 1 2 3\n")


def test_window_rates_use_the_measured_window_lengths() -> None:
    assert window_rates([(0.0, 100), (5.0, 600), (10.5, 1150)]) == [100.0, 100.0]
    assert window_rates([(0.0, 1)]) == []
    with pytest.raises(ValueError, match="out of order"):
        window_rates([(0.0, 1), (0.0, 2)])


def test_judge_follows_each_axis_direction() -> None:
    verdicts = judge(_results(kernel_worst_window=3_000), AXES, "kernel", "haproxy")
    by_axis = dict(v.split(": ", 1) for v in verdicts)
    assert by_axis["new conn/s"].endswith("(1.50x): ahead")
    assert by_axis["sustained new conn/s, worst 5 s"].endswith("behind")
    # Lower is better for TIME_WAIT and CPU: 5 vs 140 is ahead.
    assert by_axis["client TIME_WAIT / 1k conns"] == "5 vs 140 (0.04x): ahead"
    assert by_axis["machine CPU µs/conn"].endswith("ahead")


def test_judge_says_even_and_not_measured() -> None:
    res = Results()
    res.add("kernel", "close", Sample(1.0, time_wait_per_k=0.0))
    res.add("haproxy", "close", Sample(2.0, time_wait_per_k=0.0))
    verdicts = judge(res, AXES, "kernel", "haproxy")
    assert "client TIME_WAIT / 1k conns: 0 vs 0 (n/a): even" in verdicts
    assert "keep-alive req/s: n/a vs n/a (n/a): not measured" in verdicts


@pytest.mark.parametrize(("worst", "goal"), [(3_000, "not met** (6 of 7)"), (20_000, "met** (7")])
def test_render_states_the_goal_and_proxy_cpu(worst: float, goal: str) -> None:
    windows = {t.name: [9_000.0, 8_000.0, 10_000.0] for t in TARGETS}
    settings = {"rounds": 1.0, "wrk_seconds": 2.0, "iperf_seconds": 1.0, "sustained_seconds": 15.0}
    text = render(_results(worst), TARGETS, windows, {"nproc": "2"}, settings, "cmd", 60, {})
    assert f"**Goal: kernel mode ahead of HAProxy on every axis: {goal}" in text
    assert "**Proxy mode CPU per new connection: 80.0 µs vs HAProxy's 40.0 µs (2.00x).**" in text
    # Three windows, then min / median / max.
    assert (
        "| ironlb kernel | 9,000 | 8,000 | 10,000 | 8,000 | 9,000 | 10,000 | n/a | 12.5 | 3.0 |"
        in text
    )
    # Kernel mode has no proxy process: it is not in the proxy CPU table.
    cpu_table = text.split("Proxy CPU")[1].split("Sustained")[0]
    assert "ironlb kernel" not in cpu_table and "| HAProxy | 40.0 |" in cpu_table
    assert "**ironlb kernel / HAProxy** | 1.50x | 1.50x |" in text


def test_closer_note_reads_time_wait() -> None:
    note = closer_note(_results(3_000), TARGETS)
    assert "ironlb proxy: 710 per 1,000, so the client mostly closes first" in note
    assert "ironlb kernel: 5 per 1,000, so the server side mostly closes first" in note
    assert closer_note(Results(), TARGETS) == "not measured"
