"""A whole lab cluster in one event loop: API server, namespace LAN, Nodes, kubelets, controllers.

:class:`LabCluster` is what ``ironlb lab cluster up`` runs and what tests
use: the local API server on loopback, a :class:`~ironlb.lab.netlab.Lab` with
pod networks on its nodes (no static pods), an
:class:`~ironlb.lab.api_bridge.ApiBridge` so that ``http://127.0.0.1:6443``
inside every lab namespace is the API, one Node object per lab node
(:func:`ironlb.lab.workloads.nodes.register_nodes`), one
:class:`~ironlb.lab.kubelet.agent.NodeAgent` per node, and the lab workload
controllers (:func:`ironlb.lab.workloads.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from ironlb.lab.api_bridge import ApiBridge
from ironlb.lab.apiserver import LocalApiServer
from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
from ironlb.lab.kubelet.agent import NodeAgent
from ironlb.lab.kubelet.lifecycle import LAB_BACKOFF_INITIAL
from ironlb.lab.netlab import Lab
from ironlb.lab.workloads import ClientConfig
from ironlb.lab.workloads import run as run_workloads
from ironlb.lab.workloads.api import WorkloadApi
from ironlb.lab.workloads.nodes import lab_node_indexes, register_nodes

log = logging.getLogger("ironlb.lab.cluster")

BRIDGE_PORT = 6443


class LabCluster:
    """The lab cluster; ``async with LabCluster(...) as cluster:`` or ``start()``/``stop()``.

    ``nodes`` 1..89 lab nodes plus a client host; ``state_dir`` holds the
    kubeconfig (``kubeconfig``) and the kubelets' per-pod directories.
    ``api_port`` 0 picks a free loopback port; ``backoff_initial`` is the
    kubelets' first restart delay in seconds. Raises
    :class:`~ironlb.lab.netlab.LabError` for a prefix in use or bad sizes.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        nodes: int = 3,
        prefix: str | None = None,
        api_port: int = 0,
        backoff_initial: float = LAB_BACKOFF_INITIAL,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.lab = Lab(nodes=nodes, backends=0, prefix=prefix, pod_network=True)
        self.prefix = self.lab.prefix
        self.api = LocalApiServer(port=api_port)
        self.bridge: ApiBridge | None = None
        self.agents: list[NodeAgent] = []
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.workloads: bool = False
        self._backoff = backoff_initial
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop_workloads = asyncio.Event()
        self._workloads_task: asyncio.Task[Any] | None = None

    @property
    def url(self) -> str:
        return self.api.url

    async def start(self) -> None:
        """Bring everything up; on any failure, tears down what came up and re-raises."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.api.start()
        try:
            await asyncio.to_thread(self.lab.up)
            self.bridge = ApiBridge(("127.0.0.1", self.api.port), port=BRIDGE_PORT)
            for host in (self.lab.client, *self.lab.nodes):
                await self.bridge.add(host.netns)
            write_kubeconfig(self.kubeconfig, self.url)
            indexes = lab_node_indexes(self.lab)
            async with WorkloadApi(ClientConfig(self.url)) as api:
                await register_nodes(api, indexes)
            for node in self.lab.nodes:
                agent = NodeAgent(
                    self.lab,
                    node.name,
                    self.url,
                    self.state_dir / "kubelet" / node.name,
                    bridge=self.bridge,
                    backoff_initial=self._backoff,
                )
                self.agents.append(agent)
                self._tasks.append(asyncio.create_task(agent.run(), name=f"kubelet-{node.name}"))
            self._start_workloads()
        except BaseException:
            await self.stop()
            raise

    def _start_workloads(self) -> None:
        indexes = lab_node_indexes(self.lab)
        self._workloads_task = asyncio.create_task(
            run_workloads(self.url, stop=self._stop_workloads, nodes=indexes), name="workloads"
        )
        self.workloads = True

    async def stop(self) -> None:
        """Stop controllers, kubelets (their Pods), bridges, the LAN and the API server."""
        if self._workloads_task is not None:
            self._stop_workloads.set()
            try:
                await asyncio.wait_for(self._workloads_task, 10)
            except (Exception, asyncio.CancelledError) as exc:
                log.warning("lab workload controllers did not stop cleanly: %r", exc)
            self._workloads_task = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await agent.close()
        self.agents = []
        if self.bridge is not None:
            await self.bridge.close()
            self.bridge = None
        await asyncio.to_thread(self.lab.down)
        await self.api.stop()

    async def __aenter__(self) -> LabCluster:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
