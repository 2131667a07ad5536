"""Validating admission webhooks called by the local API server over real HTTP: rules,
selectors, denials as Status errors, failure policies, and kopf's own webhook server."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest
from aiohttp import web

from ironlb.lab.apiserver import LocalApiServer
from tests.cluster.apiserver_helpers import call, running_operator, widget_crd
from tests.support import eventually

pytestmark = pytest.mark.cluster

CM = "/api/v1/namespaces/default/configmaps"
VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MERGE = {"Content-Type": "application/merge-patch+json"}


class Webhook:
    """A real webhook endpoint: denies objects whose data has ``bad``; records reviews."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        request_body = review["request"]
        bad = "bad" in ((request_body.get("object") or {}).get("data") or {})
        response: dict[str, Any] = {"uid": request_body["uid"], "allowed": not bad}
        if bad:
            response["status"] = {"code": 422, "message": "no bad data"}
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/validate", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/validate"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    await hook.start()
    try:
        yield hook
    finally:
        await hook.stop()


def configuration(url: str, **webhook: Any) -> dict[str, Any]:
    hook = {
        "name": "cm.lab.ironlb.io",
        "clientConfig": {"url": url},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["configmaps"],
                "operations": ["CREATE", "UPDATE"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **webhook,
    }
    return {"metadata": {"name": "lab"}, "webhooks": [hook]}


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_allows_and_denies(http: aiohttp.ClientSession, webhook: Webhook) -> None:
    await call(http, "POST", VWC, 201, json=configuration(webhook.url))
    good = await call(
        http, "POST", CM, 201, json={"metadata": {"name": "good"}, "data": {"a": "1"}}
    )
    denied = await call(
        http, "POST", CM, 422, json={"metadata": {"name": "x"}, "data": {"bad": "1"}}
    )
    assert denied["kind"] == "Status" and denied["code"] == 422
    assert (
        denied["message"] == 'admission webhook "cm.lab.ironlb.io" denied the request: no bad data'
    )
    await call(http, "GET", f"{CM}/x", 404)

    # An update is reviewed with the old object; a denied patch changes nothing.
    await call(http, "PATCH", f"{CM}/good", 422, headers=MERGE, json={"data": {"bad": "1"}})
    assert (await call(http, "GET", f"{CM}/good", 200))["data"] == {"a": "1"}
    update = webhook.reviews[-1]["request"]
    assert update["operation"] == "UPDATE" and update["namespace"] == "default"
    assert update["oldObject"]["metadata"]["uid"] == good["metadata"]["uid"]
    assert update["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert update["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert webhook.reviews[0]["request"]["operation"] == "CREATE"

    # Other resources are not sent to this webhook.
    before = len(webhook.reviews)
    await call(
        http, "POST", "/api/v1/namespaces/default/secrets", 201, json={"metadata": {"name": "s"}}
    )
    assert len(webhook.reviews) == before


async def test_server_side_apply_and_dry_runs_are_reviewed(
    http: aiohttp.ClientSession, webhook: Webhook
) -> None:
    await call(http, "POST", VWC, 201, json=configuration(webhook.url))
    apply = {"Content-Type": "application/apply-patch+yaml"}

    def body(**data: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": data}

    made = await call(http, "PATCH", f"{CM}/a?fieldManager=m", 201, headers=apply, json=body(x="1"))
    review = webhook.reviews[-1]["request"]
    assert review["operation"] == "CREATE" and review["object"]["data"] == {"x": "1"}
    assert review["dryRun"] is False
    await call(http, "PATCH", f"{CM}/a?fieldManager=m", 422, headers=apply, json=body(bad="1"))
    review = webhook.reviews[-1]["request"]
    assert review["operation"] == "UPDATE" and review["oldObject"]["data"] == {"x": "1"}
    assert review["object"]["data"] == {"bad": "1"}  # the merged object: x was m's, dropped
    assert await call(http, "GET", f"{CM}/a", 200) == made  # denied: nothing stored

    dry = await call(
        http, "PATCH", f"{CM}/a?fieldManager=m&dryRun=All", 200, headers=apply, json=body(y="2")
    )
    assert dry["data"] == {"y": "2"} and webhook.reviews[-1]["request"]["dryRun"] is True
    assert await call(http, "GET", f"{CM}/a", 200) == made


async def test_webhook_selectors(http: aiohttp.ClientSession, webhook: Webhook) -> None:
    config = configuration(
        webhook.url,
        objectSelector={"matchLabels": {"checked": "yes"}},
        namespaceSelector={
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]
        },
    )
    await call(http, "POST", VWC, 201, json=config)
    await call(
        http,
        "POST",
        "/api/v1/namespaces",
        201,
        json={"metadata": {"name": "ta", "labels": {"team": "a"}}},
    )
    bad = {"data": {"bad": "1"}}
    # Not labelled: not reviewed.
    await call(
        http,
        "POST",
        "/api/v1/namespaces/ta/configmaps",
        201,
        json={"metadata": {"name": "u"}, **bad},
    )
    labelled = {"metadata": {"name": "l", "labels": {"checked": "yes"}}, **bad}
    await call(http, "POST", "/api/v1/namespaces/ta/configmaps", 422, json=labelled)
    # Labelled, but in a namespace the selector does not pick.
    await call(http, "POST", CM, 201, json=labelled)


async def test_failure_policies(http: aiohttp.ClientSession) -> None:
    nowhere = f"http://127.0.0.1:{unused_port()}/validate"
    await call(http, "POST", VWC, 201, json=configuration(nowhere, failurePolicy="Ignore"))
    await call(http, "POST", CM, 201, json={"metadata": {"name": "ignored"}})
    await call(
        http,
        "PATCH",
        f"{VWC}/lab",
        200,
        headers=MERGE,
        json={"webhooks": [configuration(nowhere)["webhooks"][0]]},
    )
    failed = await call(http, "POST", CM, 500, json={"metadata": {"name": "failed"}})
    assert failed["reason"] == "InternalError"
    assert 'failed calling webhook "cm.lab.ironlb.io"' in failed["message"]
    # The configurations themselves are never reviewed, so a broken webhook can be removed.
    await call(http, "DELETE", f"{VWC}/lab", 200)
    await call(http, "POST", CM, 201, json={"metadata": {"name": "failed"}})


async def test_kopf_validating_webhook_end_to_end(apiserver: LocalApiServer) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url)

    @kopf.on.validate("lab.ironlb.io", "v1", "widgets", id="size", registry=registry)
    def validate_size(spec: kopf.Spec, **_: Any) -> None:
        if spec.get("size", 0) > 10:
            raise kopf.AdmissionError("size must be at most 10", code=422)

    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING
    settings.admission.server = kopf.WebhookServer(
        addr="127.0.0.1", host="127.0.0.1", port=unused_port(), insecure=True
    )
    settings.admission.managed = "widgets.lab.ironlb.io"

    async with aiohttp.ClientSession(apiserver.url) as http:
        await call(
            http,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            201,
            json=widget_crd(),
        )
        async with running_operator(registry, settings):

            async def configured() -> bool:
                async with http.get(f"{VWC}/widgets.lab.ironlb.io") as rsp:
                    return rsp.status == 200 and bool((await rsp.json()).get("webhooks"))

            await eventually(configured)
            path = "/apis/lab.ironlb.io/v1/namespaces/default/widgets"
            big = {"metadata": {"name": "big"}, "spec": {"size": 11}}
            denied = await call(http, "POST", path, 422, json=big)
            assert "size must be at most 10" in denied["message"]
            await call(
                http, "POST", path, 201, json={"metadata": {"name": "ok"}, "spec": {"size": 3}}
            )
