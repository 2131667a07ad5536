"""Command-line adapter for ``ironlb lab cluster up|down`` (arguments, state file, output).

``up`` runs a :class:`~ironlb.lab.labcluster.LabCluster` (API server, LAN of
``--nodes`` nodes and a client, Nodes, kubelets, workload controllers when
present) in the foreground until SIGTERM/SIGINT, or with ``--detach`` starts
that same foreground command in the background, waits until it is up, and
returns. Either way the running process writes ``DIR/state.json`` (prefix,
pid, API URL, kubeconfig) once everything is up, and its log goes to
``DIR/cluster.log`` when detached. ``DIR`` defaults to
``/tmp/ironlb-lab/<prefix>``.

``down`` stops the process named in the state file (SIGTERM, then SIGKILL
after a grace period) and then removes every ``<prefix>-*`` namespace and
kills what still runs in them, so it also cleans up after a crashed ``up``
(every Pod process lives in a lab namespace, nft tables die with their
namespace). It removes the files ``up`` wrote and ``DIR`` if left empty.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STATE_ROOT = Path("/tmp/ironlb-lab")
STATE_FILE = "state.json"
LOG_FILE = "cluster.log"
START_TIMEOUT = 60.0  # seconds a detached `up` may take
STOP_GRACE = 30.0  # seconds `down` waits after SIGTERM before SIGKILL
_WRITTEN = (STATE_FILE, LOG_FILE, "kubeconfig", "kubelet")


class ClusterCliError(RuntimeError):
    """A one-line reason the command cannot do what was asked."""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="cluster_action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="run API + LAN + kubelets (foreground, or --detach)")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--prefix", help="namespace name prefix (default: ilb + random)")
    up.add_argument("--dir", help="state directory (default /tmp/ironlb-lab/<prefix>)")
    up.add_argument("--api-port", type=int, default=0, help="API port on 127.0.0.1 (default: free)")
    up.add_argument("--detach", action="store_true", help="run in the background and return")
    up.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # set by --detach
    down = actions.add_parser("down", help="stop a cluster and remove everything it made")
    down.add_argument("--prefix", help="prefix printed by `up` (default: the only one running)")
    down.add_argument("--dir", help="state directory given to `up`")


def state_dir(prefix: str, given: str | None) -> Path:
    return Path(given) if given else STATE_ROOT / prefix


def read_state(directory: Path) -> dict[str, Any] | None:
    """The state file of ``directory``; None if absent or unreadable (a crashed ``up``)."""
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def usage(state: dict[str, Any]) -> str:
    """What ``up`` prints: where the API is and how to use it."""
    prefix = state["prefix"]
    return "\n".join(
        [
            f"lab cluster {prefix}: {state['nodes']} node(s) + client, API {state['api_url']}",
            f"  export KUBECONFIG={state['kubeconfig']}",
            "  kubectl get nodes",
            f"  ip netns exec {prefix}-client curl http://<pod IP or VIP>:8080/",
            f"  ironlb lab cluster down --prefix {prefix}"
            + (f" --dir {state['dir']}" if state.get("custom_dir") else ""),
        ]
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (``/proc/PID/stat`` field 22, clock ticks since boot), None if gone.

    With the pid it names one process for good: a reused pid has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _foreground(args: argparse.Namespace, prefix: str, directory: Path) -> int:
    import asyncio
    import logging

    from ironlb.lab.labcluster import LabCluster

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def serve() -> None:
        cluster = LabCluster(directory, nodes=args.nodes, prefix=prefix, api_port=args.api_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await cluster.start()
        state = {
            "prefix": prefix,
            "pid": os.getpid(),
            "start_ticks": start_ticks(os.getpid()),
            "nodes": args.nodes,
            "api_url": cluster.url,
            "kubeconfig": str(cluster.kubeconfig),
            "dir": str(directory),
            "custom_dir": directory != STATE_ROOT / prefix,
            "workloads": cluster.workloads,
        }
        try:
            tmp = directory / f".{STATE_FILE}.tmp"
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(directory / STATE_FILE)
            if not args.child:
                print(usage(state), flush=True)
            await stop.wait()
        finally:
            await cluster.stop()
            (directory / STATE_FILE).unlink(missing_ok=True)

    asyncio.run(serve())
    return 0


def _detach(args: argparse.Namespace, prefix: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ironlb.cli", "lab", "cluster", "up", "--prefix", prefix]
    argv += ["--nodes", str(args.nodes), "--dir", str(directory), "--api-port", str(args.api_port)]
    (directory / STATE_FILE).unlink(missing_ok=True)
    with open(directory / LOG_FILE, "ab") as log:
        child = subprocess.Popen(
            [*argv, "--child"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state is not None and state.get("pid") == child.pid:
            print(usage(state))
            return 0
        if child.poll() is not None:
            lines = (directory / LOG_FILE).read_text(errors="replace").strip().splitlines()
            raise ClusterCliError(
                f"cluster did not come up (exit {child.returncode}): "
                f"{lines[-1] if lines else 'no output'} (log {directory / LOG_FILE})"
            )
        time.sleep(0.05)
    child.terminate()
    raise ClusterCliError(f"cluster not up within {START_TIMEOUT:g} s (log {directory / LOG_FILE})")


def _find_running() -> str:
    found = sorted(p.parent.name for p in STATE_ROOT.glob(f"*/{STATE_FILE}"))
    if len(found) != 1:
        raise ClusterCliError(
            "give --prefix: "
            + (f"several clusters run ({', '.join(found)})" if found else "no cluster state found")
        )
    return found[0]


def down(prefix: str, directory: Path) -> dict[str, Any]:
    """Stop the cluster of ``prefix`` and remove all it made; returns what was done."""
    from ironlb.lab.netlab import cleanup_stale

    state = read_state(directory)
    stopped = None
    if state is not None and isinstance(state.get("pid"), int) and state.get("prefix") == prefix:
        pid = int(state["pid"])
        if _alive(pid) and start_ticks(pid) == state.get("start_ticks"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stopped = pid
    removed = cleanup_stale(prefix)
    for name in _WRITTEN:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()
    return {"prefix": prefix, "stopped_pid": stopped, "removed": removed}


def run(args: argparse.Namespace) -> int:
    from ironlb.lab.netlab import LabError
    from ironlb.lab.netlab.nsutil import list_netns
    from ironlb.lab.netlab.plan import MAX_NODES, random_prefix, validate_prefix

    try:
        if args.cluster_action == "up":
            prefix = validate_prefix(args.prefix) if args.prefix else random_prefix()
            directory = state_dir(prefix, args.dir)
            if not args.child:
                if not 1 <= args.nodes <= MAX_NODES:
                    raise LabError(f"nodes must be 1..{MAX_NODES}, got {args.nodes}")
                in_use = list_netns(prefix)
                if in_use:
                    raise LabError(
                        f"lab prefix {prefix!r} is in use (namespaces: {', '.join(in_use)}); "
                        f"remove them with `ironlb lab cluster down --prefix {prefix}`"
                    )
                if args.detach:
                    return _detach(args, prefix, directory)
            return _foreground(args, prefix, directory)
        prefix = validate_prefix(args.prefix) if args.prefix else _find_running()
        done = down(prefix, state_dir(prefix, args.dir))
    except (LabError, ClusterCliError) as exc:
        print(f"ironlb lab cluster: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"ironlb lab cluster: needs root: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ironlb lab cluster: {exc}", file=sys.stderr)
        return 1
    removed = done["removed"]
    if done["stopped_pid"] and not removed:  # the cluster process removed its own on SIGTERM
        print(f"stopped pid {done['stopped_pid']}, which removed its namespaces")
        return 0
    stopped = f"stopped pid {done['stopped_pid']}, " if done["stopped_pid"] else ""
    print(f"{stopped}removed {len(removed)} namespace(s): {' '.join(removed) or '-'}")
    return 0
