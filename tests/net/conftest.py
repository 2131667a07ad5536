"""Fixtures for the root-only network tests: a fresh namespace lab per test.

``lab``: 2 nodes + 1 backend, a unique prefix, removed after the test (also on
failure). ``lab_factory(nodes=, backends=, pods_per_node=, pod_network=)``: build labs of
other sizes, optionally with pods on the nodes; all are removed after the test
(pod servers included). Tests using them skip when not root (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ironlb.lab.netlab import Lab

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
