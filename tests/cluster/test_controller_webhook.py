"""The IPAddressPool validating webhook served by the controller (kopf, plain HTTP).

Tested twice: by POSTing AdmissionReview JSON straight to the webhook, and end
to end through the local API server, which calls webhooks registered with a
``ValidatingWebhookConfiguration`` (``clientConfig.url``).
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from ironlb.lab.apiserver import LocalApiServer
from ironlb.operator.kopf_handlers import VALIDATE_POOL_ID
from tests.cluster.controller_support import (
    POOLS,
    api_client,
    pool_body,
    running_controller,
)
from tests.support import eventually, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def review(pool: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "ironlb.io", "version": "v1alpha1", "kind": "IPAddressPool"},
            "resource": {"group": "ironlb.io", "version": "v1alpha1", "resource": "ipaddresspools"},
            "requestKind": {"group": "ironlb.io", "version": "v1alpha1", "kind": "IPAddressPool"},
            "name": pool["metadata"]["name"],
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": pool,
            "oldObject": None,
            "dryRun": False,
        },
    }


async def ask(http: aiohttp.ClientSession, url: str, pool: dict[str, Any]) -> dict[str, Any]:
    body = review(pool)
    async with http.post(url, json=body) as rsp:
        assert rsp.status == 200, await rsp.text()
        answer: dict[str, Any] = (await rsp.json())["response"]
    assert answer["uid"] == body["request"]["uid"]
    return answer


async def test_webhook_answers_admission_reviews(apiserver: LocalApiServer) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/{VALIDATE_POOL_ID}"
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("existing", ["198.18.50.0/24"]))
        async with (
            running_controller(apiserver, webhook_port=port, webhook_host="127.0.0.1"),
            aiohttp.ClientSession() as http,
        ):
            ok = await ask(http, url, pool_body("fresh", ["198.18.51.0/24", "fd00:198:18:51::/64"]))
            assert ok["allowed"] is True

            cases = {
                "bad-cidr": (["198.18.52.0/33"], "spec.addresses[0]"),
                "host-bits": (["198.18.52.7/24"], "spec.addresses[0]"),
                "reversed": (["198.18.52.9-198.18.52.1"], "198.18.52.9-198.18.52.1"),
                "empty": ([], "spec.addresses"),
                "overlap": (["198.18.50.128/25"], "'existing'"),
            }
            for name, (addresses, needle) in cases.items():
                answer = await ask(http, url, pool_body(name, addresses))
                assert answer["allowed"] is False, name
                message = answer["status"]["message"]
                assert message.startswith(f"invalid IPAddressPool {name!r}"), message
                assert needle in message, (name, message)
                assert answer["status"]["code"] == 422

            # Updating a pool is checked against the others, not its own old version.
            same = await ask(http, url, pool_body("existing", ["198.18.50.0/23"]))
            assert same["allowed"] is True


async def test_api_server_rejects_invalid_pools_through_the_webhook(
    apiserver: LocalApiServer,
) -> None:
    port = free_port()
    async with api_client(apiserver) as api:
        await api.install()
        async with running_controller(apiserver, webhook_port=port, webhook_host="127.0.0.1"):
            await api.create(
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": "ironlb"},
                    "webhooks": [
                        {
                            "name": "ipaddresspools.ironlb.io",
                            "clientConfig": {"url": f"http://127.0.0.1:{port}/{VALIDATE_POOL_ID}"},
                            "rules": [
                                {
                                    "apiGroups": ["ironlb.io"],
                                    "apiVersions": ["v1alpha1"],
                                    "operations": ["CREATE", "UPDATE"],
                                    "resources": ["ipaddresspools"],
                                    "scope": "Cluster",
                                }
                            ],
                            "admissionReviewVersions": ["v1"],
                            "sideEffects": "None",
                            "failurePolicy": "Fail",
                        }
                    ],
                },
            )
            await api.create(POOLS, pool_body("first", ["198.18.53.0/28"]))

            async with api.http.post(
                POOLS, json=pool_body("second", ["198.18.53.8-198.18.53.20"])
            ) as rsp:
                assert rsp.status >= 400
                status = await rsp.json()
            assert "denied the request" in status["message"], status
            assert "overlaps" in status["message"] and "'first'" in status["message"], status

            async with api.http.patch(
                f"{POOLS}/first",
                json={"spec": {"addresses": ["198.18.53.0/27", "nonsense"]}},
                headers={"Content-Type": "application/merge-patch+json"},
            ) as rsp:
                assert rsp.status >= 400
                assert "nonsense" in (await rsp.json())["message"]

            async def unchanged() -> bool:
                pool = await api.get(f"{POOLS}/first")
                return bool(pool["spec"]["addresses"] == ["198.18.53.0/28"])

            assert await eventually(unchanged)
