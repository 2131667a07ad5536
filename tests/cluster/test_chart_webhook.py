"""The controller's webhook served with the certificate the chart generates.

The controller runs with the chart's own arguments (``--webhook-cert`` /
``--webhook-key`` pointing at the files of the rendered ``ironlb-webhook-tls``
Secret), and a client that trusts only the rendered ``caBundle`` and checks
the name the API server would use (``<service>.<namespace>.svc``) sends
AdmissionReviews to the rendered path: the API server's view of the webhook.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp
import pytest

from ironlb.cli import build_parser
from ironlb.lab.apiserver import LocalApiServer
from tests.chart.chart_support import NAMESPACE, one, render
from tests.cluster.controller_support import POOLS, api_client, pool_body, running_controller
from tests.cluster.test_controller_webhook import review
from tests.support import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def test_webhook_serves_tls_with_the_chart_certificate(
    apiserver: LocalApiServer, tmp_path: Path
) -> None:
    objs = render()
    secret = one(objs, "Secret", "ironlb-webhook-tls")
    hook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    target = hook["clientConfig"]["service"]
    deployment = one(objs, "Deployment", "ironlb-controller")
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args([*c["command"][1:], *c["args"]])
    mount = next(m for m in c["volumeMounts"] if m["name"] == "webhook-tls")["mountPath"]
    # The Secret's files where the pod would see them, under tmp_path.
    assert (args.webhook_cert, args.webhook_key) == (f"{mount}/tls.crt", f"{mount}/tls.key")
    for key in ("tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))

    trust = ssl.create_default_context(
        cadata=base64.b64decode(hook["clientConfig"]["caBundle"]).decode()
    )
    server_name = f"{target['name']}.{target['namespace']}.svc"
    assert target["namespace"] == NAMESPACE
    port = free_port()
    url = f"https://127.0.0.1:{port}{target['path']}"
    async with api_client(apiserver) as api:
        await api.install()
        await api.create(POOLS, pool_body("existing", ["198.18.50.0/24"]))
        async with (
            running_controller(
                apiserver,
                webhook_port=port,
                webhook_host="127.0.0.1",
                webhook_cert=str(tmp_path / "tls.crt"),
                webhook_key=str(tmp_path / "tls.key"),
            ),
            aiohttp.ClientSession() as http,
        ):
            for pool, allowed in (
                (pool_body("fresh", ["198.18.51.0/24"]), True),
                (pool_body("overlap", ["198.18.50.128/25"]), False),
            ):
                body = review(pool)
                async with http.post(url, json=body, ssl=trust, server_hostname=server_name) as rsp:
                    assert rsp.status == 200, await rsp.text()
                    answer = (await rsp.json())["response"]
                assert answer["uid"] == body["request"]["uid"]
                assert answer["allowed"] is allowed
            # A client that checks another name refuses the certificate.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.post(
                    url, json=review(pool), ssl=trust, server_hostname="ironlb-webhook.default.svc"
                )
