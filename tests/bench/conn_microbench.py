"""Micro-benchmark: proxy CPU per NEW connection, ironlb variants vs HAProxy, A/B style.

Only the new-connection load of the full benchmark (``wrk -H 'Connection: close'``), but
with the CPU split into user and system time and with several ironlb source trees side by
side, so that a change can be judged by CPU microseconds per connection (robust on a
noisy machine) over interleaved rounds rather than by raw connections/s. One nginx serves
three backend ports; every proxy round-robins over them with one worker / thread.

    python -m tests.bench.conn_microbench [--rounds 8] [--seconds 4] \\
        [--haproxy] NAME=SRC_DIR [NAME=SRC_DIR ...]

``SRC_DIR`` is a directory holding an ``ironlb`` package (e.g. a copy of the tree before a
change, or ``.`` for the working tree); it is put first on ``PYTHONPATH`` of that proxy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench._procs import CLK_TCK, ProcessSet, free_port, process_tree, wait_for_port

PYTHON = Path(sys.executable)


@dataclass
class Proxy:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    cpu_us: list[float] = field(default_factory=list)
    user_us: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)


def user_system(pids: list[int]) -> tuple[float, float]:
    """Summed utime and stime (seconds) of ``pids``; vanished pids count 0."""
    user = system = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def start_backends(procs: ProcessSet, tmp: Path) -> list[int]:
    ports = [free_port() for _ in range(3)]
    listens = "\n".join(f"    listen 127.0.0.1:{p} backlog=4096;" for p in ports)
    conf = tmp / "backend.conf"
    conf.write_text(
        f"worker_processes 1;\npid {tmp}/backend.pid;\nerror_log {tmp}/backend.err warn;\n"
        "events { worker_connections 16384; }\n"
        "http {\n  access_log off;\n  server {\n"
        f"{listens}\n"
        '    location / { return 200 "ok\\n"; }\n  }\n}\n'
    )
    nginx = procs.start("backend", ["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"])
    for port in ports:
        wait_for_port(port, nginx)
    return ports


def start_haproxy(procs: ProcessSet, tmp: Path, backends: list[int]) -> Proxy:
    port = free_port()
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        "global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
        "  timeout client 60s\n  timeout server 60s\n"
        f"frontend web\n  bind 127.0.0.1:{port}\n  default_backend web\n"
        f"backend web\n  balance roundrobin\n{servers}\n"
    )
    proc = procs.start("haproxy", ["haproxy", "-db", "-f", str(conf)])
    wait_for_port(port, proc)
    return Proxy("haproxy", port, proc)


def start_ironlb(procs: ProcessSet, tmp: Path, backends: list[int], name: str, src: str) -> Proxy:
    port = free_port()
    listed = ", ".join(f'"127.0.0.1:{p}"' for p in backends)
    conf = tmp / f"{name}.yaml"
    conf.write_text(
        f"listeners:\n  - address: 127.0.0.1\n    port: {port}\n"
        f"    protocol: tcp\n    backends: [{listed}]\n"
    )
    # ProcessSet.start has no env parameter: the source tree goes on sys.path in -c.
    code = (
        f"import sys; sys.path.insert(0, {str(Path(src).resolve())!r}); "
        "from ironlb.cli import main; sys.exit(main())"
    )
    argv = [str(PYTHON), "-c", code, "forward", "--config", str(conf), "--workers", "1"]
    proc = procs.start(name, argv)
    wait_for_port(port, proc)
    return Proxy(name, port, proc)


def run_round(proxy: Proxy, seconds: float) -> None:
    before = user_system(process_tree(proxy.proc.pid))
    argv = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "-H", "Connection: close"]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{proxy.port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    after = user_system(process_tree(proxy.proc.pid))
    total = int(out.split(" requests in")[0].split()[-1])
    if "Socket errors" in out or "Non-2xx" in out:
        print(f"  {proxy.name}: wrk reported errors", file=sys.stderr)
    user, system = after[0] - before[0], after[1] - before[1]
    proxy.cpu_us.append(1e6 * (user + system) / max(total, 1))
    proxy.user_us.append(1e6 * user / max(total, 1))
    proxy.rate.append(total / seconds)
    print(f"  {proxy.name:12s} {proxy.cpu_us[-1]:7.1f} us/conn  {proxy.rate[-1]:8.0f} conn/s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--haproxy", action="store_true", help="also measure HAProxy 1 thread")
    parser.add_argument("trees", nargs="*", metavar="NAME=SRC_DIR", default=["ironlb=."])
    args = parser.parse_args(argv)
    for tree in args.trees:
        name, sep, src = tree.partition("=")
        if not sep or not name or not (Path(src) / "ironlb" / "__init__.py").is_file():
            parser.error(f"{tree!r}: expected NAME=DIR where DIR/ironlb is a package")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ironlb-connbench-"))
    procs = ProcessSet(tmp)
    try:
        backends = start_backends(procs, tmp)
        proxies = [start_haproxy(procs, tmp, backends)] if args.haproxy else []
        for tree in args.trees:
            name, _, src = tree.partition("=")
            proxies.append(start_ironlb(procs, tmp, backends, name, src))
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}")
            shift = r % len(proxies)
            for proxy in proxies[shift:] + proxies[:shift]:
                run_round(proxy, args.seconds)
        print("\nmedians: CPU us per new connection (user part), connections/s")
        for proxy in proxies:
            print(
                f"{proxy.name:12s} {statistics.median(proxy.cpu_us):7.1f} us "
                f"(user {statistics.median(proxy.user_us):5.1f})  "
                f"{statistics.median(proxy.rate):8.0f} conn/s"
            )
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
