"""Secrets on the local API server over real HTTP and kubectl 1.32: ``stringData`` is
folded into ``data`` on every write (create, update, merge patch, server-side apply),
never stored or returned; malformed ``stringData`` is refused and stores nothing."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.apiserver_helpers import call, run_kubectl

pytestmark = pytest.mark.cluster

SECRETS = "/api/v1/namespaces/default/secrets"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


async def test_every_write_folds_string_data_into_data(http: aiohttp.ClientSession) -> None:
    body = {"metadata": {"name": "s"}, "stringData": {"token": "one"}}
    created = await call(http, "POST", SECRETS, 201, json=body)
    assert decoded(created) == {"token": "one"}
    assert "stringData" not in created
    assert created["type"] == "Opaque"

    created["stringData"] = {"token": "two", "extra": "x"}
    replaced = await call(http, "PUT", f"{SECRETS}/s", 200, json=created)
    assert decoded(replaced) == {"token": "two", "extra": "x"}

    patched = await call(
        http, "PATCH", f"{SECRETS}/s", 200, json={"stringData": {"extra": "y"}}, headers=MERGE
    )
    assert decoded(patched) == {"token": "two", "extra": "y"}

    applied = await call(
        http,
        "PATCH",
        f"{SECRETS}/applied",
        201,
        params={"fieldManager": "tester"},
        data=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "applied"},
                "stringData": {"token": "three"},
            }
        ),
        headers=APPLY,
    )
    assert decoded(applied) == {"token": "three"}
    (entry,) = applied["metadata"]["managedFields"]
    # Ownership is computed on the object as applied, before the fold (as kube-apiserver).
    assert entry["manager"] == "tester"
    assert entry["fieldsV1"]["f:stringData"] == {"f:token": {}}
    again = await call(http, "GET", f"{SECRETS}/applied", 200)
    assert "stringData" not in again
    assert decoded(again) == {"token": "three"}
    listed = await call(http, "GET", SECRETS, 200)
    assert all("stringData" not in item for item in listed["items"])


@pytest.mark.parametrize(
    ("string_data", "field"),
    [({"port": 80}, "stringData[port]"), (["k"], "stringData")],
)
async def test_malformed_string_data_is_refused_and_stores_nothing(
    http: aiohttp.ClientSession, string_data: Any, field: str
) -> None:
    body = {"metadata": {"name": "bad"}, "stringData": string_data}
    status = await call(http, "POST", SECRETS, 422, json=body)
    assert status["reason"] == "Invalid"
    assert f"{field}: must be" in status["message"]
    await call(http, "GET", f"{SECRETS}/bad", 404)

    await call(http, "POST", SECRETS, 201, json={"metadata": {"name": "ok"}, "data": {}})
    await call(http, "PATCH", f"{SECRETS}/ok", 422, json={"stringData": string_data}, headers=MERGE)
    kept = await call(http, "GET", f"{SECRETS}/ok", 200)
    assert "stringData" not in kept
    assert kept.get("data", {}) == {}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_applies_string_data_client_and_server_side(api_thread_kubeconfig: Path) -> None:
    kubeconfig = api_thread_kubeconfig
    manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {password: hunter2}\n"
    )
    for mode in ((), ("--server-side",)):
        result = run_kubectl(kubeconfig, "apply", *mode, "-f", "-", stdin=manifest)
        assert result.returncode == 0, result.stderr
        shown = run_kubectl(kubeconfig, "get", "secret", "web", "-o", "json")
        assert shown.returncode == 0, shown.stderr
        secret = json.loads(shown.stdout)
        assert decoded(secret) == {"password": "hunter2"}
        assert "stringData" not in secret
        deleted = run_kubectl(kubeconfig, "delete", "secret", "web")
        assert deleted.returncode == 0, deleted.stderr
