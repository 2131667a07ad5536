"""End-to-end fixtures: one lab cluster per test module (root only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .cluster import Cluster, cluster


@pytest.fixture
async def lab_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path) as the:
        yield the
