"""``make demo``: ironlb's main job shown end to end in the lab, one step at a time.

``python -m ironlb.lab.demo [--prefix P] [--dir DIR]`` (root) brings up a
:class:`~ironlb.lab.labcluster.LabCluster` (API, three nodes, a client host),
installs ``charts/ironlb`` into it with Helm, creates a pool, a Deployment
and a LoadBalancer Service with ``lbctl`` and ``kubectl``, shows round-robin
answers and the ARP answer from the client, kills the announcing speaker
while a client loop (:mod:`ironlb.lab.demo_probe`) measures the gap, and
tears everything down, also on Ctrl-C (SIGINT), SIGTERM or a failed step.

Every step prints the real commands it runs (``$ kubectl ...``), their real
output, and one plain sentence of what that shows. The steps are small
coroutines over one :class:`Demo` (the cluster, the environment the commands
run with); the commands run as subprocesses so that the event loop, which also
runs the lab API server and kubelets, never blocks. Exit status: 0 when every
step worked, 1 with a one-line ``demo failed: ...`` otherwise, 130 after
SIGINT / 143 after SIGTERM (everything torn down in each case).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ironlb.lab.helm import Helm, HelmFailed
from ironlb.lab.labcluster import LabCluster
from ironlb.lab.netlab import LabError
from ironlb.lab.netlab.plan import validate_prefix, vip_address
from ironlb.operator.service_request import ANNOUNCING_NODE

T = TypeVar("T")

CHART = Path(__file__).resolve().parents[2] / "charts" / "ironlb"
RELEASE = "ironlb"
#: Where the chart goes (``helm install -n ironlb-system --create-namespace``), where
#: lbctl looks by default.
NAMESPACE = "ironlb-system"
#: The pool: ten addresses reserved for VIPs on the lab LAN (198.18.0.200-209).
POOL = f"{vip_address(0)}-{vip_address(9)}"
COMMAND_TIMEOUT = 60.0  # seconds any one command may take
WAIT_TIMEOUT = 90.0  # seconds a step waits for the cluster to get somewhere

#: The chart values the lab needs, each with the one line the demo prints for it.
LAB_VALUES: list[tuple[str, Any, str]] = [
    ("image.repository", "ironlb", "the lab kubelet runs images named *ironlb from this tree"),
    ("image.tag", "dev", "the tag `make image` builds; the lab runs this checkout's code"),
    (
        "webhook.enabled",
        False,
        "the lab API calls webhooks only by URL from the host, which cannot reach pod IPs",
    ),
    (
        "speaker.arpSysctlsInitContainer",
        False,
        "the lab kubelet runs no init containers; the lab nodes already set arp_ignore=1",
    ),
    ("speaker.interfaces", ["eth0"], "answer ARP on the LAN interface only, not the pod bridge"),
    (
        "speaker.drainSeconds",
        0,
        "a stopped speaker leaves at once (no open connections to wait for)",
    ),
    ("controller.replicas", 1, "one controller is enough on this 3-node lab"),
]


class DemoFailed(RuntimeError):
    """A step did not get where it should; the message is one line."""


def lab_values() -> dict[str, Any]:
    """``LAB_VALUES`` as the nested mapping Helm takes (``a.b: v`` -> ``{"a": {"b": v}}``)."""
    values: dict[str, Any] = {}
    for dotted, value, _ in LAB_VALUES:
        *parents, leaf = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


def set_value(value: Any) -> str:
    """``value`` as ``helm --set`` spells it: ``false``, ``0``, ``ironlb``, ``{eth0}``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "{" + ",".join(str(v) for v in value) + "}"
    return str(value)


def out(text: str = "") -> None:
    """Print one line now (the demo is read as it runs, also through a pipe)."""
    print(text, flush=True)


def step(number: int, title: str) -> None:
    out()
    out(f"=== {number}. {title}")


def shows(sentence: str) -> None:
    out(f"--> {sentence}")


class Demo:
    """One demo run over a started cluster: runs commands and reads the cluster."""

    def __init__(self, cluster: LabCluster) -> None:
        self.cluster = cluster
        self.client_netns = cluster.lab.client.netns
        bindir = str(Path(sys.executable).parent)
        tree = str(Path(__file__).resolve().parents[2])
        self.env = dict(os.environ)
        self.env["KUBECONFIG"] = str(cluster.kubeconfig)
        self.env["PATH"] = f"{bindir}:{self.env.get('PATH', '/usr/bin:/bin')}"
        self.env["PYTHONPATH"] = tree + (
            f":{self.env['PYTHONPATH']}" if self.env.get("PYTHONPATH") else ""
        )
        self.lbctl = [str(Path(bindir) / "lbctl")]
        if not Path(self.lbctl[0]).exists():
            self.lbctl = [
                sys.executable,
                "-c",
                "import sys; from ironlb.lbctl.cli import main; sys.exit(main())",
            ]

    async def run(
        self, argv: Sequence[str], *, show: str | None = None, echo: bool = True, check: bool = True
    ) -> str:
        """Run ``argv``; print ``$ show`` (or the command) and its output when ``echo``.

        Returns stdout+stderr. Raises ``DemoFailed`` on a non-zero exit (``check``) or
        after ``COMMAND_TIMEOUT`` seconds.
        """
        shown = show or shlex.join(argv)
        if echo:
            out(f"$ {shown}")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
        )
        try:
            data, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        text = data.decode(errors="replace").rstrip("\n")
        if echo and text:
            out(text)
        if check and proc.returncode != 0:
            last = text.splitlines()[-1] if text else "no output"
            raise DemoFailed(f"`{shown}` exited {proc.returncode}: {last}")
        return text

    async def in_client(self, argv: Sequence[str], **kw: Any) -> str:
        """Run ``argv`` on the lab's client host, shown as ``client$ ...``."""
        full = ["ip", "netns", "exec", self.client_netns, *argv]
        return await self.run(full, show=kw.pop("show", None) or shlex.join(full), **kw)

    async def kubectl_json(self, *args: str) -> Any:
        """``kubectl ... -o json``, not printed (the demo's own polling)."""
        return json.loads(await self.run(["kubectl", *args, "-o", "json"], echo=False))

    async def wait_for(
        self, what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = WAIT_TIMEOUT
    ) -> T:
        """Poll the coroutine function ``probe`` until truthy; DemoFailed after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(DemoFailed, ValueError):
                result = await probe()
                if result:
                    return result
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(0.3)

    def node_of_mac(self, mac: str) -> str:
        """The lab host whose LAN MAC is ``mac`` (case-insensitive), or ``?``."""
        for host in self.cluster.lab.nodes:
            if host.mac.lower() == mac.lower():
                return host.name
        return "?"


# -- the steps ---------------------------------------------------------------------------


async def show_cluster(demo: Demo) -> None:
    step(1, "The lab cluster: a Kubernetes API, three nodes, a client host on one LAN")
    await demo.run(["kubectl", "get", "nodes", "-o", "wide"])
    shows(
        "three Ready nodes on the LAN 198.18.0.0/24; the client host is 198.18.0.1, "
        f"and pods run as processes in network namespaces {demo.cluster.prefix}-*"
    )


async def install_chart(demo: Demo) -> None:
    step(2, "helm install ironlb charts/ironlb (controller Deployment, speaker DaemonSet)")
    sets = ",".join(f"{k}={set_value(v)}" for k, v, _ in LAB_VALUES)
    out(f"$ helm install {RELEASE} charts/ironlb -n {NAMESPACE} --create-namespace --set {sets}")
    out("  (Helm v4 through ironlb.lab.helm, in this process: no helm binary needed)")
    out("  lab values:")
    for key, value, why in LAB_VALUES:
        out(f"    {key}={set_value(value)}: {why}")

    def install() -> str:
        with Helm(demo.cluster.kubeconfig, NAMESPACE) as helm:
            rel = helm.install(CHART, RELEASE, lab_values(), timeout=60, create_namespace=True)
        return f"{rel.name}: revision {rel.revision}, {rel.status}, chart {rel.chart}"

    out(await asyncio.to_thread(install))

    async def ready() -> bool:
        pods = (
            await demo.kubectl_json(
                "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=ironlb"
            )
        )["items"]
        return len(pods) == 4 and all(_ready(p) for p in pods)

    await demo.wait_for("the controller and three speakers Ready", ready)
    await demo.run(["kubectl", "get", "pods", "-n", NAMESPACE, "-o", "wide"])
    shows("the controller runs in a pod; one speaker per node runs on the node's own network")


def _ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


async def create_service(demo: Demo) -> str:
    step(3, "A pool, a Deployment of three pods, and a LoadBalancer Service for it")
    await demo.run(
        [*demo.lbctl, "pool", "create", "demo", "--addresses", POOL],
        show=f"lbctl pool create demo --addresses {POOL}",
    )
    shows(f"ironlb may hand out the ten addresses {POOL} to Services")
    await demo.run(
        [
            "kubectl",
            "create",
            "deployment",
            "web",
            "--image=lab/podserver",
            "--replicas=3",
            "--port=8080",
        ]
    )

    async def pods_ready() -> bool:
        pods = (await demo.kubectl_json("get", "pods", "-l", "app=web"))["items"]
        return len(pods) == 3 and all(_ready(p) for p in pods)

    await demo.wait_for("three web pods Ready", pods_ready)
    await demo.run(["kubectl", "get", "pods", "-l", "app=web", "-o", "wide"])
    shows("three web pods, each answering HTTP on port 8080 with its own name")
    await demo.run(
        [
            "kubectl",
            "expose",
            "deployment",
            "web",
            "--type=LoadBalancer",
            "--port=80",
            "--target-port=8080",
        ]
    )

    async def announced() -> tuple[str, str] | None:
        svc = await demo.kubectl_json("get", "service", "web")
        ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        node = (svc["metadata"].get("annotations") or {}).get(ANNOUNCING_NODE)
        return (ingress[0]["ip"], node) if ingress and node else None

    vip, node = await demo.wait_for("an external IP, announced by a node", announced)
    await demo.run(["kubectl", "get", "service", "web"])
    shows(f"the Service got the external IP {vip} from the pool; {node} announces it")
    return vip


async def show_traffic(demo: Demo, vip: str) -> str:
    step(4, "From the client host: requests to the external IP, and who answers ARP")
    answers = []
    for _ in range(6):
        text = await demo.in_client(["curl", "-s", "--max-time", "2", f"http://{vip}/"])
        answers.append(text.split()[0] if text else "")
    distinct = sorted(set(answers))
    shows(
        f"{len(distinct)} different pods answered in turn ({', '.join(distinct)}): "
        "connections go round-robin over the Service's pods"
    )
    text = await demo.in_client(["arping", "-c", "2", "-I", "eth0", vip])
    macs = sorted(set(re.findall(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", text.lower())))
    if len(macs) != 1:
        raise DemoFailed(f"expected one MAC answering ARP for {vip}, got {macs or 'none'}")
    node = demo.node_of_mac(macs[0])
    shows(f"one MAC answers ARP for {vip}: {macs[0]}, the LAN interface of {node}")
    return node


def speaker_pid(netns: str) -> int | None:
    """The pid of the ``ironlb speaker`` process in the network namespace ``netns``, or None."""
    try:
        want = os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"speaker" not in argv or os.stat(entry / "ns" / "net").st_ino != want:
                continue
        except OSError:
            continue
        if any(a.endswith((b"ironlb", b"python", b"python3")) or b"ironlb" in a for a in argv[:3]):
            return int(entry.name)
    return None


def timeline_lines(result: dict[str, Any]) -> list[str]:
    """The probe's timeline (see :mod:`ironlb.lab.demo_probe`) as plain lines, one per run."""
    lines = []
    for run in result.get("timeline", []):
        what = "no answer" if run["via"] == "failed" else f"answered through {run['via']}"
        lines.append(
            f"  {run['from_ms'] / 1000:6.2f} s - {run['to_ms'] / 1000:6.2f} s: "
            f"{run['n']:4d} request(s) {what}"
        )
    return lines


async def failover(demo: Demo, vip: str, node: str) -> None:
    step(5, f"Failover: kill the speaker on {node} while the client keeps asking")
    probe = [
        "ip",
        "netns",
        "exec",
        demo.client_netns,
        sys.executable,
        "-m",
        "ironlb.lab.demo_probe",
        vip,
        "80",
        "--interval",
        "0.025",
    ]
    out(f"$ {shlex.join(probe)} &   # a GET every 25 ms from the client, timing the gaps")
    loop = await asyncio.create_subprocess_exec(
        *probe, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=demo.env
    )
    try:
        await asyncio.sleep(1.5)
        pid = speaker_pid(demo.cluster.lab.host(node).netns)
        if pid is None:
            raise DemoFailed(f"no speaker process found on {node}")
        out(f"$ kill -9 {pid}   # the speaker process on {node}, as if it crashed")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        async def moved() -> str | None:
            svc = await demo.kubectl_json("get", "service", "web")
            now = (svc["metadata"].get("annotations") or {}).get(ANNOUNCING_NODE)
            return now if now and now != node else None

        new_node = await demo.wait_for("another node to announce the IP", moved, timeout=60)
        out(
            f"({time.monotonic() - killed:.1f} s after the kill, the Service's "
            f"{ANNOUNCING_NODE} annotation names {new_node})"
        )
        macs: list[str] = []
        attempt = 0
        while not macs and attempt < 3:  # a hand-over in flight may leave a request unanswered
            attempt += 1
            text = await demo.in_client(["arping", "-c", "1", "-I", "eth0", vip], check=False)
            macs = sorted(set(re.findall(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", text.lower())))
        again = f" (answered at attempt {attempt} of 3)" if attempt > 1 and macs else ""
        shows(
            f"ARP for {vip} is now answered by {', '.join(macs) or 'nobody'} "
            f"({', '.join(demo.node_of_mac(m) for m in macs) or '-'}){again}"
        )
        await asyncio.sleep(3.0)
    finally:
        assert loop.stdin is not None
        loop.stdin.close()
        data, _ = await asyncio.wait_for(loop.communicate(), 10)
    result = json.loads(data.decode().strip().splitlines()[-1])
    out(
        f"client loop: {result['requests']} requests, {result['answered']} answered, "
        f"{result['failed']} failed; by pod: {result['pods']}"
    )
    for line in timeline_lines(result):
        out(line)
    path = [r["via"] for r in result.get("timeline", []) if r["via"] != "failed"]
    moves = [via for i, via in enumerate(path) if i == 0 or via != path[i - 1]]
    shows(
        f"the client's requests went through {' -> '.join(moves)}: another node took over "
        f"after the kill; the longest gap between two answers was "
        f"{result['longest_gap_ms']:.0f} ms"
    )
    out(
        "(The kubelet restarts a crashed container at once, as Kubernetes does; when the "
        "new speaker is up the IP may move back to its node, a second, planned hand-over.)"
    )
    status = await demo.run([*demo.lbctl, "status"], show="lbctl status", check=False)
    if status.rstrip().endswith("unhealthy") or "\nunhealthy:" in status:
        out("(lbctl status exits 1 when it finds something unhealthy, as listed above)")
    await demo.run([*demo.lbctl, "services"], show="lbctl services")
    shows("lbctl sums it up: the pool, the live speakers, and which node announces the Service")


async def run_demo(prefix: str | None, state_dir: Path, made: list[str]) -> None:
    """The whole demo; the cluster is torn down when this returns or raises.

    ``made`` gets the lab prefix as soon as it is known (for the caller's final check).
    """
    started = time.monotonic()
    out("=== 0. Bringing up the lab cluster (API server, 3 nodes, client, kubelets)")
    cluster = LabCluster(state_dir, nodes=3, prefix=prefix)
    made.append(cluster.prefix)
    async with cluster:
        out(f"lab cluster {cluster.prefix} is up; export KUBECONFIG={cluster.kubeconfig}")
        try:
            demo = Demo(cluster)
            await show_cluster(demo)
            await install_chart(demo)
            vip = await create_service(demo)
            node = await show_traffic(demo, vip)
            await failover(demo, vip, node)
            took = time.monotonic() - started
        finally:
            out()
            out("=== 6. Tearing down: pods, kubelets, namespaces, API server")
    await show_clean(cluster.prefix, state_dir)
    out(f"demo done in {took:.0f} s (teardown included: {time.monotonic() - started:.0f} s)")


async def show_clean(prefix: str, state_dir: Path) -> None:
    """Step 6's proof: the commands that would list what is left, and their (empty) output."""
    checks = [
        f"ip netns list | grep '^{prefix}-'",
        "nft list tables | grep ironlb",
        r"ip -o addr | grep 'inet 198\.1[89]\.'",
    ]
    for check in checks:
        out(f"$ {check}")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", check, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        data, _ = await proc.communicate()
        out(data.decode(errors="replace").rstrip("\n") or "(nothing)")
    procs = lab_processes(prefix, state_dir)
    out(f"processes of the lab left: {', '.join(procs) if procs else 'none'}")
    left = leftovers(prefix, state_dir)
    if left:
        raise DemoFailed(f"left behind: {'; '.join(left)}")
    shows(
        f"nothing is left: no {prefix}-* namespace, no ironlb nftables table or lab address "
        "in the root namespace, no process of the lab"
    )


#: Commands the demo runs, and where a user gets each one.
NEEDED = {
    "kubectl": "install kubectl (1.32 is tested) on PATH",
    "curl": "apt-get install curl (make demo does)",
    "arping": "apt-get install arping (make demo does)",
    "ip": "apt-get install iproute2 (make demo does)",
}


def missing_commands() -> list[str]:
    """One ``NAME: how to get it`` line per command of :data:`NEEDED` not on ``PATH``."""
    return [f"{name}: {how}" for name, how in NEEDED.items() if shutil.which(name) is None]


def lab_processes(prefix: str, state_dir: Path) -> list[str]:
    """``PID (name)`` of processes whose cwd is under ``state_dir`` or whose argv names
    ``<prefix>-`` (a lab pod's process runs in its pod directory; ``ip netns exec
    <prefix>-...`` names the namespace)."""
    found = []
    root = str(state_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if f"{prefix}-" in argv or cwd == root or cwd.startswith(root + "/"):
            found.append(f"{entry.name} ({argv.split(' ', 1)[0]})")
    return found


def leftovers(prefix: str, state_dir: Path) -> list[str]:
    """What of a demo run is still there: ``<prefix>-*`` namespaces and lab processes."""
    left = []
    with contextlib.suppress(OSError):
        names = sorted(p.name for p in Path("/run/netns").iterdir())
        if spare := [n for n in names if n.startswith(f"{prefix}-")]:
            left.append(f"namespaces {' '.join(spare)}")
    if procs := lab_processes(prefix, state_dir):
        left.append(f"processes {', '.join(procs)}")
    return left


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (see the module docstring for the exit statuses)."""
    parser = argparse.ArgumentParser(prog="ironlb-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--prefix", help="lab namespace prefix (default: ilb + random)")
    parser.add_argument("--dir", help="state directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo failed: the lab needs root (network namespaces)", file=sys.stderr)
        return 1
    missing = missing_commands()
    if missing:
        print(f"demo failed: missing command {'; '.join(missing)}", file=sys.stderr)
        return 1
    if args.prefix:
        try:
            validate_prefix(args.prefix)
        except LabError as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
    state_dir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ironlb-demo-"))
    got: list[int] = []
    made: list[str] = []

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if not got:
                out(f"\n(got {signal.Signals(signum).name}: stopping and tearing down)")
                task.cancel()
            got.append(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        await run_demo(args.prefix, state_dir, made)

    code = 0
    try:
        asyncio.run(guarded())
    except asyncio.CancelledError:
        code = 128 + got[0] if got else 1
    except (DemoFailed, HelmFailed, LabError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        code = 1
    except Exception as exc:  # a bug: still one line, after the teardown above
        print(f"demo failed: unexpected {exc!r}", file=sys.stderr)
        code = 1
    if got:  # Ctrl-C also reaches the commands running then; the signal is the reason
        code = 128 + got[0]
    for prefix in made:
        left = leftovers(prefix, state_dir)
        if left:
            print(f"demo: left behind: {'; '.join(left)}", file=sys.stderr)
            code = code or 1
    if not args.dir:
        shutil.rmtree(state_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
