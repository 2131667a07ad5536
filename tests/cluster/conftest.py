"""Fixtures for tests that talk to the local Kubernetes API over real HTTP.

- ``apiserver``: a started :class:`LocalApiServer` on a free loopback port in
  the test's event loop, stopped afterwards.
- ``kubeconfig``: the path of a kubeconfig for it in ``tmp_path`` (nothing
  global such as ``KUBECONFIG`` is set).
- ``http``: an aiohttp session whose base URL is that server.
- ``api_thread``: the same server on its own loop in a thread, for sync tests
  (e.g. the ``kubernetes`` client, whose calls block).
- ``kube_client``: the ``kubernetes`` package's ``ApiClient`` for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes import client, config

from ironlb.lab.apiserver import LocalApiServer, ServerThread, run_in_thread


@pytest.fixture
async def apiserver() -> AsyncIterator[LocalApiServer]:
    server = LocalApiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http(apiserver: LocalApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(apiserver.url) as session:
        yield session


@pytest.fixture
def kubeconfig(apiserver: LocalApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    apiserver.write_kubeconfig(path)
    return path


@pytest.fixture
def api_thread() -> Iterator[ServerThread]:
    with run_in_thread() as server:
        yield server


@pytest.fixture
def api_thread_kubeconfig(api_thread: ServerThread, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    api_thread.write_kubeconfig(path)
    return path


@pytest.fixture
def kube_client(api_thread_kubeconfig: Path) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(api_thread_kubeconfig), client_configuration=configuration
    )
    with client.ApiClient(configuration) as api_client:
        yield api_client
