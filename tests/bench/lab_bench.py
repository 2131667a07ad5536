"""Data plane through the lab: ironlb proxy and kernel mode vs HAProxy 2.6 and direct.

Measured the way clients meet a load balancer: a client namespace, a node
namespace holding the VIPs, a backend namespace, on the lab's bridged LAN
(:class:`ironlb.lab.netlab.Lab`, 198.18.0.0/15; the root namespace is never
touched and every namespace is removed on exit, failure or Ctrl-C). The
loopback benchmarks cannot show two things this one must (issue 12): a
proxy's effect on who closes first (the client's TIME_WAIT), and kernel-mode
NAT without tuple clashes against direct connections on 127.0.0.1.

* backend1: one nginx (1 worker, ``return 200``) on three ports per target
  (:data:`BACKEND_PORTS`: no target meets another's TIME_WAIT tuples there)
  and one iperf3 server on 5201.
* node1 (IPv4 forwarding on, in its namespace): HAProxy (``mode tcp``,
  ``nbthread 1``) on VIP 0, ``ironlb forward --workers 1`` in proxy mode on
  VIP 1, ``ironlb forward`` with ``mode: kernel`` listeners (nftables DNAT +
  masquerade) on VIP 2; each VIP has an HTTP listener on :80 over its target's
  three nginx ports and a bulk listener on :5201 to the iperf3 server. The VIPs are
  bound on the node's ``lo``, as the speaker binds the VIPs its node owns (in
  kernel mode the DNAT in prerouting comes first); the client routes them via
  the node, as a LAN host does after ARP.
* client: ``net.ipv4.tcp_tw_reuse=1`` (in its namespace only), so TIME_WAIT
  does not cap a single client toward one VIP:port. Each target is reached
  from a source address of its own in 198.18.1.0/24 (a per-destination route
  ``src``), so the TIME_WAIT each leaves is counted apart from the others'.
  ``--new-client-per-run`` gives every load run a fresh one instead: many
  clients rather than one heavy client (see docs/benchmarks.md on what that
  does to kernel mode).

Loads, one round = every load on every target, the target order rotating:
wrk -t1 -c50 --latency keep-alive and with ``Connection: close``; iperf3 -P 1
and -P 4. Medians of the rounds. Then, per target, ``--sustained-seconds`` of
new connections, the client's TCP counters sampled every 5 s.

    python -m tests.bench.lab_bench [--quick] [--rounds N] [--out FILE]

The module's pure part (counters, windows, the goal check, the markdown) is
unit-tested in tests/unit/test_lab_bench_report.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from tests.bench._configs import TcpFrontend, haproxy_tcp_conf, nginx_backend_conf
from tests.bench._procs import CLK_TCK, cpu_seconds, ensure_packages, process_tree
from tests.bench._report import Results, Sample, first_line, fmt, parse_wrk, raise_interrupt

REPO = Path(__file__).resolve().parents[2]
IRONLB = str(Path(sys.executable).with_name("ironlb"))
#: Each target has nginx ports of its own: the backend keeps TIME_WAIT for what a target
#: closed, and a later target reaching the same backend port from the node's address with
#: another TCP timestamp clock (a proxy's own connections, or masqueraded clients) would have
#: its SYNs refused by PAWS (RFC 7323): one target's traffic must not slow the next.
BACKEND_PORTS = {
    "direct": (8001,),
    "haproxy": (8011, 8012, 8013),
    "proxy": (8021, 8022, 8023),
    "kernel": (8031, 8032, 8033),
}
HTTP_PORTS = tuple(p for ports in BACKEND_PORTS.values() for p in ports)
IPERF_PORT = 5201
VIP_PORT = 80
WINDOW_S = 5.0
SOURCES = IPv4Network("198.18.1.0/24")  # the client's per-run source addresses
LOADS = ("keepalive", "close", "bulk1", "bulk4")
SUSTAINED = "sustained"
TARGET_NAMES = ("direct", "haproxy", "proxy", "kernel")

# --------------------------------------------------------------------------- pure part


def parse_proc_counters(text: str, prefix: str) -> dict[str, int]:
    """The ``prefix`` row of /proc/net/snmp or /proc/net/netstat as name -> value.

    Those files give each group as two lines (names, then values) that start
    with the same ``Prefix:``. Raises ValueError when the group is missing.
    """
    rows = [line.split() for line in text.splitlines() if line.startswith(prefix + ":")]
    if len(rows) < 2:
        raise ValueError(f"no {prefix} counters in {text[:80]!r}")
    return dict(zip(rows[0][1:], (int(v) for v in rows[1][1:]), strict=True))


def machine_busy_seconds(stat_text: str) -> float:
    """Busy CPU seconds of the whole machine from /proc/stat's ``cpu`` line.

    Busy = user + nice + system + irq + softirq + steal (idle and iowait left
    out), in clock ticks (``SC_CLK_TCK``) converted to seconds.
    """
    fields = stat_text.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError(f"not /proc/stat: {stat_text[:40]!r}")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def window_rates(samples: Sequence[tuple[float, int]]) -> list[float]:
    """Rates between consecutive (time s, counter) samples, per second.

    Raises ValueError when two samples share a time.
    """
    rates = []
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t1 <= t0:
            raise ValueError(f"samples out of order at t={t1}")
        rates.append((c1 - c0) / (t1 - t0))
    return rates


def spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(min, median, max) of ``values``, or None when there are none."""
    if not values:
        return None
    return min(values), statistics.median(values), max(values)


@dataclass(frozen=True)
class Axis:
    """One axis of the comparison: a table column and which way is better."""

    header: str
    load: str
    attr: str
    digits: int
    higher_is_better: bool


# The axes the goal is judged on (issue 12: kernel mode ahead of HAProxy on every one).
AXES = (
    Axis("new conn/s", "close", "value", 0, True),
    Axis("keep-alive req/s", "keepalive", "value", 0, True),
    Axis("bulk 1 stream Gbit/s", "bulk1", "value", 2, True),
    Axis("bulk 4 streams Gbit/s", "bulk4", "value", 2, True),
    Axis("sustained new conn/s, worst 5 s", SUSTAINED, "value", 0, True),
    Axis("client TIME_WAIT / 1k conns", "close", "time_wait_per_k", 0, False),
    Axis("machine CPU µs/conn", "close", "machine_us_per_op", 1, False),
)

# Extra columns of the main table, not judged.
LATENCY = (
    Axis("keep-alive p99 ms", "keepalive", "p99_ms", 2, False),
    Axis("new conn p99 ms", "close", "p99_ms", 2, False),
)

PROXY_CPU = (
    Axis("proxy CPU µs/conn", "close", "cpu_us_per_op", 1, False),
    Axis("proxy CPU µs/request", "keepalive", "cpu_us_per_op", 1, False),
    Axis("proxy CPU ms/GB bulk 1", "bulk1", "cpu_us_per_op", 0, False),
    Axis("proxy CPU ms/GB bulk 4", "bulk4", "cpu_us_per_op", 0, False),
)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as ``1.23x``; ``n/a`` when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def judge(results: Results, axes: Sequence[Axis], ours: str, peer: str) -> list[str]:
    """One line per axis: ours vs peer's median and whether ours is ahead.

    Ahead means strictly better in the axis' direction; a missing value is
    "not measured". Both 0 on a lower-is-better axis (no TIME_WAIT at all)
    counts as even, not ahead.
    """
    lines = []
    for axis in axes:
        a, b = (
            results.median(ours, axis.load, axis.attr),
            results.median(peer, axis.load, axis.attr),
        )
        if a is None or b is None:
            verdict = "not measured"
        elif a == b:
            verdict = "even"
        elif (a > b) == axis.higher_is_better:
            verdict = "ahead"
        else:
            verdict = "behind"
        lines.append(
            f"{axis.header}: {fmt(a, axis.digits)} vs {fmt(b, axis.digits)}"
            f" ({ratio(a, b)}): {verdict}"
        )
    return lines


@dataclass(frozen=True)
class TargetInfo:
    """What the report needs of a target: its key, its label, whether a process of
    its own does the forwarding (so its CPU can be measured)."""

    name: str
    label: str
    has_proxy: bool


def _table(results: Results, targets: Sequence[TargetInfo], axes: Sequence[Axis]) -> list[str]:
    lines = [
        "| " + " | ".join(["target", *(a.header for a in axes)]) + " |",
        "|" + "---|" * (len(axes) + 1),
    ]
    for t in targets:
        cells = [fmt(results.median(t.name, a.load, a.attr), a.digits) for a in axes]
        lines.append("| " + " | ".join([t.label, *cells]) + " |")
    names = {t.name for t in targets}
    for ours in ("proxy", "kernel"):
        if {ours, "haproxy"} <= names:
            cells = [
                ratio(
                    results.median(ours, a.load, a.attr), results.median("haproxy", a.load, a.attr)
                )
                for a in axes
            ]
            label = next(t.label for t in targets if t.name == ours)
            lines.append("| " + " | ".join([f"**{label} / HAProxy**", *cells]) + " |")
    return lines


def _sustained_table(
    windows: dict[str, list[float]], targets: Sequence[TargetInfo], results: Results
) -> list[str]:
    count = max((len(w) for w in windows.values()), default=0)
    heads = [f"{WINDOW_S * (i + 1):g} s" for i in range(count)]
    heads += ["min", "median", "max", "p99 ms", "client SYN retransmits / 1k conns"]
    heads.append("backend SYNs refused in TIME_WAIT / 1k conns")
    lines = ["| " + " | ".join(["target", *heads]) + " |", "|" + "---|" * (len(heads) + 1)]
    for t in targets:
        values = windows.get(t.name, [])
        cells = [fmt(v) for v in values] + ["n/a"] * (count - len(values))
        stats = spread(values)
        cells += ["n/a"] * 3 if stats is None else [fmt(v) for v in stats]
        cells.append(fmt(results.median(t.name, SUSTAINED, "p99_ms"), 2))
        cells.append(fmt(results.median(t.name, SUSTAINED, "syn_retrans_per_k"), 1))
        cells.append(fmt(results.median(t.name, SUSTAINED, "paws_tw_per_k"), 1))
        lines.append("| " + " | ".join([t.label, *cells]) + " |")
    return lines


def closer_note(results: Results, targets: Sequence[TargetInfo]) -> str:
    """Who closes first, read off the client's TIME_WAIT per 1,000 connections.

    The side that closes first keeps TIME_WAIT (RFC 9293, 3.6); ~1,000 per 1,000
    means the client closed every connection first, ~0 that the server's FIN
    reached the client before it closed.
    """
    parts = []
    for t in targets:
        tw = results.median(t.name, "close", "time_wait_per_k")
        if tw is None:
            continue
        who = "the client" if tw >= 500 else "the server side"
        parts.append(f"{t.label}: {tw:,.0f} per 1,000, so {who} mostly closes first")
    return "; ".join(parts) if parts else "not measured"


def render(
    results: Results,
    targets: Sequence[TargetInfo],
    windows: dict[str, list[float]],
    facts: dict[str, str],
    settings: dict[str, float],
    command: str,
    elapsed_s: float,
    unavailable: dict[str, str],
    new_client_per_run: bool = False,
) -> str:
    """The markdown section. ``settings``: rounds, wrk_seconds, iperf_seconds,
    sustained_seconds. ``windows``: per target, new conn/s per 5 s window."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = {t.name for t in targets}
    out = [
        "## Data plane through the lab: ironlb proxy and kernel mode vs HAProxy",
        "",
        f"Produced by `{command}` on {now} (took {elapsed_s / 60:.1f} min).",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
        "",
        "Client namespace -> node namespace (the VIPs) -> backend namespace (nginx, three"
        " ports of its own per target, iperf3), on the lab LAN. Client:"
        " `net.ipv4.tcp_tw_reuse=1` in its"
        f" namespace. Medians of {settings['rounds']:g} interleaved round(s); wrk -t1 -c50"
        f" -d{settings['wrk_seconds']:g}s --latency (new connections: plus `-H 'Connection:"
        f" close'`); iperf3 -t{settings['iperf_seconds']:g} -P 1 and -P 4; sustained: wrk"
        f" -t1 -c50 with `Connection: close` for {settings['sustained_seconds']:g} s, the"
        " client's TCP counters read every 5 s; the sustained column is the worst window.",
        "",
        *_table(results, targets, (*AXES, *LATENCY)),
        "",
        "Proxy CPU (utime+stime of the proxy's processes from /proc/PID/stat over each"
        " load, per connection, per request and per GB):",
        "",
        *_table(results, [t for t in targets if t.has_proxy], PROXY_CPU),
        "",
        f"Sustained new connections per second, per {WINDOW_S:g} s window (a SYN the"
        " backend side does not answer is retransmitted after 1 s: retransmits mark stalls):",
        "",
        *_sustained_table(windows, targets, results),
        "",
    ]
    if {"kernel", "haproxy"} <= names:
        verdicts = judge(results, AXES, "kernel", "haproxy")
        ahead = sum(v.endswith(": ahead") for v in verdicts)
        out.append(
            f"**Goal: kernel mode ahead of HAProxy on every axis: "
            f"{'met' if ahead == len(verdicts) else 'not met'}** ({ahead} of {len(verdicts)}):"
        )
        out.append("")
        out += [f"- {v}" for v in verdicts]
        out.append("")
    if {"proxy", "haproxy"} <= names:
        a = results.median("proxy", "close", "cpu_us_per_op")
        b = results.median("haproxy", "close", "cpu_us_per_op")
        out.append(
            f"**Proxy mode CPU per new connection: {fmt(a, 1)} µs vs HAProxy's {fmt(b, 1)} µs"
            f" ({ratio(a, b)}).**"
        )
        out.append("")
    out.append(f"Who closes first (client TIME_WAIT): {closer_note(results, targets)}.")
    out.append("")
    errs = [
        f"{t.label} {load}: {results.errors(t.name, load)}"
        for t in targets
        for load in ("keepalive", "close", SUSTAINED)
        if results.errors(t.name, load)
    ]
    out.append(
        "Errors (wrk connect/write/timeout + non-2xx, all rounds): "
        + ("; ".join(errs) if errs else "none")
        + "."
    )
    out += [f"Failed: {f}." for f in results.failures]
    out += [f"Not measured: {name} ({why})." for name, why in unavailable.items()]
    out += [
        "",
        "Method:",
        "",
        "- Namespaces of `ironlb.lab.netlab.Lab` (1 node, 1 backend host); nothing runs"
        " in the root namespace; all removed at the end, also on failure or Ctrl-C.",
        "- HAProxy 2.6 `mode tcp`, `nbthread 1`, round-robin, default buffers, no logging;"
        " `ironlb forward --workers 1` (proxy mode); `ironlb forward` with `mode: kernel`"
        " listeners (nftables DNAT, `numgen inc`, masquerade toward the backend); direct is"
        " the client straight to backend port 8001. Each target reaches nginx on ports of its"
        " own, so the TIME_WAIT the backend keeps for one target's connections (from the"
        " node's address, with the proxy's TCP timestamp clock) cannot refuse the next"
        " target's SYNs (PAWS). The kernel table is loaded during the"
        " whole run, so conntrack is active for every target alike.",
        "- Proxy CPU is the proxy's own processes. Kernel mode has no process in the path:"
        " its NAT runs in softirq context, charged to whichever process or CPU happens to"
        " be running (wrk, nginx, the veth transmit of another namespace), and the kernel"
        " keeps no per-namespace CPU account, so its proxy CPU is n/a. The machine CPU"
        " column is what all of it costs: busy time of the whole machine from /proc/stat"
        " over the load, per connection, client, backend, proxy and kernel included (and"
        " anything else running on the machine at the time: compare it with direct's).",
        "- Client TIME_WAIT per 1,000 connections: over each new-connection run, the"
        " change in TIME_WAIT sockets from the target's client source address (`ss -tan"
        " state time-wait src ADDR` in the client namespace) plus those tcp_tw_reuse"
        " recycled during the run (TcpExt TWRecycled), per wrk request. The side that"
        " closes first holds TIME_WAIT: with the server's FIN arriving right behind the"
        " response the client closes second and holds none.",
        "- The client reaches each target from one source address of its own (198.18.1.x)"
        + (
            "; here every load run used a fresh one (`--new-client-per-run`)."
            if new_client_per_run
            else ", the same for all its runs: one heavy client per target."
        ),
        "- Sustained: new connections per window = change of the client namespace's"
        " Tcp ActiveOpens - AttemptFails (/proc/net/snmp) over the window's measured length.",
        "- Everything shares the machine's cores (no pinning); rounds rotate the target"
        " order so drift hits all alike. Numbers are relative.",
    ]
    if settings["rounds"] > 1:
        out += ["", "Per-round values (keep-alive req/s; new conn/s; bulk 1 / 4 Gbit/s):", ""]
        for t in targets:
            vals = [
                ", ".join(
                    fmt(s.value, 2 if load.startswith("bulk") else 0)
                    for s in results.samples.get((t.name, load), [])
                )
                for load in LOADS
            ]
            out.append(f"- {t.label}: " + "; ".join(vals))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the lab


@dataclass
class Target:
    """One thing the loads go to, and the process forwarding for it (None: none)."""

    info: TargetInfo
    http_host: str
    bulk_host: str
    via: str | None  # the next hop of the client's route to http_host (None: on-link)
    proc: subprocess.Popen[Any] | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def pids(self) -> list[int]:
        return [] if self.proc is None else process_tree(self.proc.pid)


@dataclass
class Bench:
    """The lab and what runs in it. The client reaches each target from a source
    address of its own (``source``); with ``new_client_per_run`` every load run
    gets a fresh one, as if each run were another client."""

    lab: Any  # ironlb.lab.netlab.Lab (imported late: needs pyroute2 and root)
    tmp: Path
    new_client_per_run: bool = False
    sources: Iterator[IPv4Address] = field(init=False)
    chosen: dict[str, IPv4Address] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = iter(list(SOURCES.hosts()) * 1000)

    def client(self, *argv: str, timeout: float = 60) -> str:
        return str(self.lab.run(self.lab.client, *argv, timeout=timeout).stdout)

    def source(self, target: Target) -> IPv4Address:
        """Route the client's traffic to ``target`` from its source address; return it."""
        if target.name in self.chosen and not self.new_client_per_run:
            return self.chosen[target.name]
        src = self.chosen[target.name] = next(self.sources)
        self.client("ip", "addr", "replace", f"{src}/32", "dev", "eth0")
        route = ["ip", "route", "replace", f"{target.http_host}/32"]
        if target.via is not None:
            route += ["via", target.via]
        self.client(*route, "dev", "eth0", "src", str(src))
        return src


def build(bench: Bench) -> list[Target]:
    """Start backends, HAProxy and both ironlb instances; return the targets in order."""
    lab, tmp = bench.lab, bench.tmp
    node, backend = lab.nodes[0], lab.backends[0]
    vh, vp, vk = (str(lab.vip(i)) for i in range(3))
    be = str(backend.ipv4)
    lab.run(lab.client, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    lab.run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for host in (node, backend):
        lab.run(host, "ip", "route", "add", str(SOURCES), "via", str(lab.client.ipv4))
    for vip in (vh, vp, vk):
        lab.run(node, "ip", "addr", "add", f"{vip}/32", "dev", "lo")
    for vip in (vh, vp, vk):
        lab.run(lab.client, "ip", "route", "add", f"{vip}/32", "via", str(node.ipv4))

    def start(host: Any, name: str, *argv: str) -> subprocess.Popen[Any]:
        log = (tmp / f"{name}.log").open("wb")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        try:
            proc: subprocess.Popen[Any] = lab.popen(
                host, *argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        finally:
            log.close()
        return proc

    (tmp / "nginx.conf").write_text(nginx_backend_conf(tmp, [f"{be}:{p}" for p in HTTP_PORTS]))

    def backends_of(target: str) -> list[str]:
        return [f"{be}:{p}" for p in BACKEND_PORTS[target]]

    start(
        backend,
        "nginx",
        "nginx",
        "-p",
        str(tmp),
        "-c",
        str(tmp / "nginx.conf"),
        "-g",
        "daemon off;",
    )
    start(backend, "iperf3", "iperf3", "-s", "-B", be, "-p", str(IPERF_PORT))
    (tmp / "haproxy.cfg").write_text(
        haproxy_tcp_conf(
            1,
            [
                TcpFrontend("web", f"{vh}:{VIP_PORT}", backends_of("haproxy")),
                TcpFrontend("bulk", f"{vh}:{IPERF_PORT}", [f"{be}:{IPERF_PORT}"]),
            ],
        )
    )
    haproxy = start(node, "haproxy", "haproxy", "-db", "-f", str(tmp / "haproxy.cfg"))
    procs = {}
    for name, vip, mode in (("proxy", vp, "proxy"), ("kernel", vk, "kernel")):
        listed = ", ".join(f"'{hp}'" for hp in backends_of(name))
        (tmp / f"{name}.yaml").write_text(
            "listeners:\n"
            f"  - {{address: {vip}, port: {VIP_PORT}, mode: {mode}, backends: [{listed}]}}\n"
            f"  - {{address: {vip}, port: {IPERF_PORT}, mode: {mode},"
            f" backends: ['{be}:{IPERF_PORT}']}}\n"
        )
        procs[name] = start(
            node, f"ironlb-{name}", IRONLB, "forward", "--config", str(tmp / f"{name}.yaml"),
            "--workers", "1",
        )  # fmt: skip
    via = str(node.ipv4)
    return [
        Target(TargetInfo("direct", "direct to one backend port", False), be, be, None),
        Target(
            TargetInfo("haproxy", "HAProxy 2.6 (mode tcp, 1 thread)", True), vh, vh, via, haproxy
        ),
        Target(
            TargetInfo("proxy", "ironlb proxy mode (1 worker)", True), vp, vp, via, procs["proxy"]
        ),
        Target(TargetInfo("kernel", "ironlb kernel mode", False), vk, vk, via, procs["kernel"]),
    ]


_GET = """
import sys, urllib.request
print(urllib.request.urlopen("http://" + sys.argv[1] + "/", timeout=3).status)
"""


def wait_ready(bench: Bench, target: Target, timeout: float = 20.0) -> None:
    """Block until an HTTP GET from the client through ``target`` answers 200.

    Raises RuntimeError if its process exits, TimeoutError after ``timeout`` s.
    """
    direct = BACKEND_PORTS["direct"][0]
    hostport = f"{target.http_host}:{direct if target.name == 'direct' else VIP_PORT}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.proc is not None and target.proc.poll() is not None:
            raise RuntimeError(f"exited with {target.proc.returncode}")
        out = bench.lab.run(
            bench.lab.client, sys.executable, "-c", _GET, hostport, check=False, timeout=10
        )
        if out.returncode == 0 and out.stdout.startswith("200"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no HTTP 200 from {hostport} within {timeout:g} s")


# --------------------------------------------------------------------------- loads


@contextlib.contextmanager
def measure(target: Target) -> Iterator[dict[str, float]]:
    """Yield a dict that gets ``proxy_s`` (the target's processes' CPU), ``machine_s``
    (busy CPU of the whole machine) and ``wall_s`` over the block."""
    pids = target.pids()
    proxy0, machine0 = cpu_seconds(pids), machine_busy_seconds(Path("/proc/stat").read_text())
    start = time.monotonic()
    result: dict[str, float] = {}
    yield result
    result["wall_s"] = time.monotonic() - start
    result["machine_s"] = machine_busy_seconds(Path("/proc/stat").read_text()) - machine0
    result["proxy_s"] = cpu_seconds(target.pids()) - proxy0


def url(target: Target) -> str:
    port = BACKEND_PORTS["direct"][0] if target.name == "direct" else VIP_PORT
    return f"http://{target.http_host}:{port}/"


def conntrack_count(bench: Bench) -> int:
    """Connections the node's conntrack holds now (its namespace's count; -1: unknown)."""
    node = bench.lab.nodes[0]
    out = bench.lab.run(node, "cat", "/proc/sys/net/netfilter/nf_conntrack_count", check=False)
    return int(out.stdout.strip() or -1)


def time_wait(bench: Bench, src: IPv4Address) -> int:
    """The client's TIME_WAIT sockets from ``src``."""
    return len(bench.client("ss", "-tanH", "state", "time-wait", "src", str(src)).splitlines())


def paws_timewait(bench: Bench) -> int:
    """SYNs the backend host refused so far because they hit a 4-tuple in TIME_WAIT
    with an older TCP timestamp (TcpExt PAWSTimewait; RFC 7323 PAWS)."""
    text = bench.lab.run(bench.lab.backends[0], "cat", "/proc/net/netstat").stdout
    return parse_proc_counters(text, "TcpExt")["PAWSTimewait"]


def syn_retrans(bench: Bench) -> int:
    """The client namespace's SYN retransmissions so far (TcpExt TCPSynRetrans)."""
    return parse_proc_counters(bench.client("cat", "/proc/net/netstat"), "TcpExt")["TCPSynRetrans"]


def tw_recycled(bench: Bench) -> int:
    return parse_proc_counters(bench.client("cat", "/proc/net/netstat"), "TcpExt")["TWRecycled"]


def run_wrk(bench: Bench, target: Target, seconds: float, close: bool) -> Sample:
    src = bench.source(target)
    argv = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    recycled, waiting_before = tw_recycled(bench), time_wait(bench, src)
    with measure(target) as cpu:
        out = bench.client(*argv, url(target), timeout=seconds + 30)
    rps, total, p50, p99, errors = parse_wrk(out)
    sample = Sample(rps, p50, p99, errors=errors)
    sample.machine_us_per_op = 1e6 * cpu["machine_s"] / max(total, 1)
    if target.info.has_proxy:
        sample.cpu_us_per_op = 1e6 * cpu["proxy_s"] / max(total, 1)
    if close:
        waiting = time_wait(bench, src) - waiting_before + tw_recycled(bench) - recycled
        sample.time_wait_per_k = 1000 * waiting / max(total, 1)
    return sample


def run_iperf(bench: Bench, target: Target, seconds: float, streams: int) -> Sample:
    bench.source(target)
    argv = ["iperf3", "-c", target.bulk_host, "-p", str(IPERF_PORT), "-J", "-t", f"{seconds:g}"]
    argv += ["-P", str(streams)]
    report: dict[str, Any] = {}
    for attempt in range(3):
        with measure(target) as cpu:
            out = bench.lab.run(bench.lab.client, *argv, check=False, timeout=seconds + 30)
        report = json.loads(out.stdout or "{}")
        if out.returncode == 0 and "error" not in report:
            break
        time.sleep(1.0 + attempt)  # the iperf3 server is still busy with the previous test
    else:
        raise RuntimeError(f"iperf3 via {target.name}: {report.get('error') or out.stderr}")
    received = report["end"]["sum_received"]
    sample = Sample(received["bits_per_second"] / 1e9)
    if target.info.has_proxy:
        sample.cpu_us_per_op = 1e3 * cpu["proxy_s"] / max(received["bytes"] / 1e9, 1e-9)
    return sample


# Runs wrk and reads the namespace's TCP counters every window; prints JSON.
_SUSTAIN = """
import json, subprocess, sys, time
seconds, window, argv = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
def opened():
    rows = [l.split() for l in open("/proc/net/snmp") if l.startswith("Tcp:")]
    row = dict(zip(rows[0][1:], rows[1][1:]))
    return int(row["ActiveOpens"]) - int(row["AttemptFails"])
start = time.monotonic()
samples = [(0.0, opened())]
wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
for k in range(1, int(seconds // window) + 1):
    time.sleep(max(0.0, start + k * window - time.monotonic()))
    samples.append((time.monotonic() - start, opened()))
print(json.dumps({"samples": samples, "wrk": wrk.communicate()[0]}))
"""


def run_sustained(bench: Bench, target: Target, seconds: float) -> tuple[list[float], Sample]:
    """``seconds`` of new connections; (conn/s per window, the whole run's sample)."""
    bench.source(target)
    retrans, refused = syn_retrans(bench), paws_timewait(bench)
    wrk = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "--latency", "-H", "Connection: close"]
    out = bench.client(
        sys.executable, "-c", _SUSTAIN, f"{seconds:g}", f"{WINDOW_S:g}", *wrk, url(target),
        timeout=seconds + 60,
    )  # fmt: skip
    report = json.loads(out)
    samples = [(float(t), int(c)) for t, c in report["samples"]]
    rates = window_rates(samples)
    _, _, p50, p99, errors = parse_wrk(report["wrk"])
    worst = min(rates) if rates else 0.0
    sample = Sample(worst, p50, p99, errors=errors)
    opened = samples[-1][1] - samples[0][1]
    sample.syn_retrans_per_k = 1000 * (syn_retrans(bench) - retrans) / max(opened, 1)
    sample.paws_tw_per_k = 1000 * (paws_timewait(bench) - refused) / max(opened, 1)
    return rates, sample


def run_load(bench: Bench, target: Target, load: str, args: argparse.Namespace) -> Sample:
    if load in ("keepalive", "close"):
        return run_wrk(bench, target, args.wrk_seconds, close=load == "close")
    return run_iperf(bench, target, args.iperf_seconds, int(load.removeprefix("bulk")))


# --------------------------------------------------------------------------- main


def machine_facts() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "nproc": str(os.cpu_count()),
        "kernel": os.uname().release,
        "HAProxy": first_line(["haproxy", "-v"]).split()[2],
        "nginx": first_line(["nginx", "-v"]).split("/")[-1],
        "Python": sys.version.split()[0],
        "uvloop": version("uvloop"),
        "wrk": first_line(["wrk", "--version"]).split()[1],
        "iperf3": first_line(["iperf3", "--version"]).split()[1],
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.lab_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 round, short runs (~2 min)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--wrk-seconds", type=float, help="per wrk run (default 8, quick 2)")
    parser.add_argument("--iperf-seconds", type=float, help="per iperf3 run (default 5, quick 2)")
    parser.add_argument("--sustained-seconds", type=float, help="per target (default 60, quick 10)")
    parser.add_argument(
        "--targets",
        default=",".join(TARGET_NAMES),
        help="comma-separated subset of " + ",".join(TARGET_NAMES),
    )
    parser.add_argument(
        "--new-client-per-run",
        action="store_true",
        help="a fresh client source address for every load run (default: one per target)",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown section here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    for name, full, quick in (
        ("wrk_seconds", 8.0, 2.0),
        ("iperf_seconds", 5.0, 2.0),
        ("sustained_seconds", 60.0, 10.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.rounds < 1 or min(args.wrk_seconds, args.iperf_seconds) <= 0:
        parser.error("--rounds, --wrk-seconds and --iperf-seconds must be positive")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(args.targets) - set(TARGET_NAMES))
    if unknown or not args.targets:
        parser.error(f"--targets takes a non-empty subset of {','.join(TARGET_NAMES)}")
    if args.sustained_seconds < WINDOW_S:
        parser.error(f"--sustained-seconds must be at least one {WINDOW_S:g} s window")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("lab_bench: needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    command = "python -m tests.bench.lab_bench " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    signal.signal(signal.SIGTERM, raise_interrupt)
    ensure_packages()
    from ironlb.lab.netlab import Lab

    facts = machine_facts()
    started = time.monotonic()
    results = Results()
    windows: dict[str, list[float]] = {}
    unavailable: dict[str, str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="ironlb-labbench-"))
    os.chmod(tmp, 0o755)  # nginx workers run as www-data
    lab = Lab(nodes=1, backends=1)
    try:
        lab.up()
        bench = Bench(lab, tmp, args.new_client_per_run)
        targets = []
        for target in build(bench):
            if target.name not in args.targets:
                continue
            try:
                wait_ready(bench, target)
                run_wrk(bench, target, 1, close=False)  # warm-up
            except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                log = tmp / f"ironlb-{target.name}.log"
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-1:]
                    if log.exists()
                    else []
                )
                unavailable[target.info.label] = f"{exc}; {' '.join(tail)}".strip("; ")
                print(f"skipping {target.name}: {unavailable[target.info.label]}", file=sys.stderr)
                continue
            targets.append(target)
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            for load in LOADS:
                for target in order:
                    try:
                        sample = run_load(bench, target, load, args)
                    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                        results.failures.append(
                            f"{target.info.label} {load} round {rnd + 1}: {exc}"
                        )
                        continue
                    results.add(target.name, load, sample)
                    print(f"node conntrack {conntrack_count(bench):>8} ", file=sys.stderr, end="")
                    print(
                        f"round {rnd + 1}/{args.rounds} {target.name:8} {load:9}"
                        f" {sample.value:12,.2f}"
                        + (
                            ""
                            if sample.time_wait_per_k is None
                            else f" tw/1k {sample.time_wait_per_k:.0f}"
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
        for target in targets:
            try:
                rates, sample = run_sustained(bench, target, args.sustained_seconds)
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                results.failures.append(f"{target.info.label} sustained: {exc}")
                continue
            windows[target.name] = rates
            results.add(target.name, SUSTAINED, sample)
            print(
                f"sustained {target.name:8} {', '.join(f'{r:,.0f}' for r in rates)}"
                f" (node conntrack {conntrack_count(bench)})",
                file=sys.stderr,
            )
        settings = {
            "rounds": float(args.rounds),
            "wrk_seconds": args.wrk_seconds,
            "iperf_seconds": args.iperf_seconds,
            "sustained_seconds": args.sustained_seconds,
        }
        text = render(
            results,
            [t.info for t in targets],
            windows,
            facts,
            settings,
            command.strip(),
            time.monotonic() - started,
            unavailable,
            args.new_client_per_run,
        )
    finally:
        lab.down()
        if args.keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the lab and everything in it was removed", file=sys.stderr)
        sys.exit(130)
