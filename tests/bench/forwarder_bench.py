"""Data-plane benchmark: ironlb's forwarder side by side with HAProxy and nginx ``stream``.

One run on this machine, all on 127.0.0.1: three HTTP backends (one nginx, one worker,
three ports) and one iperf3 server; in front of them, with the same worker count N,
HAProxy (``mode tcp``, ``balance roundrobin``, ``nbthread N``), nginx ``stream``
(``worker_processes N``), ``ironlb forward --workers N``, a minimal uvloop reference
proxy, and "direct" (no proxy). Each proxy has two listeners: HTTP round-robin over the
three backends, and bulk to the single iperf3 server (iperf3's control and data
connections must land on the same server).

Loads: keep-alive requests/s (wrk --latency), new connections/s (wrk with
``Connection: close``), bulk Gbit/s (iperf3, 1 and 4 streams). Proxy CPU is the change
in utime+stime of the proxy's processes over each load, as % of one core. Rounds are
interleaved (every proxy runs each load once per round) and medians are reported.

    python -m tests.bench.forwarder_bench [--quick] [--workers N] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bench._configs import TcpFrontend, haproxy_tcp_conf, nginx_backend_conf
from tests.bench._procs import (
    ProcessSet,
    cpu_seconds,
    ensure_packages,
    free_port,
    http_get,
    process_tree,
    wait_for_port,
)
from tests.bench._report import (
    LOAD_COLUMNS,
    Results,
    Sample,
    first_line,
    fmt,
    parse_wrk,
    raise_interrupt,
)

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
REPO = Path(__file__).resolve().parents[2]
IRONLB = REPO / ".venv" / "bin" / "ironlb"
WRK_THREADS, WRK_CONNECTIONS = 1, 50

# Loads, in the order each round runs them.
LOADS = ("keepalive", "close", "bulk1", "bulk4")


# --------------------------------------------------------------------------- set-up


def machine_facts() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "nproc": str(os.cpu_count()),
        "kernel": platform.release(),
        "HAProxy": first_line(["haproxy", "-v"]).split()[2],
        "nginx": first_line(["nginx", "-v"]).split("/")[-1],
        "Python": platform.python_version(),
        "uvloop": version("uvloop"),
        "wrk": first_line(["wrk", "--version"]).split()[1],
        "iperf3": first_line(["iperf3", "--version"]).split()[1],
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


@dataclass
class Backends:
    http_ports: list[int]
    iperf_port: int


def start_backends(procs: ProcessSet, tmp: Path) -> Backends:
    ports = [free_port() for _ in range(3)]
    conf = tmp / "backend-nginx.conf"
    conf.write_text(nginx_backend_conf(tmp, _hostports(ports)))
    nginx = procs.start(
        "backend-nginx", ["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]
    )
    for p in ports:
        wait_for_port(p, nginx)
    iperf_port = free_port()
    iperf = procs.start(
        "backend-iperf3", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(iperf_port)]
    )
    wait_for_port(iperf_port, iperf)
    return Backends(ports, iperf_port)


@dataclass
class Target:
    """One thing the loads are sent to: a proxy (or nothing, for 'direct')."""

    name: str
    label: str
    http_port: int
    bulk_port: int
    proc: subprocess.Popen[bytes] | None = None  # None: no proxy process to measure

    @property
    def root_pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def pids(self) -> list[int]:
        return [] if self.proc is None else process_tree(self.proc.pid)

    def died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None


def _hostports(ports: list[int]) -> list[str]:
    return [f"127.0.0.1:{p}" for p in ports]


def start_haproxy(procs: ProcessSet, tmp: Path, be: Backends, workers: int) -> Target:
    http, bulk = free_port(), free_port()
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        haproxy_tcp_conf(
            workers,
            [
                TcpFrontend("web", f"127.0.0.1:{http}", _hostports(be.http_ports)),
                TcpFrontend("bulk", f"127.0.0.1:{bulk}", [f"127.0.0.1:{be.iperf_port}"]),
            ],
        )
    )
    proc = procs.start("haproxy", ["haproxy", "-db", "-f", str(conf)])
    wait_for_port(http, proc)
    wait_for_port(bulk, proc)
    return Target("haproxy", f"HAProxy {workers}T (mode tcp)", http, bulk, proc)


def start_nginx_stream(procs: ProcessSet, tmp: Path, be: Backends, workers: int) -> Target:
    http, bulk = free_port(), free_port()
    servers = "\n".join(f"    server {hp};" for hp in _hostports(be.http_ports))
    conf = tmp / "nginx-stream.conf"
    conf.write_text(
        f"""load_module {STREAM_MODULE};
worker_processes {workers};
pid {tmp}/nginx-stream.pid;
error_log {tmp}/nginx-stream.err warn;
events {{ worker_connections 16384; }}
stream {{
  upstream web {{
{servers}
  }}
  upstream bulk {{ server 127.0.0.1:{be.iperf_port}; }}
  server {{ listen 127.0.0.1:{http} backlog=4096; proxy_pass web; }}
  server {{ listen 127.0.0.1:{bulk}; proxy_pass bulk; }}
}}
"""
    )
    argv = ["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]
    proc = procs.start("nginx-stream", argv)
    wait_for_port(http, proc)
    wait_for_port(bulk, proc)
    return Target("nginx", f"nginx stream {workers}W", http, bulk, proc)


def start_ironlb(procs: ProcessSet, tmp: Path, be: Backends, workers: int) -> Target:
    http, bulk = free_port(), free_port()
    backends = ", ".join(f'"{hp}"' for hp in _hostports(be.http_ports))
    conf = tmp / "ironlb.yaml"
    conf.write_text(
        f"""listeners:
  - address: 127.0.0.1
    port: {http}
    protocol: tcp
    backends: [{backends}]
  - address: 127.0.0.1
    port: {bulk}
    protocol: tcp
    backends: ["127.0.0.1:{be.iperf_port}"]
"""
    )
    argv = [str(IRONLB), "forward", "--config", str(conf), "--workers", str(workers)]
    proc = procs.start("ironlb", argv)
    wait_for_port(http, proc)
    wait_for_port(bulk, proc)
    return Target("ironlb", f"ironlb forward {workers}W", http, bulk, proc)


def start_reference(procs: ProcessSet, tmp: Path, be: Backends, workers: int) -> Target:
    http, bulk = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "tests.bench.ref_proxy",
        "--workers",
        str(workers),
        f"{http}=" + ",".join(_hostports(be.http_ports)),
        f"{bulk}=127.0.0.1:{be.iperf_port}",
    ]
    del tmp
    proc = procs.start("reference", argv)
    wait_for_port(http, proc)
    wait_for_port(bulk, proc)
    label = f"reference: minimal uvloop proxy {workers}W"
    return Target("reference", label, http, bulk, proc)


# --------------------------------------------------------------------------- loads


@contextlib.contextmanager
def measure_cpu(target: Target) -> Iterator[dict[str, float]]:
    """Yield a dict that gets ``cpu_s`` and ``wall_s`` of the proxy over the block."""
    pids = target.pids()
    before, start = cpu_seconds(pids), time.monotonic()
    result: dict[str, float] = {}
    yield result
    result["wall_s"] = time.monotonic() - start
    result["cpu_s"] = cpu_seconds(target.pids()) - before


def run_wrk(target: Target, seconds: float, close: bool) -> Sample:
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{target.http_port}/")
    with measure_cpu(target) as cpu:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    rps, total, p50, p99, errors = parse_wrk(out.stdout)
    sample = Sample(rps, p50, p99, errors=errors)
    if target.root_pid is not None:
        sample.cpu_pct = 100 * cpu["cpu_s"] / cpu["wall_s"]
        sample.cpu_us_per_op = 1e6 * cpu["cpu_s"] / max(total, 1)
    return sample


def run_iperf(target: Target, seconds: float, streams: int) -> Sample:
    import json

    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(target.bulk_port), "-J"]
    argv += ["-t", f"{seconds:g}", "-P", str(streams)]
    for attempt in range(3):
        with measure_cpu(target) as cpu:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        report = json.loads(out.stdout or "{}")
        if out.returncode == 0 and "error" not in report:
            break
        time.sleep(1.0 + attempt)  # iperf3 server still busy with the previous test
    else:
        why = report.get("error") or out.stderr.strip() or f"exit {out.returncode}"
        raise RuntimeError(f"iperf3 through {target.name} failed: {why}")
    gbit = report["end"]["sum_received"]["bits_per_second"] / 1e9
    sample = Sample(gbit)
    if target.root_pid is not None:
        sample.cpu_pct = 100 * cpu["cpu_s"] / cpu["wall_s"]
    return sample


def run_load(target: Target, load: str, wrk_s: float, iperf_s: float) -> Sample:
    if load == "keepalive":
        return run_wrk(target, wrk_s, close=False)
    if load == "close":
        return run_wrk(target, wrk_s, close=True)
    return run_iperf(target, iperf_s, streams=int(load.removeprefix("bulk")))


# --------------------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "n/a"
    return f"{a / b:.2f}"


CPU_COLUMNS: list[tuple[str, str, str, int]] = [
    ("CPU % keep-alive", "keepalive", "cpu_pct", 0),
    ("CPU µs/request", "keepalive", "cpu_us_per_op", 1),
    ("CPU % new conns", "close", "cpu_pct", 0),
    ("CPU µs/connection", "close", "cpu_us_per_op", 1),
    ("CPU % bulk 1", "bulk1", "cpu_pct", 0),
    ("CPU % bulk 4", "bulk4", "cpu_pct", 0),
]


def _table(
    results: Results, targets: list[Target], columns: list[tuple[str, str, str, int]]
) -> list[str]:
    lines = [
        "| " + " | ".join(["target", *(c[0] for c in columns)]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for t in targets:
        cells = [fmt(results.median(t.name, load, attr), d) for _, load, attr, d in columns]
        lines.append("| " + " | ".join([t.label, *cells]) + " |")
    names = {t.name for t in targets}
    if {"ironlb", "haproxy"} <= names:
        cells = [
            _ratio(results.median("ironlb", load, a), results.median("haproxy", load, a))
            for _, load, a, _d in columns
        ]
        lines.append("| " + " | ".join(["**ratio ironlb / HAProxy**", *cells]) + " |")
    return lines


def render(
    results: Results,
    targets: list[Target],
    unavailable: dict[str, str],
    facts: dict[str, str],
    args: argparse.Namespace,
    command: str,
    elapsed_s: float,
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    fact_text = ", ".join(f"{k} {v}" for k, v in facts.items())
    out = [
        "## Forwarder data plane: ironlb vs HAProxy vs nginx stream",
        "",
        f"Produced by `{command}` on {now} (took {elapsed_s / 60:.1f} min).",
        f"Machine: {fact_text}.",
        "",
        f"Medians of {args.rounds} interleaved round(s); worker count N = {args.workers} for"
        f" every proxy; wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{args.wrk_seconds:g}s --latency"
        f" (new connections: plus `-H 'Connection: close'`); iperf3 -t{args.iperf_seconds:g}"
        " -P 1 and -P 4.",
        "",
        *_table(results, targets, LOAD_COLUMNS),
        "",
        "Proxy CPU (sum of utime+stime of all the proxy's processes and threads, from"
        " /proc/PID/stat, over each load; 100 % = one core):",
        "",
        *_table(results, [t for t in targets if t.root_pid is not None], CPU_COLUMNS),
        "",
    ]
    errs = [
        f"{t.label} {load}: {results.errors(t.name, load)}"
        for t in targets
        for load in ("keepalive", "close")
        if results.errors(t.name, load)
    ]
    out.append(
        "Errors (wrk connect/write/timeout errors + non-2xx, all rounds): "
        + ("; ".join(errs) if errs else "none")
        + "."
    )
    for failure in results.failures:
        out.append(f"Failed: {failure}.")
    for name, why in unavailable.items():
        out.append(f"Not measured: {name} ({why}).")
    out += [
        "",
        "Fairness and method:",
        "",
        f"- Same worker count N = {args.workers}: HAProxy `nbthread {args.workers}`, nginx"
        f" `worker_processes {args.workers}`, `ironlb forward --workers {args.workers}`, and"
        f" the reference proxy with {args.workers} SO_REUSEPORT process(es).",
        "- HAProxy 2.6 `mode tcp`, `balance roundrobin`, default buffers (tune.bufsize 16 kB),"
        " no logging. nginx `stream` with default `proxy_buffer_size` (16 kB), round-robin"
        " upstream, no logging. Neither is tuned beyond nginx's `worker_connections 16384`.",
        "- All proxies use the same backends: one nginx (worker_processes 1, access_log off,"
        ' keep-alive, `return 200 "ok\\n"`) listening on three ports = three round-robin'
        " backends; bulk goes to one iperf3 server (a second listener on each proxy),"
        " because iperf3's control and data connections must reach the same server.",
        "- 'direct' is wrk/iperf3 straight to one backend port: the ceiling of this setup.",
        "- The reference row is a minimal uvloop proxy (tests/bench/ref_proxy.py, ~100 lines:"
        " round-robin, backpressure, half-close; no health checks, timeouts, retries or"
        " metrics): roughly the floor cost of a Python/uvloop proxy, not a product.",
        "- Everything shares the machine's 2 cores: wrk or iperf3 (client and server), the"
        " nginx backend and the proxy. Numbers are relative, not what the proxies do on"
        " dedicated cores; nothing is pinned. Rounds are interleaved (each round runs every"
        " load against every target, the target order rotating) so drift hits all alike.",
        "- Everything is on 127.0.0.1; the proxy adds a second TCP connection per client"
        " connection, so each new client connection costs a proxy an accept, a connect"
        " and two closes. On loopback the kernel work of the receiving side is charged to"
        " the sender, so proxy CPU includes some of the backends' and wrk's TCP work, alike"
        " for every proxy.",
        "- Throughput and latency swing with whatever else runs on the 2 cores; proxy CPU"
        " per request / per connection depends much less on that and is the better number"
        " for comparing proxies (see the per-round values below).",
        "- Bulk: uvloop reads up to 256 kB per read() (its fixed receive buffer), HAProxy and"
        " nginx move data through their default 16 kB buffers (no splice), which is why"
        " the Python proxies can move more Gbit/s per CPU here: a consequence of defaults,"
        " not of the language.",
    ]
    if args.rounds > 1:
        out += [
            "",
            "Per-round values, to judge the noise (keep-alive req/s; new conn/s; bulk 1 / 4"
            " Gbit/s; proxy CPU µs per request; per new connection):",
            "",
        ]
        columns = [("keepalive", "value", 0), ("close", "value", 0), ("bulk1", "value", 2)]
        columns += [("bulk4", "value", 2), ("keepalive", "cpu_us_per_op", 1)]
        columns += [("close", "cpu_us_per_op", 1)]
        for t in targets:
            vals = [
                ", ".join(fmt(getattr(s, attr), d) for s in results.samples.get((t.name, load), []))
                for load, attr, d in columns
            ]
            out.append(f"- {t.label}: " + "; ".join(vals))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


STARTERS: dict[str, Callable[[ProcessSet, Path, Backends, int], Target]] = {
    "haproxy": start_haproxy,
    "nginx": start_nginx_stream,
    "ironlb": start_ironlb,
    "reference": start_reference,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.forwarder_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="about 2 minutes instead of ~10")
    parser.add_argument("--workers", type=int, default=1, help="worker threads/processes (N)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks-forwarder.md")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--wrk-seconds", type=float, help="per wrk run (default 8, quick 3)")
    parser.add_argument("--iperf-seconds", type=float, help="per iperf3 run (default 5, quick 2)")
    parser.add_argument(
        "--targets",
        default="direct,haproxy,nginx,ironlb,reference",
        help="comma-separated subset of direct,haproxy,nginx,ironlb,reference",
    )
    parser.add_argument(
        "--loads",
        default=",".join(LOADS),
        help="comma-separated subset of " + ",".join(LOADS),
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    defaults = (2, 3.0, 2.0) if args.quick else (3, 8.0, 5.0)
    args.rounds = args.rounds or defaults[0]
    args.wrk_seconds = args.wrk_seconds or defaults[1]
    args.iperf_seconds = args.iperf_seconds or defaults[2]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - {"direct", *STARTERS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    if not args.targets:
        parser.error("--targets is empty")
    if set(args.loads) - set(LOADS) or not args.loads:
        parser.error(f"--loads takes a non-empty subset of {','.join(LOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m tests.bench.forwarder_bench " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    command = command.strip()
    signal.signal(signal.SIGTERM, raise_interrupt)
    ensure_packages()
    facts = machine_facts()
    tmp = Path(tempfile.mkdtemp(prefix="ironlb-bench-"))
    procs = ProcessSet(tmp)
    started = time.monotonic()
    try:
        be = start_backends(procs, tmp)
        targets: list[Target] = []
        unavailable: dict[str, str] = {}
        for name in args.targets:
            if name == "direct":
                targets.append(
                    Target("direct", "direct (no proxy)", be.http_ports[0], be.iperf_port)
                )
                continue
            try:
                target = STARTERS[name](procs, tmp, be, args.workers)
                if b"200 OK" not in http_get(target.http_port):
                    raise RuntimeError("no HTTP 200 through it")
            except (RuntimeError, TimeoutError, OSError) as exc:
                log = tmp / f"{name}.log"
                lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                unavailable[name] = f"{type(exc).__name__}: {exc}; " + (lines[-1] if lines else "")
                print(f"skipping {name}: {unavailable[name]}", file=sys.stderr)
                continue
            targets.append(target)
        for t in list(targets):  # warm-up, and a check that every path works
            try:
                run_wrk(t, 1, close=False)
            except (OSError, ValueError, TypeError, subprocess.SubprocessError) as exc:
                unavailable[t.name] = f"warm-up failed: {exc}"
                targets.remove(t)
        results = Results()
        dead: set[str] = set()
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            for load in args.loads:
                for t in order:
                    if t.name in dead:
                        continue
                    try:
                        sample = run_load(t, load, args.wrk_seconds, args.iperf_seconds)
                    except (
                        OSError,
                        RuntimeError,
                        ValueError,
                        TypeError,
                        KeyError,
                        subprocess.SubprocessError,
                    ) as exc:
                        results.failures.append(f"{t.label} {load} round {rnd + 1}: {exc}")
                        print(f"FAILED {t.name} {load}: {exc}", file=sys.stderr)
                        if t.died():
                            dead.add(t.name)
                            results.failures.append(f"{t.label} exited during {load}")
                        continue
                    results.add(t.name, load, sample)
                    cpu = "" if sample.cpu_pct is None else f" cpu {sample.cpu_pct:.0f}%"
                    print(
                        f"round {rnd + 1}/{args.rounds} {load:9} {t.name:9}"
                        f" {sample.value:12,.2f}{cpu}",
                        file=sys.stderr,
                    )
        text = render(
            results, targets, unavailable, facts, args, command, time.monotonic() - started
        )
    finally:
        procs.close()
        if args.keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process the benchmark started was stopped", file=sys.stderr)
        sys.exit(130)
