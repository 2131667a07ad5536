"""A small asyncio client for the few Kubernetes API calls the controller makes itself.

kopf watches and dispatches; the controller's own writes (Service status and
annotations, pool status, Events, the election Lease) and its start-up lists go
through :class:`KubeApi`: one pooled ``aiohttp`` session, built from the same
:class:`kopf.ConnectionInfo` kopf logs in with (server, CA, client
certificate, token). The ``kubernetes`` package's client is synchronous, so
using it from the event loop would need a thread per call; these six verbs
are all the controller needs.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import kopf

__all__ = ["ApiError", "KubeApi"]

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code, ``reason`` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _data(value: str | bytes) -> bytes:
    """kubeconfig ``*-data`` fields are base64; kopf passes them through as given."""
    raw = value.encode() if isinstance(value, str) else value
    if raw.lstrip().startswith(b"-----BEGIN"):
        return raw
    return base64.b64decode(raw)


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool | None:
    if not info.server.startswith("https"):
        return None
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=os.fsdecode(info.ca_path))
    elif info.ca_data:
        context.load_verify_locations(cadata=_data(info.ca_data).decode())
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl wants files; keep them only as long as loading takes.
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            with open(cert_file, "wb") as f:
                f.write(_data(info.certificate_data))
            with open(key_file, "wb") as f:
                f.write(_data(info.private_key_data))
            context.load_cert_chain(cert_file, key_file)
    elif cert and key:
        context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key))
    return context


class KubeApi:
    """JSON over HTTP to the API server; paths are absolute (``/api/v1/...``)."""

    def __init__(self, info: kopf.ConnectionInfo, *, timeout: float = 30.0) -> None:
        self._info = info
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        headers = {"Accept": "application/json", **self._info.as_http_headers()}
        connector = aiohttp.TCPConnector(limit=32, ssl=_ssl_context(self._info) or False)
        self._session = aiohttp.ClientSession(
            base_url=self._info.server.rstrip("/"),
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("KubeApi is not open (use 'async with')")
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._session.request(
            method, path, data=data, params=params, headers=headers
        ) as rsp:
            text = await rsp.text()
            try:
                payload: Any = json.loads(text) if text else {}
            except json.JSONDecodeError:
                payload = {"message": text}
            if rsp.status >= 400:
                if not isinstance(payload, dict):
                    payload = {}
                raise ApiError(
                    rsp.status,
                    str(payload.get("reason") or rsp.reason or ""),
                    str(payload.get("message") or text),
                )
            return payload if isinstance(payload, dict) else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist (404)."""
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, *, page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every item of a collection, following ``continue`` tokens."""
        token = ""
        while True:
            params = {"limit": str(page_size)}
            if token:
                params["continue"] = token
            page = await self.request("GET", path, params=params)
            for item in page.get("items") or []:
                yield item
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)
