"""Speaker benchmarks (root, in the lab): failover gap, rolling restart, planning at scale.

* **Failover gap**: a client namespace opens a new TCP connection to the VIP
  every 20 ms (200 ms connect timeout); the owning node's speaker is SIGKILLed
  (its whole process group: workers too). The gap is from the kill to the
  client's first successful connection after it. Repeated ``--trials`` times
  (the killed speaker is restarted between trials); median and max.
* **Rolling restart**: the client loops over new connections while every
  speaker in turn gets SIGTERM (hand-over + drain) and is started again;
  failed connections are counted.
* **Throughput through the lab**: ``wrk -t1 -c50`` from the client namespace
  (``net.ipv4.tcp_tw_reuse=1`` there, so the client's TIME_WAIT does not cap
  it) to a proxy-mode VIP and a kernel-mode VIP, and to HAProxy 2.6 (``mode
  tcp``, one thread) running in the owning node's namespace in front of the
  same six pods. The pod server answers HTTP/1.0 and closes, so every request
  is a new connection. Interleaved rounds, medians, ratios against HAProxy.
* **Planning at scale**: ``plan_node`` over ``--services`` Services x 10
  endpoints, after one endpoint change (p50/p99 of ``--changes`` changes),
  and the memory the view and the plan take (tracemalloc). This is the pure
  part of an endpoint change; the data plane's apply comes on top.

Prints one markdown section on stdout. Run: ``python -m tests.bench.speaker_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tests.e2e.cluster import POD_TCP, Cluster, cluster
from tests.support import eventually

PROBE = """
import json, socket, sys, time
stop_at = time.monotonic() + float(sys.argv[1])
out = []
while time.monotonic() < stop_at:
    t = time.monotonic()
    try:
        s = socket.create_connection(("%(vip)s", 80), timeout=0.2)
        s.settimeout(1.0)
        s.sendall(b"hi\\n")
        ok = s.recv(64).endswith(b"\\n")
        s.close()
    except OSError:
        ok = False
    out.append((t, ok))
    time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
print(json.dumps(out))
"""


async def owner(cl: Cluster) -> str:
    macs: list[str] = await eventually(lambda: cl.arp_macs(VIP[0]), what="an ARP answer")
    return cl.node_by_mac(macs[0])


VIP: list[str] = []


async def probe(cl: Cluster, seconds: float) -> list[tuple[float, bool]]:
    code = PROBE % {"vip": VIP[0]}
    out = await asyncio.to_thread(
        cl.lab.run, cl.lab.client, sys.executable, "-c", code, str(seconds), timeout=seconds + 30
    )
    return [(t, ok) for t, ok in json.loads(out.stdout)]


async def failover(cl: Cluster, trials: int) -> list[float]:
    gaps: list[float] = []
    for _ in range(trials):
        current = await owner(cl)
        running = asyncio.create_task(probe(cl, 4.0))
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        await asyncio.to_thread(cl.stop_speaker, current, signal.SIGKILL)
        samples = await running
        after = [t for t, ok in samples if ok and t > killed]
        gaps.append(after[0] - killed if after else float("inf"))
        cl.start_speaker(cl.lab.host(current))
        await asyncio.sleep(4.0)  # lease + settle: the node is a candidate again
    return gaps


async def rolling(cl: Cluster) -> tuple[int, int]:
    seconds = 8.0 * len(cl.lab.nodes) + 4
    running = asyncio.create_task(probe(cl, seconds))
    await asyncio.sleep(2.0)
    for node in cl.lab.nodes:
        await asyncio.to_thread(cl.stop_speaker, node.name, signal.SIGTERM)
        cl.start_speaker(node)
        await asyncio.sleep(6.0)
    samples = await running
    return sum(1 for _, ok in samples if not ok), len(samples)


def planning(services: int, changes: int) -> tuple[float, float, float]:
    from ironlb.speaker.election import node_info
    from ironlb.speaker.plan import plan_node

    nodes = {f"node{i}": node_info({"metadata": {"name": f"node{i}"}}) for i in range(1, 4)}
    svcs: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    for i in range(services):
        name = f"svc{i}"
        svcs.append(
            {
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
                "status": {
                    "loadBalancer": {"ingress": [{"ip": f"198.18.{100 + i // 250}.{i % 250 + 1}"}]}
                },
            }
        )
        slices.append(
            {
                "metadata": {
                    "name": f"{name}-x",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [f"198.19.{j % 3 + 1}.{10 + (i * 10 + j) % 200}"],
                        "conditions": {"ready": True},
                        "nodeName": f"node{j % 3 + 1}",
                    }
                    for j in range(10)
                ],
            }
        )
    alive = frozenset(nodes)
    times: list[float] = []
    for k in range(changes):
        target = slices[k % services]["endpoints"][0]["conditions"]
        target["ready"] = not target["ready"]
        start = time.perf_counter()
        plan_node(node="node1", services=svcs, slices=slices, nodes=nodes, pools={}, alive=alive)
        times.append(time.perf_counter() - start)
    # Memory apart from the timings (tracemalloc slows every allocation down).
    tracemalloc.start()
    copies = copy.deepcopy((svcs, slices))
    plan_node(
        node="node1", services=copies[0], slices=copies[1], nodes=nodes, pools={}, alive=alive
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99, peak / 2**20


def wrk(cl: Cluster, url: str, seconds: int) -> float:
    out = cl.lab.run(
        cl.lab.client, "wrk", "-t1", "-c50", f"-d{seconds}s", url, timeout=seconds + 30
    ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"no wrk result: {out}")


async def throughput(cl: Cluster, rounds: int, seconds: int) -> dict[str, float] | None:
    if shutil.which("wrk") is None or shutil.which("haproxy") is None:
        return None
    cl.lab.run(cl.lab.client, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    kvip = await cl.expose("kweb", cl.lab.pods, annotations={"ironlb.io/forwarding-mode": "kernel"})
    node = cl.lab.host(await owner(cl))
    servers = "\n".join(f"  server {p.name} {p.ipv4}:{POD_TCP}" for p in cl.lab.pods)
    conf = Path(tempfile.mkdtemp(prefix="ironlb-haproxy-")) / "haproxy.cfg"
    conf.write_text(
        "global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
        "  timeout client 60s\n  timeout server 60s\n"
        f"frontend web\n  bind {node.ipv4}:8088\n  default_backend web\n"
        f"backend web\n  balance roundrobin\n{servers}\n"
    )
    haproxy = cl.lab.popen(node, "haproxy", "-db", "-f", str(conf))
    try:
        await asyncio.sleep(1.0)
        targets = {
            "ironlb proxy mode": f"http://{VIP[0]}:80/",
            "ironlb kernel mode": f"http://{kvip}:80/",
            "HAProxy on the owning node": f"http://{node.ipv4}:8088/",
        }
        results: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, url in targets.items():
                results[name].append(await asyncio.to_thread(wrk, cl, url, seconds))
        return {name: statistics.median(values) for name, values in results.items()}
    finally:
        haproxy.terminate()
        haproxy.wait(10)


async def lab_part(
    trials: int, rounds: int, seconds: int
) -> tuple[list[float], tuple[int, int], dict[str, float] | None]:
    with tempfile.TemporaryDirectory(prefix="ironlb-speaker-bench-") as tmp:
        async with cluster(Path(tmp)) as cl:
            VIP[:] = [await cl.expose("web", cl.lab.pods)]
            await asyncio.sleep(3.0)
            gaps = await failover(cl, trials)
            lost = await rolling(cl)
            rates = await throughput(cl, rounds, seconds)
    return gaps, lost, rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    args = parser.parse_args(argv)
    gaps, (failed, total), rates = asyncio.run(lab_part(args.trials, args.rounds, args.seconds))
    p50, p99, mib = planning(args.services, args.changes)
    print("Command: `python -m tests.bench.speaker_bench` (root; 3 lab nodes, 6 pods).\n")
    print("| measure | result |")
    print("| --- | --- |")
    finite = [g for g in gaps if g != float("inf")]
    print(
        f"| failover gap after SIGKILL of the owner ({len(gaps)} trials) | median "
        f"{statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms"
        f"{'' if len(finite) == len(gaps) else ' (some trials never recovered)'} |"
    )
    print(f"| failed connections across a rolling restart of every speaker | {failed} of {total} |")
    print(
        f"| plan after one endpoint change, {args.services} Services x 10 endpoints | "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms |"
    )
    print(f"| memory of the objects and the plan (tracemalloc peak) | {mib:.0f} MiB |")
    print()
    if rates is None:
        print("Throughput: skipped (wrk or haproxy missing; `make bench` installs them).")
        return 0
    base = rates["HAProxy on the owning node"]
    print(
        f"Throughput, new connection per request (`wrk -t1 -c50 -d{args.seconds}s`, "
        f"{args.rounds} interleaved rounds, medians):\n"
    )
    print("| target | requests/s | vs HAProxy |")
    print("| --- | --- | --- |")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
