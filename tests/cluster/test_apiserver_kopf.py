"""kopf 1.45 runs end-to-end against the local API server, in-process over HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf
import pytest

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.apiserver_helpers import running_operator, widget_crd
from tests.support import eventually

pytestmark = pytest.mark.cluster

WIDGETS = "/apis/lab.ironlb.io/v1/namespaces/default/widgets"


async def test_kopf_operator_handles_create_and_delete(apiserver: LocalApiServer) -> None:
    registry = kopf.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url, default_namespace="default")

    @kopf.on.create("lab.ironlb.io", "v1", "widgets", id="created", registry=registry)
    async def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
        seen.append(body["metadata"]["name"])
        patch.status["phase"] = "Seen"
        kopf.info(body, reason="WidgetSeen", message=f"size {body['spec']['size']}")
        return {"answer": 42}

    @kopf.on.update("lab.ironlb.io", "v1", "widgets", id="updated", registry=registry)
    async def updated(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
        patch.status["size"] = spec["size"]

    @kopf.on.delete("lab.ironlb.io", "v1", "widgets", id="deleted", registry=registry)
    async def deleted(**_: Any) -> None:
        return None

    settings = kopf.OperatorSettings()
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 1  # streams end every second: kopf must resume them
    settings.networking.request_timeout = 10

    async with aiohttp.ClientSession(apiserver.url) as http:
        crd = await http.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=widget_crd()
        )
        assert crd.status == 201, await crd.text()

        async with running_operator(registry, settings):
            created_rsp = await http.post(
                WIDGETS,
                json={
                    "apiVersion": "lab.ironlb.io/v1",
                    "kind": "Widget",
                    "metadata": {"name": "w1"},
                    "spec": {"size": 3},
                },
            )
            assert created_rsp.status == 201

            async def handled() -> dict[str, Any] | None:
                rsp = await http.get(f"{WIDGETS}/w1")
                body: dict[str, Any] = await rsp.json()
                status = body.get("status", {})
                done = status.get("phase") == "Seen" and status.get("created") == {"answer": 42}
                return body if done and body["metadata"].get("finalizers") else None

            body = await eventually(handled)
            assert body["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
            assert body["metadata"]["generation"] == 1  # status and finalizer are not spec
            assert seen == ["w1"]

            async def event_posted() -> list[dict[str, Any]] | None:
                rsp = await http.get(
                    "/api/v1/namespaces/default/events",
                    params={"fieldSelector": "involvedObject.name=w1,reason=WidgetSeen"},
                )
                items: list[dict[str, Any]] = (await rsp.json())["items"]
                return items or None

            events = await eventually(event_posted)
            assert events[0]["message"] == "size 3"
            assert events[0]["involvedObject"]["kind"] == "Widget"

            # An update after (at least one) watch reconnect reaches the update handler.
            await asyncio.sleep(1.5)
            patched = await http.patch(
                f"{WIDGETS}/w1",
                json={"spec": {"size": 5}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert patched.status == 200

            async def resized() -> bool:
                body = await (await http.get(f"{WIDGETS}/w1")).json()
                return bool(body.get("status", {}).get("size") == 5)

            await eventually(resized)

            # Deletion: the finalizer holds the object until kopf's delete handler ran.
            deleting = await http.delete(f"{WIDGETS}/w1")
            assert deleting.status == 200

            async def gone() -> bool:
                return (await http.get(f"{WIDGETS}/w1")).status == 404

            await eventually(gone)


async def test_kopf_services_status_and_annotations(apiserver: LocalApiServer) -> None:
    """What the ironlb controller does: a handler on core Services writes status.loadBalancer
    (through the status subresource) and an annotation; a label filter picks the Services."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url)

    @kopf.on.resume("v1", "services", labels={"lb": "yes"}, id="assign", registry=registry)
    @kopf.on.create("v1", "services", labels={"lb": "yes"}, id="assign", registry=registry)
    async def assign(patch: kopf.Patch, **_: Any) -> None:
        patch.status["loadBalancer"] = {"ingress": [{"ip": "198.18.0.10", "ipMode": "Proxy"}]}
        patch.metadata.annotations["ironlb.io/pool"] = "p1"

    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING
    services = "/api/v1/namespaces/default/services"

    async with aiohttp.ClientSession(apiserver.url) as http:
        # Connect before kopf starts: kopf treats every task born after its start as its own
        # and, on exit, waits 5 s for (then cancels) the server's keep-alive connection task.
        assert (await http.get("/version")).status == 200
        async with running_operator(registry, settings):
            for name, labels in (("picked", {"lb": "yes"}), ("ignored", {})):
                sent = {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                }
                assert (await http.post(services, json=sent)).status == 201

            async def assigned() -> dict[str, Any] | None:
                body: dict[str, Any] = await (await http.get(f"{services}/picked")).json()
                return body if body["status"]["loadBalancer"].get("ingress") else None

            body = await eventually(assigned)
            assert body["status"]["loadBalancer"]["ingress"] == [
                {"ip": "198.18.0.10", "ipMode": "Proxy"}
            ]
            assert body["metadata"]["annotations"]["ironlb.io/pool"] == "p1"
            assert body["metadata"]["generation"] == 1
            ignored = await (await http.get(f"{services}/ignored")).json()
            assert ignored["status"] == {"loadBalancer": {}}
            assert "ironlb.io/pool" not in ignored["metadata"].get("annotations", {})
