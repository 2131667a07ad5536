"""A small asyncio client of the Kubernetes API for the lab controllers (aiohttp, JSON).

The controllers need list, watch, create, merge patch and delete on a few
kinds, nothing else, against the lab API (plain HTTP, any bearer token).
:class:`ClientConfig` comes from a kubeconfig's current context (``server``
and an optional ``token``; TLS client certificates are not read: the lab API
has none) or a URL. Errors are :class:`ApiError` with the HTTP status and the
``Status`` message, one line.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 15.0  # seconds per non-watch request: a hang guard


class ApiError(RuntimeError):
    """An API request failed; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ClientConfig:
    """Where the API is: ``server`` URL (``http://127.0.0.1:6443``) and an optional token."""

    server: str
    token: str | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> ClientConfig:
        """The current context's cluster server and user token. Raises :class:`ApiError`
        (status 0) naming the file when it is missing, unreadable or incomplete."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ApiError(0, f"cannot read the kubeconfig {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())  # PyYAML's messages span lines
            raise ApiError(0, f"the kubeconfig {path} is not YAML: {problem}") from None
        if not isinstance(data, Mapping):
            raise ApiError(0, f"the kubeconfig {path} is not a mapping")
        current = data.get("current-context")
        contexts = {c.get("name"): c.get("context") or {} for c in data.get("contexts") or []}
        context = contexts.get(current)
        if context is None:
            raise ApiError(0, f"the kubeconfig {path} has no current context {current!r}")
        clusters = {c.get("name"): c.get("cluster") or {} for c in data.get("clusters") or []}
        users = {u.get("name"): u.get("user") or {} for u in data.get("users") or []}
        server = (clusters.get(context.get("cluster")) or {}).get("server")
        if not server:
            raise ApiError(0, f"the kubeconfig {path}: context {current!r} names no server")
        token = (users.get(context.get("user")) or {}).get("token")
        return cls(str(server).rstrip("/"), str(token) if token else None)


def _message(status: int, text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return f"HTTP {status}: {text.strip()[:200]}"
    if isinstance(body, Mapping) and body.get("message"):
        return f"HTTP {status}: {body['message']}"
    return f"HTTP {status}: {text.strip()[:200]}"


class WorkloadApi:
    """JSON verbs over one aiohttp session; use ``async with``."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WorkloadApi:
        headers = {"User-Agent": "ironlb-lab-controllers/1"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        self._session = aiohttp.ClientSession(self.config.server, headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use WorkloadApi in 'async with'")
        return self._session

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str | None = None
    ) -> Any:
        """One request; returns the decoded JSON answer. Raises :class:`ApiError`."""
        headers = {"Content-Type": content_type} if content_type else {}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None and not content_type:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method,
                path,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as rsp:
                text = await rsp.text()
                if rsp.status >= 400:
                    raise ApiError(rsp.status, f"{method} {path}: {_message(rsp.status, text)}")
                return json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, f"{method} {path}: {exc or type(exc).__name__}") from None

    async def list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        """``(items, resourceVersion)`` of a list path."""
        body = await self.request("GET", path)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", path, body)
        return result

    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386)."""
        result: dict[str, Any] = await self.request("PATCH", path, body, content_type=MERGE_PATCH)
        return result

    async def delete(self, path: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request("DELETE", path)
        return result

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) after ``resource_version``, bookmarks on,
        until the server ends the stream. An ``ERROR`` event (e.g. 410 Gone) is
        raised as :class:`ApiError` with its code."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
        }
        try:
            async with self.session.get(
                path, params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
            ) as rsp:
                if rsp.status >= 400:
                    text = await rsp.text()
                    raise ApiError(rsp.status, f"watch {path}: {_message(rsp.status, text)}")
                async for line in rsp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        obj = event.get("object") or {}
                        raise ApiError(
                            int(obj.get("code") or 500), f"watch {path}: {obj.get('message')}"
                        )
                    yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, f"watch {path}: {exc or type(exc).__name__}") from None
