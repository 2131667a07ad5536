"""The lab kubelet of one node: runs the Pods bound to it and reports their status.

:class:`NodeAgent` lists and watches ``pods?fieldSelector=spec.nodeName=<node>``
over the lab API's HTTP interface (relisting after a broken watch or a 410),
and keeps one :class:`PodWorker` per Pod UID:

1. network: ``hostNetwork`` Pods use the node's namespace and addresses; any
   other Pod gets the lowest free pod index of the node (:mod:`.ipam`) and its
   namespace is built with :meth:`~ironlb.lab.netlab.Lab.add_pod`;
2. files under ``<state dir>/pods/<namespace>_<name>_<uid>/``: volumes, the
   service-account ``token``/``ca.crt``/``namespace``, a ``kubeconfig`` for the
   lab API through the :class:`~ironlb.lab.api_bridge.ApiBridge` of the Pod's
   namespace, one ``<container>.log`` per container (see :mod:`.spec`);
3. one :class:`ContainerRunner` per container: the process, started with ``ip
   netns exec`` in its own session, its readiness probe, restarts with
   back-off per ``restartPolicy`` (see :mod:`.lifecycle`);
4. ``status`` written with a merge patch to ``pods/<name>/status`` on each
   change; a process exit is written at once.

The lab API deletes a Pod at once (no graceful deletion without
finalizers), so the worker stops on the ``DELETED`` event, or on a
``deletionTimestamp`` when finalizers hold the object: SIGTERM to the
process group, ``terminationGracePeriodSeconds`` (capped by ``max_grace``),
SIGKILL, then the namespace is removed and its address freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ironlb.common.kubetime import format_time, now_utc
from ironlb.lab.api_bridge import ApiBridge
from ironlb.lab.apiserver.kubeconfig import kubeconfig_dict
from ironlb.lab.kubelet import spec as podspec
from ironlb.lab.kubelet.ipam import IpamExhausted, PodIndexes
from ironlb.lab.kubelet.lifecycle import (
    LAB_BACKOFF_CAP,
    LAB_BACKOFF_INITIAL,
    Backoff,
    ContainerView,
    Probe,
    ProbeCounter,
    ProbeError,
    pod_status,
    readiness_probe,
)
from ironlb.lab.kubelet.probes import NetnsSockets, check
from ironlb.lab.netlab import Lab, LabError, LabHost

log = logging.getLogger("ironlb.lab.kubelet")

MERGE_PATCH = "application/merge-patch+json"
DEFAULT_MAX_GRACE = 10.0  # seconds; a Pod's terminationGracePeriodSeconds is capped to this
CONFIG_RETRY = 1.0  # seconds between attempts while a Secret/ConfigMap is missing
STATUS_RETRY = 0.5  # seconds before a failed status write is tried again
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]
_BASE_ENV = ("PATH", "LANG", "LC_ALL", "TZ")

Obj = dict[str, Any]


def _now() -> str:
    return format_time(now_utc())


class ContainerRunner:
    """One container's process, readiness and restarts; ``on_change()`` after every change."""

    def __init__(
        self,
        worker: PodWorker,
        container: Mapping[str, Any],
        argv: list[str],
        env: dict[str, str],
        probe: Probe,
    ) -> None:
        self.worker = worker
        self.name = str(container["name"])
        self.image = str(container.get("image", ""))
        self.argv = argv
        self.env = env
        self.counter = ProbeCounter(probe)
        self.backoff = Backoff(worker.agent.backoff_initial, worker.agent.backoff_cap)
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.started_at: str | None = None
        self.last_exit: int | None = None
        self.reason: str | None = None
        self.done = False  # exited and not to be restarted (restartPolicy)
        self._stopping = False

    def view(self) -> ContainerView:
        running = self.proc is not None and self.proc.returncode is None
        if running:
            assert self.proc is not None
            return ContainerView(
                self.name,
                self.image,
                "running",
                self.counter.ready,
                self.restarts,
                pid=self.proc.pid,
                started_at=self.started_at,
                last_exit_code=self.last_exit,
            )
        if self.done and self.last_exit is not None:
            reason = "Completed" if self.last_exit == 0 else "Error"
            return ContainerView(
                self.name,
                self.image,
                "terminated",
                False,
                self.restarts,
                exit_code=self.last_exit,
                reason=reason,
            )
        return ContainerView(
            self.name,
            self.image,
            "waiting",
            False,
            self.restarts,
            reason=self.reason,
            last_exit_code=self.last_exit,
        )

    async def run(self) -> None:
        """Start, watch, restart until stopped or ``restartPolicy`` says no more."""
        policy = str(self.worker.pod["spec"].get("restartPolicy", "Always"))
        log_path = self.worker.dir / f"{self.name}.log"
        while not self._stopping:
            with open(log_path, "ab") as out:
                self.proc = await asyncio.create_subprocess_exec(
                    "ip",
                    "netns",
                    "exec",
                    self.worker.netns,
                    *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=self.env,
                    cwd=self.worker.dir,
                    start_new_session=True,
                )
            self.started_at = _now()
            self.backoff.started(time.monotonic())
            self.counter.reset()
            self.worker.changed()
            prober = asyncio.create_task(self._probe())
            try:
                code = await self.proc.wait()
            finally:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
            # Killed by signal N: 128 + N, as container runtimes report it.
            self.last_exit = 128 - code if code < 0 else code
            self.counter.reset()
            if self._stopping:
                return
            log.info("pod %s container %s exited %s", self.worker.key, self.name, code)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self.done = True
                self.worker.changed()
                return
            delay = self.backoff.next_delay(time.monotonic())
            self.reason = "CrashLoopBackOff" if delay else "Error"
            self.worker.changed()
            await asyncio.sleep(delay)
            self.restarts += 1
            self.reason = None

    async def _probe(self) -> None:
        probe = self.counter.probe
        if probe.kind == "alive":
            self.counter.record(True)
            self.worker.changed()
            return
        await asyncio.sleep(probe.initial_delay)
        while True:
            ok = await check(probe, self.worker.probe_address(), self.worker.agent.sockets)
            before = self.counter.ready
            if self.counter.record(ok) != before:
                self.worker.changed()
            await asyncio.sleep(probe.period)

    async def stop(self, grace: float) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` s; no restart after."""
        self._stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


class PodWorker:
    """Everything the agent does for one Pod (one UID), from network to deletion."""

    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.namespace = str(meta.get("namespace", "default"))
        self.name = str(meta["name"])
        self.uid = str(meta.get("uid", ""))
        self.key = f"{self.namespace}/{self.name}"
        self.host_network = bool(pod["spec"].get("hostNetwork", False))
        self.dir = agent.state_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.lab_pod: LabHost | None = None
        self.netns = agent.node.netns
        self.pod_ips: list[str] = []
        self.runners: list[ContainerRunner] = []
        self.waiting: tuple[str, str] | None = None  # (reason, message) before it runs
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._start_time = _now()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_status_loop())
        self._task = asyncio.create_task(self._run())

    def changed(self) -> None:
        self._dirty.set()

    def probe_address(self) -> str:
        return self.pod_ips[0]

    def _wait(self, reason: str, message: str) -> None:
        if self.waiting != (reason, message):
            log.warning("pod %s: %s", self.key, message)
        self.waiting = (reason, message)
        self.changed()

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._set_up_network()
                    break
                except (IpamExhausted, LabError, OSError) as exc:
                    self._wait("ContainerCreating", f"failed to set up the pod network: {exc}")
                    await asyncio.sleep(CONFIG_RETRY)
            self.waiting = None
            self.changed()
            while True:
                try:
                    runners = await self._prepare()
                    break
                except (podspec.ConfigError, ProbeError) as exc:
                    self._wait("CreateContainerConfigError", str(exc))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self._wait("CreateContainerConfigError", f"cannot read the API: {exc}")
                await asyncio.sleep(CONFIG_RETRY)
            self.waiting = None
            self.runners = runners
            await asyncio.gather(*(r.run() for r in runners))
            self.changed()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s failed", self.key)

    async def _set_up_network(self) -> None:
        node = self.agent.node
        if self.host_network:
            self.pod_ips = [str(node.ipv4), str(node.ipv6)]
            return
        index = self.agent.ipam.allocate(self.uid)
        try:
            self.lab_pod = await asyncio.to_thread(self.agent.lab.add_pod, node.name, index)
        except BaseException:
            self.agent.ipam.release(self.uid)
            raise
        self.netns = self.lab_pod.netns
        self.pod_ips = [str(self.lab_pod.ipv4), str(self.lab_pod.ipv6)]
        if self.agent.bridge is not None:
            await self.agent.bridge.add(self.netns)

    async def _prepare(self) -> list[ContainerRunner]:
        """Resolve config, write files, build runners. Raises ConfigError / ProbeError."""
        pod_spec = self.pod["spec"]
        secret_names, map_names = podspec.referenced_objects(self.pod)
        secrets: dict[str, dict[str, str] | None] = {}
        for n in secret_names:
            obj = await self.agent.get_object("secrets", self.namespace, n)
            secrets[n] = podspec.decode_data(obj) if obj is not None else None
        maps: dict[str, dict[str, str] | None] = {}
        for n in map_names:
            obj = await self.agent.get_object("configmaps", self.namespace, n)
            maps[n] = podspec.decode_data(obj) if obj is not None else None
        files = podspec.volume_files(self.pod, secrets, maps)
        view = self._pod_view()
        service_account = pod_spec.get("automountServiceAccountToken", True) is not False
        self._write_files(files, service_account)
        runners = []
        for container in pod_spec.get("containers") or []:
            env = podspec.resolve_env(container, view, secrets, maps)
            where = podspec.mounts(container, str(self.dir), service_account)
            env = {k: podspec.rewrite_paths(v, where) for k, v in env.items()}
            argv = [
                podspec.rewrite_paths(a, where)
                for a in podspec.container_argv(container, self.name, env, self.agent.python)
            ]
            full = self._base_env(where)
            full.update(env)
            runners.append(ContainerRunner(self, container, argv, full, readiness_probe(container)))
        return runners

    def _pod_view(self) -> Obj:
        """The Pod with the status fields env may refer to (podIP, hostIP) filled in."""
        node = self.agent.node
        view = dict(self.pod)
        view["status"] = {
            "podIP": self.pod_ips[0],
            "podIPs": [{"ip": ip} for ip in self.pod_ips],
            "hostIP": str(node.ipv4),
            "hostIPs": [{"ip": str(node.ipv4)}, {"ip": str(node.ipv6)}],
        }
        return view

    def _base_env(self, where: list[podspec.Mount]) -> dict[str, str]:
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env["HOME"] = str(self.dir)
        env["HOSTNAME"] = self.agent.node.name if self.host_network else self.name
        env["PYTHONPATH"] = str(_PACKAGE_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        env["KUBECONFIG"] = str(self.dir / "kubeconfig")
        env[podspec.MOUNTS_ENV] = ":".join(f"{m.mount_path}={m.host_dir}" for m in where)
        return env

    def _write_files(self, files: dict[str, dict[str, str]], service_account: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for volume, content in files.items():
            root = self.dir / "volumes" / volume
            root.mkdir(parents=True, exist_ok=True)
            for rel, text in content.items():
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        url = self.agent.bridge.url if self.agent.bridge is not None else self.agent.api_url
        config = kubeconfig_dict(url, namespace=self.namespace)
        sa_name = str(self.pod["spec"].get("serviceAccountName") or "default")
        if service_account:
            sa = self.dir / "serviceaccount"
            sa.mkdir(exist_ok=True)
            token = f"ironlb-lab-{self.namespace}-{sa_name}"
            (sa / "token").write_text(token)
            (sa / "ca.crt").write_text("")  # the lab API is plain HTTP: no CA
            (sa / "namespace").write_text(self.namespace)
            config["users"][0]["user"] = {"token": token}
        (self.dir / "kubeconfig").write_text(yaml.safe_dump(config, sort_keys=False))

    def status(self) -> Obj:
        node = self.agent.node
        views = [r.view() for r in self.runners]
        if not self.runners:
            reason, message = self.waiting or ("ContainerCreating", None)
            views = [
                ContainerView(
                    str(c["name"]),
                    str(c.get("image", "")),
                    "waiting",
                    False,
                    0,
                    reason=reason,
                    message=message,
                )
                for c in self.pod["spec"].get("containers") or []
            ]
        phase = "Pending" if not self.runners else "Running"
        if self.runners and all(r.done for r in self.runners):
            phase = "Succeeded" if all(r.last_exit == 0 for r in self.runners) else "Failed"
        return pod_status(
            self.pod.get("status") or {},
            now=_now(),
            start_time=self._start_time,
            host_ips=[str(node.ipv4), str(node.ipv6)],
            pod_ips=self.pod_ips,
            containers=views,
            phase=phase,
        )

    async def _write_status_loop(self) -> None:
        last: str | None = None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = self.status()
            comparable = json.dumps(_without_times(status), sort_keys=True)
            if comparable == last:
                continue
            written = await self.agent.patch_status(self.namespace, self.name, status)
            if written is None:  # try again shortly (a Pod that is gone stops this loop)
                await asyncio.sleep(STATUS_RETRY)
                self._dirty.set()
                continue
            self.pod["status"] = written.get("status", status)
            last = comparable

    async def stop(self) -> None:
        """Stop the containers, remove the network and files; safe to call twice."""
        if self._task is not None:
            self._task.cancel()
        grace = min(
            float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), self.agent.max_grace
        )
        await asyncio.gather(*(r.stop(grace) for r in self.runners), return_exceptions=True)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self.lab_pod is not None:
            if self.agent.bridge is not None:
                await self.agent.bridge.cut(self.netns)
            await asyncio.to_thread(self.agent.lab.remove_pod, self.lab_pod.name)
            self.lab_pod = None
        self.agent.ipam.release(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)


def _without_times(status: Obj) -> Obj:
    """The status with the per-write timestamps dropped, to tell a real change."""
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
    ]
    return out


class NodeAgent:
    """The kubelet of lab node ``node`` (a node of ``lab``; the Node object's name by default).

    ``api_url`` is the lab API as seen from the root namespace; ``bridge``
    (optional) makes it reachable inside the Pods' namespaces, and its URL goes
    into each Pod's kubeconfig. ``state_dir`` holds the per-pod directories.
    ``await run()`` until cancelled; ``await close()`` stops every Pod.
    """

    def __init__(
        self,
        lab: Lab,
        node: str,
        api_url: str,
        state_dir: str | os.PathLike[str],
        *,
        node_name: str | None = None,
        bridge: ApiBridge | None = None,
        python: str = sys.executable,
        backoff_initial: float = LAB_BACKOFF_INITIAL,
        backoff_cap: float = LAB_BACKOFF_CAP,
        max_grace: float = DEFAULT_MAX_GRACE,
    ) -> None:
        self.lab = lab
        self.node = lab.host(node)
        self.node_name = node_name or node
        self.api_url = api_url.rstrip("/")
        self.state_dir = Path(state_dir)
        self.bridge = bridge
        self.python = python
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.max_grace = max_grace
        static = {int(p.name.rsplit("-pod", 1)[1]) for p in lab.pods_on(node)}
        self.ipam = PodIndexes(reserved=frozenset(static))
        self.sockets = NetnsSockets(self.node.netns)
        self.workers: dict[str, PodWorker] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def get_object(self, plural: str, namespace: str, name: str) -> Obj | None:
        """GET one namespaced core/v1 object; None if it does not exist."""
        url = f"{self.api_url}/api/v1/namespaces/{namespace}/{plural}/{name}"
        async with self._http().get(url, timeout=aiohttp.ClientTimeout(total=10)) as rsp:
            if rsp.status == 404:
                return None
            rsp.raise_for_status()
            found: Obj = await rsp.json()
            return found

    async def patch_status(self, namespace: str, name: str, status: Obj) -> Obj | None:
        """Merge-patch a Pod's status; None if the Pod is gone or the write failed."""
        url = f"{self.api_url}/api/v1/namespaces/{namespace}/pods/{name}/status"
        try:
            async with self._http().patch(
                url,
                data=json.dumps({"status": status}),
                headers={"Content-Type": MERGE_PATCH},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as rsp:
                if rsp.status >= 400:
                    if rsp.status != 404:
                        log.warning("status of %s/%s: HTTP %s", namespace, name, rsp.status)
                    return None
                written: Obj = await rsp.json()
                return written
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("status of %s/%s: %s", namespace, name, exc)
            return None

    async def run(self) -> None:
        """List and watch this node's Pods and keep the workers in step; runs until cancelled."""
        selector = f"spec.nodeName={self.node_name}"
        while True:
            try:
                url = f"{self.api_url}/api/v1/pods"
                async with self._http().get(url, params={"fieldSelector": selector}) as rsp:
                    rsp.raise_for_status()
                    listing = await rsp.json()
                seen = set()
                for pod in listing.get("items") or []:
                    seen.add(pod["metadata"].get("uid", ""))
                    await self._observe(pod)
                for uid in set(self.workers) - seen:
                    await self._forget(uid)
                version = listing["metadata"].get("resourceVersion", "")
                params = {
                    "fieldSelector": selector,
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                }
                async with self._http().get(url, params=params) as rsp:
                    rsp.raise_for_status()
                    async for line in rsp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind = event.get("type")
                        obj = event.get("object") or {}
                        if kind == "ERROR":
                            break
                        if kind == "DELETED":
                            await self._forget(obj["metadata"].get("uid", ""))
                        elif kind in ("ADDED", "MODIFIED"):
                            await self._observe(obj)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                log.warning("kubelet %s: watch failed (%s); relisting", self.node_name, exc)
                await asyncio.sleep(0.5)

    async def _observe(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        worker = self.workers.get(uid)
        if meta.get("deletionTimestamp"):
            if worker is not None:
                await self._forget(uid)
            return
        if worker is not None:
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return  # finished before (e.g. an earlier kubelet run): nothing to run
        worker = PodWorker(self, pod)
        self.workers[uid] = worker
        log.info("kubelet %s: starting pod %s", self.node_name, worker.key)
        worker.start()

    async def _forget(self, uid: str) -> None:
        """Stop a Pod's worker in the background (its grace period must not hold the watch)."""
        worker = self.workers.pop(uid, None)
        if worker is not None:
            log.info("kubelet %s: stopping pod %s", self.node_name, worker.key)
            task = asyncio.create_task(worker.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop every Pod of this node and release the HTTP session and probe thread."""
        for uid in list(self.workers):
            await self._forget(uid)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.sockets.close()
