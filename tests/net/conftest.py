"""Fixtures for the root-only network tests: a fresh namespace lab per test.

``lab``: 2 nodes + 1 backend, a unique prefix, removed after the test (also on
failure). ``lab_factory(nodes=, backends=, pods_per_node=, pod_network=)``: build labs of
other sizes, optionally with pods on the nodes; all are removed after the test
(pod servers included). ``cluster``: a started :class:`LabCluster` (2 nodes, the
kubelets' first restart after 0.2 s; a test module may override ``cluster_nodes``),
stopped afterwards; ``api``: a JSON client for its API. Tests using them skip when
not root (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from ironlb.lab.labcluster import LabCluster
from ironlb.lab.netlab import Lab
from tests.support import ApiClient, api_client

LabFactory = Callable[..., Lab]


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    made: list[Lab] = []

    def make(
        nodes: int = 2, backends: int = 1, pods_per_node: int = 0, pod_network: bool = False
    ) -> Lab:
        new = Lab(
            nodes=nodes, backends=backends, pods_per_node=pods_per_node, pod_network=pod_network
        )
        made.append(new)
        new.up()
        return new

    try:
        yield make
    finally:
        for each in reversed(made):
            each.down()


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    return lab_factory(nodes=2, backends=1)


@pytest.fixture
def cluster_nodes() -> int:
    return 2


@pytest.fixture
async def cluster(tmp_path: Path, cluster_nodes: int) -> AsyncIterator[LabCluster]:
    the_cluster = LabCluster(tmp_path / "state", nodes=cluster_nodes, backoff_initial=0.2)
    await the_cluster.start()
    try:
        yield the_cluster
    finally:
        await the_cluster.stop()


@pytest.fixture
async def api(cluster: LabCluster) -> AsyncIterator[ApiClient]:
    async with api_client(cluster.url) as client:
        yield client
