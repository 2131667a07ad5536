"""Benchmark the allocation controller: N Services through the local API server.

``python -m tests.bench.bench_controller [--services 10000] [--workers 4]``

Starts the local API server in a thread, ``ironlb controller`` as a
subprocess (its own core, as in a cluster), installs the CRD and a pool, then
creates N ``type: LoadBalancer`` Services with the ``kubernetes`` client from
a few worker threads and measures how long until every Service shows an IP.
Then restarts the controller and checks that no IP moved, and deletes every
Service and waits until the pool's status counts zero used. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from ironlb.lab.apiserver import run_in_thread
from tests import support

CRD = Path(__file__).resolve().parents[2] / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
GROUP, VERSION, PLURAL = "ironlb.io", "v1alpha1", "ipaddresspools"


@contextlib.contextmanager
def controller(kubeconfig: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ironlb.cli",
                "controller",
                "--namespace",
                "ironlb-system",
                "--identity",
                f"bench-{time.monotonic_ns()}",
                "--lease-duration",
                "5",
                "--renew-period",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(what: str, probe: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``probe`` holds (polled every second); exits the run on timeout."""
    start = time.monotonic()
    try:
        support.wait_for(probe, timeout, what=what, interval=1.0)
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None
    return time.monotonic() - start


def ips_by_service(core: client.CoreV1Api) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {}
    token = None
    while True:
        page = core.list_namespaced_service("bench", limit=2000, _continue=token)
        for svc in page.items:
            ingress = (svc.status.load_balancer and svc.status.load_balancer.ingress) or []
            result[svc.metadata.name] = tuple(i.ip for i in ingress)
        token = page.metadata._continue
        if not token:
            return result


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,  # 10k Services > the NodePort range
            "selector": {"app": name},
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    }


def add(rows: list[tuple[str, str]], new: list[tuple[str, str]]) -> None:
    """Keep the row and show it at once (stderr): a long run is visible as it goes."""
    rows += new
    for name, value in new:
        print(f"{name}: {value}", file=sys.stderr, flush=True)


def run(services: int, workers: int, keep_log: Path | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with run_in_thread() as api, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        log = Path(tmp) / "controller.log"
        k8s = config.new_client_from_config(str(kubeconfig))
        core = client.CoreV1Api(k8s)
        custom = client.CustomObjectsApi(k8s)
        client.ApiextensionsV1Api(k8s).create_custom_resource_definition(
            yaml.safe_load(CRD.read_text())
        )
        for ns in ("ironlb-system", "bench"):
            core.create_namespace({"metadata": {"name": ns}})
        time.sleep(0.5)
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "IPAddressPool",
                "metadata": {"name": "bench"},
                "spec": {"addresses": ["198.18.0.0/16"]},
            },
        )

        def used() -> int:
            pool = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "bench")
            return int((pool.get("status") or {}).get("used", -1))

        with controller(kubeconfig, log):
            wait_for("the controller", lambda: "controller active" in log.read_text(), 60)
            start = time.monotonic()
            with ThreadPoolExecutor(workers) as pool:
                list(
                    pool.map(
                        lambda i: core.create_namespaced_service("bench", service(f"svc-{i}")),
                        range(services),
                    )
                )
            created = time.monotonic() - start
            wait_for(
                "all IPs", lambda: all(ips_by_service(core).values()), timeout=services * 0.1 + 60
            )
            allocated = time.monotonic() - start
            wait_for("pool status", lambda: used() == services, 60)
            counted = time.monotonic() - start
            before = ips_by_service(core)
        add(
            rows,
            [
                ("services", str(services)),
                (f"create (client, {workers} workers)", f"{created:.1f} s"),
                ("all have an IP", f"{allocated:.1f} s ({services / allocated:.0f} services/s)"),
                ("pool status counts them", f"{counted:.1f} s"),
            ],
        )
        if keep_log is not None:
            keep_log.write_text(log.read_text())
        log.write_text("")
        with controller(kubeconfig, log):
            restart = wait_for("restart", lambda: "controller active" in log.read_text(), 300)
            after = ips_by_service(core)
            if keep_log is not None:
                keep_log.with_suffix(".restart.log").write_text(log.read_text())
            moved = sum(1 for name, ips in before.items() if after.get(name) != ips)
            add(
                rows,
                [
                    ("restart: state rebuilt", f"{restart:.1f} s"),
                    ("restart: IPs changed", str(moved)),
                ],
            )
            start = time.monotonic()
            with ThreadPoolExecutor(workers) as pool:
                list(
                    pool.map(
                        lambda i: core.delete_namespaced_service(f"svc-{i}", "bench"),
                        range(services),
                    )
                )
            deleted = time.monotonic() - start
            wait_for("pool drained", lambda: used() == 0, 120)
            drained = time.monotonic() - start
            add(
                rows,
                [
                    ("delete (client)", f"{deleted:.1f} s"),
                    ("pool status back to 0 used", f"{drained:.1f} s"),
                ],
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keep-log", type=Path, help="copy the controller's log here")
    args = parser.parse_args(argv)
    rows = run(args.services, args.workers, args.keep_log)
    print("| controller benchmark | result |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
