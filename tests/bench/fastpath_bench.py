"""Fast-path benchmark: ironlb's nftables DNAT side by side with HAProxy and no proxy.

nft rules are forbidden in the root namespace, so everything runs inside ONE fresh
network namespace (only ``lo``, up), created here and always removed at the end:

* backends: one nginx (worker_processes 1, ``return 200``) on 127.0.0.1:8001-8003
  and one iperf3 server on 127.0.0.1:5201;
* HAProxy (``mode tcp``, ``balance roundrobin``, ``nbthread 1``) on 127.0.0.1:8080
  (HTTP, the three ports) and :5301 (bulk, the iperf3 server);
* ironlb: ``ironlb forward`` with ``defaults: {mode: nftables}``: VIP 127.0.0.10:80
  (HTTP, the three ports) and 127.0.0.10:5201 (bulk), DNAT in the ``output`` hook
  because the clients are local;
* direct: straight to 127.0.0.1:8001 / :5201.

Loads, one round = every load on every target, order rotating: wrk -t1 -c50 --latency
keep-alive and with ``Connection: close``; iperf3 -P1 and -P4. Medians over rounds.
"CPU" is everything in the namespace (wrk or iperf3 client, backends, proxy; the
kernel's NAT and TCP work is charged to these processes) per request or per second.

    python -m tests.bench.fastpath_bench [--quick] [--rounds N] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench._report import (
    LOAD_COLUMNS,
    Results,
    Sample,
    first_line,
    fmt,
    raise_interrupt,
    wrk_ms,
)

REPO = Path(__file__).resolve().parents[2]
IRONLB = REPO / ".venv" / "bin" / "ironlb"
HTTP_PORTS = (8001, 8002, 8003)
IPERF_PORT = 5201
VIP = "127.0.0.10"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOADS = ("keepalive", "close", "bulk1", "bulk4")


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    http: str  # host:port
    bulk: tuple[str, int]


TARGETS = (
    Target("direct", "direct (no proxy)", f"127.0.0.1:{HTTP_PORTS[0]}", ("127.0.0.1", IPERF_PORT)),
    Target("haproxy", "HAProxy 1T (mode tcp)", "127.0.0.1:8080", ("127.0.0.1", 5301)),
    Target("ironlb", "ironlb nft fast path", f"{VIP}:80", (VIP, IPERF_PORT)),
)


# --------------------------------------------------------------------------- the namespace


class Netns:
    """One fresh namespace with ``lo`` up; processes started in it are tracked."""

    def __init__(self) -> None:
        self.name = "ilbfpb" + secrets.token_hex(3)
        self.procs: list[subprocess.Popen[bytes]] = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*argv), check=True, capture_output=True, text=True, timeout=timeout
        )

    def start(self, log: Path, *argv: str) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self.argv(*argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def close(self) -> None:
        """Stop everything started here (and anything left in the namespace), remove it."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def _cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


@contextlib.contextmanager
def measure_cpu(ns: Netns) -> Iterator[dict[str, float]]:
    """CPU of the namespace's long-running processes plus our children (the clients)."""
    pids = ns.pids()
    before = _cpu_seconds(pids)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result: dict[str, float] = {}
    yield result
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["wall_s"] = time.monotonic() - start
    client = (after.ru_utime - kids.ru_utime) + (after.ru_stime - kids.ru_stime)
    result["cpu_s"] = _cpu_seconds(pids) - before + client


# --------------------------------------------------------------------------- set-up


def _wait_http(ns: Netns, hostport: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        out = subprocess.run(
            ns.argv("python3", "-c", _GET, hostport), capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0 and out.stdout.startswith("200"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: no HTTP 200 from {hostport}")


_GET = """
import sys, urllib.request
print(urllib.request.urlopen("http://" + sys.argv[1] + "/", timeout=3).status)
"""


def start_all(ns: Netns, tmp: Path) -> None:
    listens = "\n".join(f"    listen 127.0.0.1:{p} backlog=4096;" for p in HTTP_PORTS)
    (tmp / "nginx.conf").write_text(
        f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  server {{
{listens}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
    )
    nginx = ns.start(
        tmp / "nginx.log", "nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g",
        "daemon off;",
    )  # fmt: skip
    ns.start(tmp / "iperf3.log", "iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_PORT))
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(HTTP_PORTS))
    (tmp / "haproxy.cfg").write_text(
        f"""global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend web
  bind 127.0.0.1:8080
  default_backend web
backend web
  balance roundrobin
{servers}
frontend bulk
  bind 127.0.0.1:5301
  default_backend bulk
backend bulk
  server iperf 127.0.0.1:{IPERF_PORT}
"""
    )
    haproxy = ns.start(tmp / "haproxy.log", "haproxy", "-db", "-f", str(tmp / "haproxy.cfg"))
    http_backends = ", ".join(f"'127.0.0.1:{p}'" for p in HTTP_PORTS)
    (tmp / "lb.yaml").write_text(
        "defaults: {mode: nftables}\n"
        "listeners:\n"
        f"  - {{address: {VIP}, port: 80, backends: [{http_backends}]}}\n"
        f"  - {{address: {VIP}, port: {IPERF_PORT}, backends: ['127.0.0.1:{IPERF_PORT}']}}\n"
    )
    ironlb = ns.start(
        tmp / "ironlb.log", str(IRONLB), "forward", "--config", str(tmp / "lb.yaml"), "-w", "1"
    )
    _wait_http(ns, f"127.0.0.1:{HTTP_PORTS[0]}", nginx, "nginx")
    _wait_http(ns, "127.0.0.1:8080", haproxy, "haproxy")
    _wait_http(ns, f"{VIP}:80", ironlb, "ironlb fast path")


# --------------------------------------------------------------------------- loads


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.M)
    if not match:
        raise ValueError(f"wrk output without {pattern!r}:\n{text}")
    return match[1]


def run_wrk(ns: Netns, target: Target, seconds: float, close: bool) -> Sample:
    argv = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{target.http}/")
    with measure_cpu(ns) as cpu:
        out = subprocess.run(
            ns.argv(*argv), capture_output=True, text=True, timeout=seconds + 30, check=True
        ).stdout
    total = int(_find(r"(\d+) requests in", out))
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:  # a read "error" is the server's close after Connection: close
        errors += int(sock[1]) + int(sock[3]) + int(sock[4])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx[1]) if non2xx else 0
    return Sample(
        float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        wrk_ms(_find(r"^\s+50%\s+(\S+)", out)),
        wrk_ms(_find(r"^\s+99%\s+(\S+)", out)),
        cpu_pct=100 * cpu["cpu_s"] / cpu["wall_s"],
        cpu_us_per_op=1e6 * cpu["cpu_s"] / max(total, 1),
        errors=errors,
    )


def run_iperf(ns: Netns, target: Target, seconds: float, streams: int) -> Sample:
    host, port = target.bulk
    argv = ["iperf3", "-c", host, "-p", str(port), "-J", "-t", f"{seconds:g}"]
    argv += ["-P", str(streams)]
    report: dict[str, Any] = {}
    for attempt in range(3):
        with measure_cpu(ns) as cpu:
            out = subprocess.run(
                ns.argv(*argv), capture_output=True, text=True, timeout=seconds + 30
            )
        report = json.loads(out.stdout or "{}")
        if out.returncode == 0 and "error" not in report:
            break
        time.sleep(1.0 + attempt)  # the iperf3 server is still busy with the previous test
    else:
        raise RuntimeError(f"iperf3 via {target.name}: {report.get('error') or out.stderr}")
    received = report["end"]["sum_received"]
    gbit = received["bits_per_second"] / 1e9
    ms_per_gb = 1e3 * cpu["cpu_s"] / max(received["bytes"] / 1e9, 1e-9)
    return Sample(gbit, cpu_pct=100 * cpu["cpu_s"] / cpu["wall_s"], cpu_us_per_op=ms_per_gb)


def run_load(ns: Netns, target: Target, load: str, args: argparse.Namespace) -> Sample:
    if load in ("keepalive", "close"):
        return run_wrk(ns, target, args.wrk_seconds, close=load == "close")
    return run_iperf(ns, target, args.iperf_seconds, int(load.removeprefix("bulk")))


# --------------------------------------------------------------------------- report

CPU_COLUMNS: list[tuple[str, str, str, int]] = [
    ("CPU µs/request", "keepalive", "cpu_us_per_op", 1),
    ("CPU µs/connection", "close", "cpu_us_per_op", 1),
    ("CPU ms/GB bulk 1", "bulk1", "cpu_us_per_op", 0),
    ("CPU ms/GB bulk 4", "bulk4", "cpu_us_per_op", 0),
]


def _table(results: Results, columns: list[tuple[str, str, str, int]]) -> list[str]:
    lines = [
        "| " + " | ".join(["target", *(c[0] for c in columns)]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for t in TARGETS:
        cells = [fmt(results.median(t.name, load, attr), d) for _, load, attr, d in columns]
        lines.append("| " + " | ".join([t.label, *cells]) + " |")
    ratios = []
    for _, load, attr, _d in columns:
        a, b = results.median("ironlb", load, attr), results.median("haproxy", load, attr)
        ratios.append("n/a" if a is None or not b else f"{a / b:.2f}")
    lines.append("| " + " | ".join(["**ratio ironlb nft / HAProxy**", *ratios]) + " |")
    return lines


def render(
    results: Results, args: argparse.Namespace, facts: dict[str, str], elapsed: float
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m tests.bench.fastpath_bench " + shlex.join(sys.argv[1:])
    errors = [
        f"{t.label} {load}: {sum(s.errors for s in results.samples.get((t.name, load), []))}"
        for t in TARGETS
        for load in ("keepalive", "close")
        if any(s.errors for s in results.samples.get((t.name, load), []))
    ]
    out = [
        "## Fast path: ironlb nftables DNAT vs HAProxy (one network namespace)",
        "",
        f"Produced by `{command.strip()}` on {now} (took {elapsed / 60:.1f} min).",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
        "",
        f"Medians of {args.rounds} interleaved round(s); wrk -t1 -c50 -d{args.wrk_seconds:g}s"
        f" --latency (new connections: plus `-H 'Connection: close'`); iperf3"
        f" -t{args.iperf_seconds:g} -P 1 and -P 4.",
        "",
        *_table(results, LOAD_COLUMNS),
        "",
        "CPU of everything in the namespace (client, backends, proxy; the kernel's NAT and"
        " TCP work is charged to these processes), from /proc/PID/stat and the clients'"
        " rusage; 100 % = one core:",
        "",
        *_table(results, CPU_COLUMNS),
        "",
        "Errors (wrk connect/write/timeout + non-2xx): "
        + ("; ".join(errors) if errors else "none")
        + ".",
        "",
        "Method:",
        "",
        "- One fresh network namespace (lo only), removed afterwards; no proxy or rule"
        " touches the root namespace.",
        "- Backends: one nginx (worker_processes 1) on three ports = three round-robin"
        " backends; bulk to one iperf3 server (iperf3's control and data connections must"
        " reach the same server).",
        f"- ironlb: `ironlb forward` with `defaults: {{mode: nftables}}`; VIP {VIP} (a"
        " loopback address, no proxy process in the path: the table DNATs in the nat"
        " `output` hook, `numgen inc` over the ready backends; masquerade only for traffic"
        " that leaves through another interface than lo)."
        f" route_localnet in the namespace: {facts.get('route_localnet', '?')} (DNAT from"
        " 127.0.0.10 to 127.0.0.1 stays on lo and does not need it).",
        "- The fast-path table is loaded during the whole run, so conntrack is active for"
        " every target alike (as on any node with NAT rules).",
        "- Everything shares the machine's 2 cores with other work; rounds rotate the"
        " target order so drift hits all alike. Numbers are relative.",
    ]
    if args.rounds > 1:
        out += ["", "Per-round values (keep-alive req/s; new conn/s; bulk 1 / 4 Gbit/s):", ""]
        for t in TARGETS:
            vals = [
                ", ".join(
                    fmt(s.value, 2 if load.startswith("bulk") else 0)
                    for s in results.samples.get((t.name, load), [])
                )
                for load in LOADS
            ]
            out.append(f"- {t.label}: " + "; ".join(vals))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def machine_facts(ns: Netns) -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "kernel": os.uname().release,
        "HAProxy": first_line(["haproxy", "-v"]).split()[2],
        "nft": first_line(["nft", "--version"]).split()[1],
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "route_localnet": ns.run("sysctl", "-n", "net.ipv4.conf.lo.route_localnet").stdout.strip(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, short runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--wrk-seconds", type=float, help="per wrk run (default 8, quick 3)")
    parser.add_argument("--iperf-seconds", type=float, help="per iperf3 run (default 5, quick 2)")
    parser.add_argument("--out", type=Path, help="also write the markdown section here")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.wrk_seconds = args.wrk_seconds or (3.0 if args.quick else 8.0)
    args.iperf_seconds = args.iperf_seconds or (2.0 if args.quick else 5.0)
    if args.rounds < 1 or args.wrk_seconds <= 0 or args.iperf_seconds <= 0:
        parser.error("--rounds, --wrk-seconds and --iperf-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("fastpath_bench: needs root (network namespace, nftables)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_interrupt)
    started = time.monotonic()
    results = Results()
    ns = Netns()
    try:
        with tempfile.TemporaryDirectory(prefix="ironlb-fpbench-") as tmpdir:
            tmp = Path(tmpdir)
            os.chmod(tmp, 0o755)  # nginx workers run as www-data
            facts = machine_facts(ns)
            start_all(ns, tmp)
            for rnd in range(args.rounds):
                order = TARGETS[rnd % len(TARGETS) :] + TARGETS[: rnd % len(TARGETS)]
                for load in LOADS:
                    for target in order:
                        sample = run_load(ns, target, load, args)
                        results.add(target.name, load, sample)
                        print(
                            f"round {rnd + 1}/{args.rounds} {target.name:8} {load:9} "
                            f"{sample.value:,.2f}",
                            file=sys.stderr,
                            flush=True,
                        )
            text = render(results, args, facts, time.monotonic() - started)
    finally:
        ns.close()
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
