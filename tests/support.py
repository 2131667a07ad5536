"""Helpers every test package shares, defined once: free ports, polling, the local API client.

- :func:`free_port`: a port the kernel just handed out and nothing holds.
- :func:`wait_for` (blocking) and :func:`eventually` (async, probe sync or
  async): poll until a probe returns something truthy. They are hang guards,
  not timing checks: the timeouts are generous and a test never asserts on
  how long the wait took.
- :class:`ApiClient` / :func:`api_client`: JSON over HTTP to the local
  Kubernetes API (``ironlb.lab.apiserver``), a fresh connection per request
  and a 30 s guard on each, with the few verbs the tests use.

Root-only tests are marked ``root`` (see ``tests/conftest.py``, the one place
that skips them when not root).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, overload

import aiohttp

__all__ = ["MERGE_PATCH", "ApiClient", "api_client", "eventually", "free_port", "wait_for"]

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port of ``kind`` (``SOCK_STREAM``/``SOCK_DGRAM``) on ``host`` that is free now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> Any:
    """Poll ``probe`` (plain or async) until it returns something truthy; return that.

    An ``AssertionError`` raised by the probe counts as "not yet". After
    ``timeout`` seconds (a probe that hangs is cancelled) raises
    ``AssertionError`` with ``what`` and the last value seen.
    """
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    value = probe()
                    if inspect.isawaitable(value):
                        value = await value
                    if value:
                        return value
                    last = value
                except AssertionError as exc:
                    last = exc
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
        ) from None


class ApiClient:
    """JSON verbs over one aiohttp session to the local API server.

    Every error status raises ``AssertionError`` with the method, path, code
    and the server's Status body, so a failed set-up step says what failed.
    """

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        """One request; ``PATCH`` bodies are JSON merge patches; returns the JSON reply."""
        headers = {"Content-Type": MERGE_PATCH} if method == "PATCH" else {}
        async with self.http.request(
            method, path, json=body, headers=headers, params=params or None
        ) as rsp:
            data = await rsp.json()
            if rsp.status >= 400:
                raise AssertionError(f"{method} {path}: {rsp.status} {data}")
            return data

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", path, body)
        return result

    async def get(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", path)
        return result

    async def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("PATCH", path, body)
        return result

    async def delete(self, path: str) -> None:
        await self.call("DELETE", path)

    async def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        data = await self.call("GET", path, **params)
        items: list[dict[str, Any]] = data["items"]
        return items

    async def service(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return await self.get(f"/api/v1/namespaces/{namespace}/services/{name}")

    async def events(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        """Events whose ``involvedObject.name`` is ``name``."""
        return await self.items(
            f"/api/v1/namespaces/{namespace}/events",
            fieldSelector=f"involvedObject.name={name}",
        )

    async def event_reasons(self, name: str, namespace: str = "default") -> list[str]:
        return [e["reason"] for e in await self.events(name, namespace)]


@contextlib.asynccontextmanager
async def api_client(url: str) -> AsyncIterator[ApiClient]:
    """An :class:`ApiClient` for the API at ``url``: a fresh connection per request."""
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        yield ApiClient(http)
